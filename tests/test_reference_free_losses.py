"""SimPO and ORPO: the formulas on hand-computed numbers, parity with TRL's own loss code on
log-probs our pipeline computed from a model with a non-zero adapter, and no reference pass."""

from __future__ import annotations

import math
import types

import pytest
import torch

from aptune.train.losses import PreferenceLoss, log1mexp

TOL = 1e-4


def _lsig(x: float) -> float:
    return -math.log1p(math.exp(-x))


def test_simpo_by_hand():
    # chosen: sum -2 over 4 tokens (avg -0.5); rejected: sum -3 over 2 tokens (avg -1.5)
    out = PreferenceLoss("simpo", beta=2.0, simpo_gamma=0.5)(
        torch.tensor([-2.0]), torch.tensor([-3.0]), None, None, torch.tensor([4]), torch.tensor([2]))
    expected = -_lsig(2.0 * (-0.5 - -1.5) - 0.5)  # -log sigma(1.5)
    assert float(out.loss) == pytest.approx(expected, abs=1e-6)
    assert float(out.chosen_rewards[0]) == pytest.approx(-1.0) and float(out.rejected_rewards[0]) == pytest.approx(-3.0)
    smoothed = PreferenceLoss("simpo", beta=2.0, simpo_gamma=0.5, label_smoothing=0.1)(
        torch.tensor([-2.0]), torch.tensor([-3.0]), None, None, torch.tensor([4]), torch.tensor([2]))
    assert float(smoothed.loss) == pytest.approx(-0.9 * _lsig(1.5) - 0.1 * _lsig(-1.5), abs=1e-6)


def test_orpo_by_hand_with_its_nll():
    a_c, a_r = -0.5, -1.5
    odds = lambda a: a - math.log(1 - math.exp(a))  # noqa: E731
    out = PreferenceLoss("orpo", beta=0.1, nll_weight=1.0)(
        torch.tensor([-2.0]), torch.tensor([-3.0]), None, None, torch.tensor([4]), torch.tensor([2]))
    preference = -0.1 * _lsig(odds(a_c) - odds(a_r))
    assert float(out.preference_loss) == pytest.approx(preference, abs=1e-6)
    assert float(out.nll) == pytest.approx(0.5) and float(out.loss) == pytest.approx(preference + 0.5, abs=1e-6)
    assert float(out.chosen_rewards[0]) == pytest.approx(-0.05)


def test_log1mexp_is_stable_at_both_ends():
    x = torch.tensor([-1e-9, -1e-3, -0.69, -0.7, -30.0], dtype=torch.float64)
    torch.testing.assert_close(log1mexp(x), torch.log(1 - torch.exp(x)), rtol=1e-6, atol=1e-12)
    assert torch.isfinite(log1mexp(torch.tensor([-1e-7]))).all()


def test_reference_free_kinds_need_no_reference_but_need_lengths():
    for kind in ("simpo", "orpo"):
        loss = PreferenceLoss(kind)
        assert not loss.needs_reference
        with pytest.raises(ValueError, match="needs chosen_lengths and rejected_lengths"):
            loss(torch.tensor([-1.0]), torch.tensor([-2.0]), None, None)
    with pytest.raises(ValueError, match="needs reference log-probs"):
        PreferenceLoss("sigmoid")(torch.tensor([-1.0]), torch.tensor([-2.0]), None, None)


def _our_logps():
    """Summed response log-probs and lengths from our pipeline on a tiny model whose LoRA is
    non-zero, and the same batch as TRL's (logits, labels) with the prompt masked."""
    from test_trainer_tiny import chat_prompt, tiny_lora, tiny_tokenizer

    from aptune.train.batching import collate_pairs
    from aptune.train.logprobs import response_logps
    from aptune.train.pairs import PreferencePair, tokenize_pairs

    tok = tiny_tokenizer()
    model = tiny_lora(random_b=True).eval()
    pairs = [PreferencePair("a", chat_prompt(tok, "What gas do plants absorb?"), "Carbon dioxide", "Oxygen"),
             PreferencePair("b", "Question: 2+2?\nAnswer:", " 4", " 5, or maybe six")]
    tokenized = tokenize_pairs(tok, pairs, 256)
    batch = collate_pairs(tokenized, tok.pad_token_id)
    with torch.no_grad():
        logps, lengths = response_logps(model, batch, use_logits_to_keep=False)
        rows = [(p.prompt_ids, r) for side in ("chosen_ids", "rejected_ids") for p in tokenized
                for r in [getattr(p, side)]]
        width = max(len(a) + len(b) for a, b in rows)
        ids = torch.full((len(rows), width), tok.pad_token_id)
        labels = torch.full((len(rows), width), -100)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, (prompt, response) in enumerate(rows):
            seq = list(prompt) + list(response)
            ids[i, :len(seq)] = torch.tensor(seq)
            mask[i, :len(seq)] = 1
            labels[i, len(prompt):len(seq)] = torch.tensor(response)
        logits = model(input_ids=ids, attention_mask=mask).logits
    return logps, lengths, logits, labels


def test_parity_with_trl_orpo_and_simpo():
    """TRL's ORPO and CPO(SimPO) trainers' own code: their average log-probs from the logits, and
    their loss and rewards from those, against ours from our own log-probs."""
    pytest.importorskip("trl")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from trl.experimental.cpo import CPOTrainer
        from trl.experimental.orpo import ORPOTrainer
    logps, lengths, logits, labels = _our_logps()
    n = len(logps) // 2
    avg = ORPOTrainer.get_batch_logps(logits, labels, average_log_prob=True)
    torch.testing.assert_close(avg, logps / lengths, atol=TOL, rtol=TOL)  # the same averaged log-probs
    device = types.SimpleNamespace(device="cpu")
    # ORPO: TRL's loss = NLL - mean(beta * logsigmoid(log odds)); ours with nll_weight 1
    stub = types.SimpleNamespace(beta=0.1, accelerator=device)
    losses, chosen, rejected, *_ = ORPOTrainer.odds_ratio_loss(stub, avg[:n], avg[n:])
    ours = PreferenceLoss("orpo", beta=0.1, nll_weight=1.0)(logps[:n], logps[n:], None, None, lengths[:n], lengths[n:])
    assert float(ours.preference_loss) == pytest.approx(float(-losses.mean()), abs=TOL)
    torch.testing.assert_close(ours.chosen_rewards, chosen, atol=TOL, rtol=TOL)
    torch.testing.assert_close(ours.rejected_rewards, rejected, atol=TOL, rtol=TOL)
    # SimPO through CPO's loss (loss_type simpo, reference-free)
    stub = types.SimpleNamespace(beta=2.0, simpo_gamma=0.5, label_smoothing=0.0, loss_type="simpo", alpha=0.0,
                                 accelerator=device)
    losses, chosen, rejected = CPOTrainer.cpo_loss(stub, avg[:n], avg[n:])
    ours = PreferenceLoss("simpo", beta=2.0, simpo_gamma=0.5)(logps[:n], logps[n:], None, None, lengths[:n], lengths[n:])
    assert float(ours.preference_loss) == pytest.approx(float(losses.mean()), abs=TOL)
    torch.testing.assert_close(ours.chosen_rewards, chosen, atol=TOL, rtol=TOL)
    torch.testing.assert_close(ours.rejected_rewards, rejected, atol=TOL, rtol=TOL)


def test_a_reference_free_loss_skips_the_reference_pass(tmp_path, monkeypatch):
    from test_trainer_tiny import tiny_lora, tiny_tokenizer

    import aptune.train.trainer as trainer
    from aptune.train.config import TrainConfig
    from aptune.train.pairs import PreferencePair

    called = []
    monkeypatch.setattr(trainer, "compute_reference_logps", lambda *a, **k: called.append(1) or {})
    pairs = [PreferencePair(f"p{i}", "Question: 2+2?\nAnswer:", " 4", " 5") for i in range(4)]
    result = trainer.train_preference(tiny_lora(), tiny_tokenizer(), pairs,
                                      TrainConfig(loss="orpo", nll_weight=1.0, epochs=1, batch_size=2, progress=False),
                                      tmp_path / "orpo")
    assert called == [] and result.reference_s == 0.0 and result.steps == 2


def test_apt_with_orpo_runs_without_a_reference(tmp_path):
    """train.loss: orpo in the APT loop: every stage runs, the manifest says no reference was
    scored, and the loop trains (the method apt-orpo presets exactly this)."""
    import json

    import yaml

    from aptune.config import load_run_config
    from aptune.io import read_json
    from aptune.methods import METHODS
    from aptune.methods.apt import APTRun
    from tiny import save_tiny, tiny_mc_rows

    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in tiny_mc_rows(40, seed=1)))
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({
        "model": save_tiny(tmp_path / "m"), "precision": "fp32", "pool": {"tasks": ["d.jsonl"], "split": "train"},
        "dev": {"tasks": []}, "domain_eval": {"tasks": ["d.jsonl"]}, "general_eval": {"tasks": []},
        "adapter": {"r": 4, "alpha": 8.0}, "train": {"loss": "orpo", "nll_weight": 1.0, "batch_size": 4, "epochs": 1,
                                                     "progress": False},
        "rounds": {"max_rounds": 1}}))
    APTRun(load_run_config(tmp_path / "c.yaml"), tmp_path / "run", progress=False).run()
    record = read_json(tmp_path / "run" / "manifest.json")["stages"]["round-1/train"]
    assert record["reference"].startswith("none: the orpo loss reads no reference") and record["reference_s"] == 0.0
    assert record["steps"] >= 1
    assert METHODS["apt-orpo"].preset["train"] == {"loss": "orpo", "nll_weight": 1.0}
