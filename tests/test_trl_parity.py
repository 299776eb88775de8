"""Our DPO numbers equal TRL's DPOTrainer on the same weights, reference and batch.

Setup: a tiny random Llama with a LoRA whose B matrices are random (non-zero), so policy and
reference differ and the loss is not the trivial log 2 of an untrained adapter. TRL gets the
same base weights, wraps them with the same LoRA config, and the LoRA weights are copied over.
Both sides see the same token ids (our tokenisation fed through TRL's own collator); TRL's
numbers come from its own code path: ``DPOTrainer._compute_loss`` (fused LM head, adapter
disabled for the reference) and ``compute_ref_log_probs``. Ours in both batch layouts (separate rows; chosen and rejected
packed behind one prompt). fp32 throughout; tolerance 1e-4.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch

pytest.importorskip("trl")
from datasets import Dataset  # noqa: E402
from peft import LoraConfig  # noqa: E402
from test_trainer_tiny import chat_prompt, tiny_lora, tiny_model, tiny_tokenizer  # noqa: E402
from trl import DPOConfig, DPOTrainer  # noqa: E402
from trl.trainer.dpo_trainer import DataCollatorForPreference  # noqa: E402

from aptune.train.batching import collate_packed_pairs, collate_pairs  # noqa: E402
from aptune.train.logprobs import response_logps  # noqa: E402
from aptune.train.losses import PreferenceLoss  # noqa: E402
from aptune.train.pairs import PreferencePair, tokenize_pairs  # noqa: E402
from aptune.train.reference import compute_reference_logps  # noqa: E402

BETA = 0.5
TOL = 1e-4


def _pairs(tok) -> list[PreferencePair]:  # noqa: ANN001
    """Mixed lengths (so padding matters), chat and plain prompts."""
    return [
        PreferencePair("a", chat_prompt(tok, "What gas do plants absorb?"), "Carbon dioxide", "Oxygen"),
        PreferencePair("b", chat_prompt(tok, "Boiling point of water at sea level, in Celsius?"), "100", "90 degrees"),
        PreferencePair("c", "Question: Which planet is largest?\nAnswer:", " Jupiter", " Mars, the red planet"),
        PreferencePair("d", "Question: 2+2?\nAnswer:", " 4", " 5"),
    ]


def _trl_trainer(tmp_path, tok, ours, nll_weight: float) -> DPOTrainer:  # noqa: ANN001
    texts = {"prompt": ["p"], "chosen": [" a"], "rejected": [" b"]}
    losses = ["sigmoid", "sft"] if nll_weight else ["sigmoid"]
    args = DPOConfig(
        output_dir=str(tmp_path / "trl"),
        beta=BETA,
        loss_type=losses,
        loss_weights=[1.0, nll_weight] if nll_weight else None,
        per_device_train_batch_size=4,
        bf16=False,
        use_cpu=True,
        report_to="none",
        gradient_checkpointing=False,
        max_length=None,
    )
    lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = DPOTrainer(
            model=tiny_model(0), args=args, train_dataset=Dataset.from_dict(texts),
            processing_class=tok, peft_config=lora,
        )
    ours_params = dict(ours.named_parameters())
    copied = 0
    with torch.no_grad():
        for name, p in trainer.model.named_parameters():
            if "lora_" in name:
                p.copy_(ours_params[name])
                copied += 1
    assert copied == len([n for n in ours_params if "lora_" in n]) > 0
    assert "ref" not in trainer.model.peft_config  # TRL's reference is the base model, as ours
    return trainer


@pytest.mark.parametrize("nll_weight", [0.0, 0.5])
def test_loss_logps_and_margins_match_trl(tmp_path, nll_weight: float) -> None:  # noqa: ANN001
    tok = tiny_tokenizer()
    ours = tiny_lora(0, random_b=True)
    tokenized = tokenize_pairs(tok, _pairs(tok), max_length=512)
    trainer = _trl_trainer(tmp_path, tok, ours, nll_weight)
    collator = DataCollatorForPreference(pad_token_id=tok.pad_token_id)

    def trl_batch(items):  # noqa: ANN001, ANN202
        return collator.torch_call(
            [{"prompt_ids": list(p.prompt_ids), "chosen_ids": list(p.chosen_ids),
              "rejected_ids": list(p.rejected_ids)} for p in items]
        )

    # Reference log-probs, per pair.
    ref = compute_reference_logps(ours, tokenized, tok.pad_token_id, batch_size=4)
    with torch.no_grad():
        trl_ref_c, trl_ref_r = trainer.compute_ref_log_probs(trainer.model, trl_batch(tokenized))
    for i, p in enumerate(tokenized):
        assert ref[p.id][0] == pytest.approx(trl_ref_c[i].item(), abs=TOL)
        assert ref[p.id][1] == pytest.approx(trl_ref_r[i].item(), abs=TOL)

    # Policy log-probs and reward margins, per pair (TRL logs batch means: use batches of one).
    for p in tokenized:
        trainer._metrics["train"].clear()
        with torch.no_grad():
            trainer._compute_loss(trainer.model, trl_batch([p]), False)
        m = trainer._metrics["train"]
        logps, _ = response_logps(ours, collate_pairs([p], tok.pad_token_id))
        assert logps[0].item() == pytest.approx(m["logps/chosen"][0], abs=TOL)
        assert logps[1].item() == pytest.approx(m["logps/rejected"][0], abs=TOL)
        margin = BETA * ((logps[0] - ref[p.id][0]) - (logps[1] - ref[p.id][1])).item()
        assert margin == pytest.approx(m["rewards/margins"][0], abs=TOL)

    # The batch loss and batch metrics, all four pairs in one forward pass each.
    trainer._metrics["train"].clear()
    with torch.no_grad():
        trl_loss = trainer._compute_loss(trainer.model, trl_batch(tokenized), False).item()
    m = trainer._metrics["train"]
    # both batch layouts: separate rows, and chosen + rejected packed behind one prompt (the default)
    for collate in (collate_pairs, collate_packed_pairs):
        batch = collate(tokenized, tok.pad_token_id)
        logps, lengths = response_logps(ours, batch)
        refs = torch.tensor([ref[i] for i in batch.ids])
        out = PreferenceLoss("sigmoid", beta=BETA, nll_weight=nll_weight)(
            logps[:4], logps[4:], refs[:, 0], refs[:, 1], lengths[:4], lengths[4:]
        )
        assert out.loss.item() == pytest.approx(trl_loss, abs=TOL)
        assert out.margins.mean().item() == pytest.approx(m["rewards/margins"][0], abs=TOL)
        assert out.accuracy.item() == pytest.approx(m["rewards/accuracies"][0], abs=TOL)
        assert out.chosen_rewards.mean().item() == pytest.approx(m["rewards/chosen"][0], abs=TOL)
    # Non-trivial: the random adapter moves the loss well away from log 2 and the margins off 0.
    assert abs(out.preference_loss.item() - math.log(2)) > 1e-2
    assert out.margins.abs().min().item() > 1e-3
