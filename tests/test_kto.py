"""KTO: the formula on hand-computed numbers, the unpaired data built from APT's rows, parity with
TRL's KTOTrainer on the same weights and batch, and training through the same trainer."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from aptune.train.kto import KTOExample, examples_from_pair_rows, with_kl_completions
from aptune.train.losses import KTOLoss, PreferenceLoss

TOL = 1e-4


def _sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_kto_by_hand():
    # two desirable, one undesirable; mismatched log-ratios average 0.4 -> reference point z = 0.4
    out = KTOLoss(beta=0.5, desirable_weight=1.0, undesirable_weight=2.0)(
        torch.tensor([-2.0, -3.0, -4.0]), torch.tensor([-3.0, -2.0, -5.0]),  # ratios +1, -1, +1
        torch.tensor([-1.0, -1.0, -1.0]), torch.tensor([-1.2, -1.6, -1.4]),  # KL ratios .2, .6, .4
        torch.tensor([True, True, False]))
    z = 0.4
    expected = ((1 - _sig(0.5 * (1 - z))) + (1 - _sig(0.5 * (-1 - z))) + 2 * (1 - _sig(0.5 * (z - 1)))) / 3
    assert float(out.loss) == pytest.approx(expected, abs=1e-6)
    assert float(out.kl) == pytest.approx(z)
    m = out.metrics()
    assert m["reward_chosen"] == pytest.approx(0.0) and m["reward_rejected"] == pytest.approx(0.5)
    assert m["margin"] == pytest.approx(-0.5)
    # a negative KL estimate is clamped to 0
    clamped = KTOLoss(beta=0.5)(torch.tensor([-2.0]), torch.tensor([-3.0]), torch.tensor([-2.0]),
                                torch.tensor([-1.0]), torch.tensor([True]))
    assert float(clamped.kl) == 0.0 and float(clamped.loss) == pytest.approx(1 - _sig(0.5), abs=1e-6)
    assert math.isnan(clamped.metrics()["margin"])  # one label only: no margin


def test_kto_gradient_skips_the_mismatched_completions_and_adds_nll_on_desirable_only():
    policy = torch.tensor([-2.0, -3.0], requires_grad=True)
    kl = torch.tensor([-1.0, -1.0], requires_grad=True)
    out = KTOLoss(beta=0.1, nll_weight=0.5)(policy, torch.tensor([-2.5, -2.5]), kl, torch.tensor([-1.0, -1.0]),
                                            torch.tensor([True, False]), torch.tensor([4, 2]))
    assert float(out.nll) == pytest.approx(2.0 / 4)  # the desirable completion alone
    out.loss.backward()
    assert kl.grad is None or float(kl.grad.abs().sum()) == 0.0
    assert float(policy.grad.abs().sum()) > 0
    with pytest.raises(ValueError, match="unpaired"):
        PreferenceLoss("kto")


def test_examples_from_pair_rows_leave_out_other_gold_negatives():
    rows = [{"id": "a", "prompt": "P1", "chosen": "gold", "rejected": "own", "negative": "own_answer"},
            {"id": "b", "prompt": "P2", "chosen": "gold2", "rejected": "gold of c", "negative": "other_gold"},
            {"id": "c", "prompt": "P3", "chosen": "gold3", "rejected": "sampled", "negative": "sampled"}]
    examples = examples_from_pair_rows(rows)
    assert [(e.id, e.desirable) for e in examples] == [("a+", True), ("a-", False), ("b+", True), ("c+", True),
                                                       ("c-", False)]
    pairs, labels = with_kl_completions(examples, seed=0)
    assert {p.id for p in pairs} == set(labels) == {e.id for e in examples}
    by_id = {e.id: e for e in examples}
    for p in pairs:  # the mismatched completion is always another prompt's
        assert p.chosen == by_id[p.id].completion
        assert p.rejected in {e.completion for e in examples if e.prompt != p.prompt}
    assert with_kl_completions(examples, seed=0) == (pairs, labels)
    with pytest.raises(ValueError, match="at least two prompts"):
        with_kl_completions([KTOExample("x", "P", "a", True), KTOExample("y", "P", "b", False)], seed=0)


@pytest.mark.parametrize("model_seed,kl_seed,kl_positive", [(1, 2, True), (0, 1, False)])
def test_parity_with_trl_kto(tmp_path, model_seed: int, kl_seed: int, kl_positive: bool):
    """TRL's KTOTrainer._compute_loss (its fused LM head, the adapter disabled for the reference,
    its KL estimate from the mismatched completions we give it) against our loss on our own
    log-probs, for a tiny model whose LoRA is non-zero; once with a positive KL estimate, once
    with a negative one (clamped to 0 by both)."""
    pytest.importorskip("trl")
    from datasets import Dataset
    from peft import LoraConfig
    from test_trainer_tiny import chat_prompt, tiny_lora, tiny_model, tiny_tokenizer
    from trl import KTOConfig, KTOTrainer
    from trl.trainer.kto_trainer import DataCollatorForUnpairedPreference

    from aptune.train.batching import collate_pairs
    from aptune.train.logprobs import response_logps
    from aptune.train.pairs import tokenize_pairs
    from aptune.train.reference import compute_reference_logps

    tok = tiny_tokenizer()
    ours = tiny_lora(model_seed, random_b=True).eval()
    examples = [KTOExample("a+", chat_prompt(tok, "What gas do plants absorb?"), "Carbon dioxide", True),
                KTOExample("a-", chat_prompt(tok, "What gas do plants absorb?"), "Oxygen", False),
                KTOExample("b+", "Question: Which planet is largest?\nAnswer:", " Jupiter", True),
                KTOExample("c-", "Question: 2+2?\nAnswer:", " 5, or maybe six", False)]
    pairs, labels = with_kl_completions(examples, seed=kl_seed)
    tokenized = tokenize_pairs(tok, pairs, 512)
    args = KTOConfig(output_dir=str(tmp_path / "trl"), beta=0.5, desirable_weight=1.0, undesirable_weight=1.5,
                     per_device_train_batch_size=4, bf16=False, use_cpu=True, report_to="none",
                     gradient_checkpointing=False, max_length=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = KTOTrainer(model=tiny_model(model_seed), args=args, processing_class=tok,
                             train_dataset=Dataset.from_dict({"prompt": ["p", "q"], "completion": [" a", " b"],
                                                              "label": [True, False]}),
                             peft_config=LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear"))
    theirs = dict(ours.named_parameters())
    with torch.no_grad():
        for name, p in trainer.model.named_parameters():
            if "lora_" in name:
                p.copy_(theirs[name])
    assert trainer.calculate_KL and not trainer.precompute_ref_logps
    batch = DataCollatorForUnpairedPreference(pad_token_id=tok.pad_token_id).torch_call(
        [{"prompt_ids": list(p.prompt_ids), "completion_ids": list(p.chosen_ids),
          "KL_completion_ids": list(p.rejected_ids), "label": labels[p.id]} for p in tokenized])
    trainer._metrics["train"].clear()
    with torch.no_grad():
        trl_loss = float(trainer._compute_loss(trainer.model, batch, False))
    m = trainer._metrics["train"]

    ref = compute_reference_logps(ours, tokenized, tok.pad_token_id, batch_size=4)
    with torch.no_grad():
        logps, lengths = response_logps(ours, collate_pairs(tokenized, tok.pad_token_id))
    n = len(tokenized)
    refs = torch.tensor([ref[p.id] for p in tokenized])
    out = KTOLoss(beta=0.5, desirable_weight=1.0, undesirable_weight=1.5)(
        logps[:n], refs[:, 0], logps[n:], refs[:, 1], torch.tensor([labels[p.id] for p in tokenized]))
    assert float(out.loss) == pytest.approx(trl_loss, abs=TOL)
    assert float(out.kl) == pytest.approx(m["kl"][0], abs=TOL)
    ours_m = out.metrics()
    assert ours_m["reward_chosen"] == pytest.approx(m["rewards/chosen"][0], abs=TOL)
    assert ours_m["reward_rejected"] == pytest.approx(m["rewards/rejected"][0], abs=TOL)
    raw = float((logps[n:] - refs[:, 1]).mean())
    assert (raw > 0.1 and float(out.kl) == pytest.approx(raw)) if kl_positive else (raw < -0.1 and float(out.kl) == 0)


def test_train_kto_scores_the_reference_once_and_learns(tmp_path):
    from test_trainer_tiny import tiny_lora, tiny_tokenizer

    from aptune.io import read_jsonl
    from aptune.train.config import TrainConfig
    from aptune.train.trainer import train_kto

    tok = tiny_tokenizer()
    model = tiny_lora(0)
    examples = [KTOExample(f"{i}{s}", f"Question: {i} + 1?\nAnswer:", f" {i + 1}" if s == "+" else f" {i + 7}", s == "+")
                for i in range(6) for s in "+-"]
    cfg = TrainConfig(loss="kto", lr=5e-2, epochs=3, batch_size=4, progress=False, nll_weight=0.0, beta=0.5)
    result = train_kto(model, tok, examples, cfg, tmp_path / "kto")
    assert result.reference_s > 0 and result.steps == 9
    rows = read_jsonl(tmp_path / "kto" / "train_metrics.jsonl")
    assert all("kl" in r for r in rows)
    assert rows[-1]["margin"] > rows[0]["margin"], "desirable rewards pull away from undesirable ones"
    with pytest.raises(ValueError, match="unpaired"):
        from aptune.train.trainer import train_preference
        train_preference(model, tok, [], cfg, tmp_path / "x")


def test_apt_with_kto_trains_on_unpaired_examples(tmp_path):
    """train.loss: kto in the APT loop: each pair gives a desirable gold and, where the model gave
    it, an undesirable wrong answer; the reference is scored once; the manifest counts them."""
    import json

    import yaml

    from aptune.config import load_run_config
    from aptune.io import read_json, read_jsonl
    from aptune.methods import METHODS
    from aptune.methods.apt import APTRun
    from tiny import save_tiny, tiny_mc_rows

    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in tiny_mc_rows(40, seed=1)))
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({
        "model": save_tiny(tmp_path / "m"), "precision": "fp32", "pool": {"tasks": ["d.jsonl"], "split": "train"},
        "dev": {"tasks": []}, "domain_eval": {"tasks": ["d.jsonl"]}, "general_eval": {"tasks": []},
        "adapter": {"r": 4, "alpha": 8.0}, "train": {"loss": "kto", "batch_size": 4, "epochs": 1, "progress": False},
        "pairs": {"similar_negative": "other_gold"}, "rounds": {"max_rounds": 1}}))
    APTRun(load_run_config(tmp_path / "c.yaml"), tmp_path / "run", progress=False).run()
    pairs = read_jsonl(tmp_path / "run" / "round-1" / "pairs.jsonl")
    record = read_json(tmp_path / "run" / "manifest.json")["stages"]["round-1/train"]
    undesirable = sum(p["negative"] != "other_gold" for p in pairs)
    assert record["kto_examples"] == len(pairs) + undesirable and record["kto_desirable"] == len(pairs)
    assert any(p["negative"] == "other_gold" for p in pairs), "similar cases gave desirable examples alone"
    trained = read_json(tmp_path / "run" / "round-1" / "train" / "train_result.json")
    assert trained["reference_s"] > 0 and "adapter disabled" in record["reference"]  # a reference pass ran
    assert record["examples"] == record["kto_examples"], "one epoch over every example"
    assert METHODS["apt-kto"].preset["train"] == {"loss": "kto"}
    assert METHODS["dpo-all-kto"].preset["train"] == {"loss": "kto"}
