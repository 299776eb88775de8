"""Tokenisation, batching, log-probs and the trainer loop on a tiny random model (seconds)."""

from __future__ import annotations

import contextlib
import json
import math
import time

import pytest
import torch
from test_trainer_tiny import chat_prompt, tiny_lora, tiny_model, tiny_tokenizer

from aptune.train import (
    PreferencePair,
    SFTItem,
    TrainConfig,
    TrainingDivergedError,
    train_preference,
    train_sft,
)
from aptune.train.batching import collate_pairs, length_grouped_batches
from aptune.prompts import end_of_turn_id
from aptune.train.logprobs import response_logps
from aptune.train.pairs import tokenize_items, tokenize_pairs
from aptune.train.reference import adapter_disabled
from aptune.train.config import loss_rose, loss_start_end

FAST = dict(precision="fp32", progress=False, lr=1e-2)


def _pairs(tok, n: int = 8) -> list[PreferencePair]:  # noqa: ANN001
    return [
        PreferencePair(f"p{i}", chat_prompt(tok, f"What is {i} plus {i}?" + " Think." * (i % 3)), f"{2 * i}", f"{2 * i + 1}")
        for i in range(n)
    ]


def _lora_state(model) -> dict[str, torch.Tensor]:  # noqa: ANN001
    return {k: v.detach().clone() for k, v in model.named_parameters() if "lora_" in k}


# --- tokenisation ---------------------------------------------------------------------------


def test_chat_prompts_get_end_of_turn_plain_prompts_do_not() -> None:
    tok = tiny_tokenizer()
    eot = end_of_turn_id(tok)
    assert eot == tok.convert_tokens_to_ids("<|im_end|>")
    chat = PreferencePair("c", chat_prompt(tok, "Q?"), "yes", "no")
    plain = PreferencePair("p", "Question: Q?\nAnswer:", " yes", " no")
    tc, tp = tokenize_pairs(tok, [chat, plain], max_length=128)
    assert tc.chosen_ids[-1] == eot and tc.rejected_ids[-1] == eot
    assert tok.decode(tc.chosen_ids[:-1]) == "yes"
    assert tok.decode(tp.chosen_ids) == " yes" and eot not in tp.chosen_ids
    (never,) = tokenize_pairs(tok, [chat], max_length=128, eos="never")
    assert never.chosen_ids[-1] != eot


def test_truncation_keeps_prompt_end_and_whole_response() -> None:
    tok = tiny_tokenizer(chat=False)
    pair = PreferencePair("x", "abcdefghij", "XY", "Z")
    (t,) = tokenize_pairs(tok, [pair], max_length=6)
    assert tok.decode(t.prompt_ids) == "ghij" and tok.decode(t.chosen_ids) == "XY" and t.length == 6
    (t,) = tokenize_pairs(tok, [PreferencePair("y", "ab", "LONGANSWER", "N")], max_length=4)
    assert len(t.prompt_ids) == 1 and tok.decode(t.chosen_ids) == "LON"  # response cut only when it must be


def test_bad_items_raise_naming_the_item() -> None:
    tok = tiny_tokenizer(chat=False)
    with pytest.raises(ValueError, match="pair 'e'.*non-empty"):
        tokenize_pairs(tok, [PreferencePair("e", "Q", "", "no")], max_length=16)
    with pytest.raises(ValueError, match="appears twice"):
        tokenize_pairs(tok, [PreferencePair("d", "Q", "a", "b")] * 2, max_length=16)
    with pytest.raises(ValueError, match="SFT item 's'.*prompt must be non-empty"):
        tokenize_items(tok, [SFTItem("", "a", id="s")], max_length=16)


# --- batching and log-probs -----------------------------------------------------------------


def test_left_padded_logps_equal_unpadded_scoring() -> None:
    """Each row's summed response log-prob equals scoring that sequence alone with full logits."""
    tok = tiny_tokenizer()
    model = tiny_model(0)
    pairs = tokenize_pairs(tok, _pairs(tok, 3), max_length=128)
    batch = collate_pairs(pairs, tok.pad_token_id)
    assert batch.input_ids.shape[0] == 6 and batch.attention_mask[:, 0].min() == 0  # padded on the left
    logps, lengths = response_logps(model, batch)
    rows = [(p.prompt_ids, p.chosen_ids) for p in pairs] + [(p.prompt_ids, p.rejected_ids) for p in pairs]
    for i, (prompt, response) in enumerate(rows):
        ids = torch.tensor([list(prompt) + list(response)])
        with torch.no_grad():
            lp = model(input_ids=ids).logits.log_softmax(-1)[0]
        expected = sum(lp[len(prompt) - 1 + j, t].item() for j, t in enumerate(response))
        assert logps[i].item() == pytest.approx(expected, abs=1e-4)
        assert lengths[i].item() == len(response)


def test_length_grouped_batches_cover_everything_deterministically() -> None:
    lengths = [5, 50, 7, 48, 6, 49, 8, 47, 3, 51]
    a = length_grouped_batches(lengths, 2, torch.Generator().manual_seed(1), window=5)
    b = length_grouped_batches(lengths, 2, torch.Generator().manual_seed(1), window=5)
    assert a == b and sorted(i for batch in a for i in batch) == list(range(10))
    assert length_grouped_batches(lengths, 3)[0] == [9, 1, 5]  # no generator: longest first


# --- the trainer ----------------------------------------------------------------------------


def test_preference_training_starts_at_log2_and_learns(tmp_path) -> None:  # noqa: ANN001
    tok = tiny_tokenizer()
    model = tiny_lora(0)
    cfg = TrainConfig(epochs=6, batch_size=4, nll_weight=0.0, beta=0.5, **FAST)
    result = train_preference(model, tok, _pairs(tok), cfg, tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "train_metrics.jsonl").read_text().splitlines()]
    assert rows[0]["preference_loss"] == pytest.approx(math.log(2), abs=1e-5)  # policy == reference at step 0
    assert result.steps == 12 and result.examples == 48 and len(rows) == 12
    assert result.final_loss < math.log(2) - 0.05 and rows[-1]["reward_acc"] > 0.5
    assert {"step", "loss", "margin", "reward_acc", "lr", "nll"} <= rows[0].keys()
    assert (tmp_path / "adapter" / "adapter_model.safetensors").exists()
    assert json.loads((tmp_path / "train_result.json").read_text())["steps"] == 12
    assert result.tokens > 0 and result.peak_rss_mb > 0


def test_same_seed_same_adapter(tmp_path) -> None:  # noqa: ANN001
    tok = tiny_tokenizer()
    cfg = TrainConfig(epochs=2, batch_size=2, save_adapter=False, **FAST)
    states = []
    for run in range(2):
        model = tiny_lora(0, dropout=0.1)
        train_preference(model, tok, _pairs(tok), cfg, tmp_path / str(run))
        states.append(_lora_state(model))
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_reference_is_computed_once_or_taken_as_given(tmp_path) -> None:  # noqa: ANN001
    tok = tiny_tokenizer()
    calls = []

    def counting(model):  # noqa: ANN001, ANN202
        calls.append(1)
        return adapter_disabled(model)

    cfg = TrainConfig(epochs=3, batch_size=4, save_adapter=False, **FAST)
    train_preference(tiny_lora(0), tok, _pairs(tok), cfg, tmp_path / "a", reference_context=counting)
    assert len(calls) == 1

    @contextlib.contextmanager
    def forbidden(model):  # noqa: ANN001, ANN202
        raise AssertionError("reference pass should not run when all log-probs are given")
        yield

    given = {p.id: (-1.0, -2.0) for p in _pairs(tok)}
    result = train_preference(tiny_lora(0), tok, _pairs(tok), cfg, tmp_path / "b", given, forbidden)
    assert result.reference_s == 0.0


def test_reference_pass_and_training_loop_are_timed_apart(tmp_path, caplog) -> None:  # noqa: ANN001
    """A slow reference pass (0.4 s here, 27 s on a real DPO round) is reported as its own figure,
    not folded into the training time and throughput."""
    tok = tiny_tokenizer()

    @contextlib.contextmanager
    def slow(model):  # noqa: ANN001, ANN202
        time.sleep(0.4)
        with adapter_disabled(model):
            yield

    cfg = TrainConfig(epochs=1, batch_size=4, **FAST)
    with caplog.at_level("INFO", logger="aptune.train.trainer"):
        result = train_preference(tiny_lora(0), tok, _pairs(tok), cfg, tmp_path / "dpo", reference_context=slow)
    assert result.reference_s >= 0.4 and 0 < result.train_s < result.wall_s - result.reference_s
    assert result.examples_per_s == pytest.approx(result.examples / result.train_s)
    written = json.loads((tmp_path / "dpo" / "train_result.json").read_text())
    assert written["reference_s"] == result.reference_s and written["train_s"] == result.train_s
    assert f"reference pass {result.reference_s:.1f} s; trained 2 steps in {result.train_s:.1f} s" in caplog.text
    caplog.clear()
    items = [SFTItem(p.prompt, p.chosen, p.id) for p in _pairs(tok)]
    with caplog.at_level("INFO", logger="aptune.train.trainer"):
        sft = train_sft(tiny_lora(0), tok, items, cfg, tmp_path / "sft")
    assert sft.reference_s == 0.0 and sft.train_s > 0 and "reference pass" not in caplog.text


def test_nonfinite_steps_are_skipped_then_abort_keeping_last_good_adapter(tmp_path) -> None:  # noqa: ANN001
    tok = tiny_tokenizer()
    pairs = _pairs(tok, 4)
    cfg = TrainConfig(epochs=1, batch_size=1, max_nonfinite_steps=2, **FAST)
    # One poisoned pair: its step is skipped and logged, training goes on.
    ref = {p.id: (0.0, 0.0) for p in pairs}
    ref["p0"] = (float("nan"), 0.0)
    model = tiny_lora(0)
    result = train_preference(model, tok, pairs, cfg, tmp_path / "one", ref)
    assert result.skipped_steps == 1 and result.steps == 3
    assert "nonfinite" in (tmp_path / "one" / "train_metrics.jsonl").read_text()
    # Every pair poisoned: two in a row abort, with the untouched adapter saved.
    model = tiny_lora(0)
    before = _lora_state(model)
    with pytest.raises(TrainingDivergedError, match="2 non-finite steps in a row"):
        train_preference(model, tok, pairs, cfg, tmp_path / "all", {p.id: (math.inf, 0.0) for p in pairs})
    assert all(torch.equal(before[k], v) for k, v in _lora_state(model).items())
    assert (tmp_path / "all" / "adapter" / "adapter_model.safetensors").exists()


def test_grad_accum_and_checkpointing(tmp_path) -> None:  # noqa: ANN001
    """Accumulating 2 micro-batches halves the optimizer steps; checkpointing leaves step 0 unchanged."""
    tok = tiny_tokenizer()
    base = TrainConfig(epochs=1, batch_size=2, save_adapter=False, **FAST)
    plain = train_preference(tiny_lora(0), tok, _pairs(tok), base, tmp_path / "a")
    accum = train_preference(
        tiny_lora(0), tok, _pairs(tok), TrainConfig(**{**base.to_dict(), "grad_accum": 2}), tmp_path / "b"
    )
    ckpt = train_preference(
        tiny_lora(0), tok, _pairs(tok), TrainConfig(**{**base.to_dict(), "gradient_checkpointing": True}),
        tmp_path / "c",
    )
    assert plain.steps == 4 and accum.steps == 2 and accum.examples == 8
    first = [json.loads((tmp_path / d / "train_metrics.jsonl").read_text().splitlines()[0]) for d in "ac"]
    assert first[0]["loss"] == pytest.approx(first[1]["loss"], abs=1e-5)
    assert ckpt.final_loss == pytest.approx(plain.final_loss, abs=1e-4)


def test_sft_lowers_nll(tmp_path) -> None:  # noqa: ANN001
    tok = tiny_tokenizer()
    items = [SFTItem(chat_prompt(tok, f"Say {w}"), w) for w in ["red", "green", "blue", "cyan"]]
    cfg = TrainConfig(epochs=30, batch_size=2, **FAST)
    result = train_sft(tiny_lora(0), tok, items, cfg, tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "train_metrics.jsonl").read_text().splitlines()]
    assert result.mean_margin is None and result.steps == 60
    assert rows[-1]["loss"] < rows[0]["loss"] - 0.3
    assert result.extra["loss_rose"] is False


def test_loss_rose_compares_the_last_tenth_with_the_first_steps() -> None:
    assert not loss_rose([])
    assert not loss_rose([4.0])
    assert not loss_rose([4.0, 30.0, 9.0, 3.0])  # spiked, but ended below the start
    assert not loss_rose([4.0, 30.0, 9.0, 4.8])  # ended above, within the noise margin
    assert loss_rose([4.0, 30.0, 9.0, 5.2])      # more than 1.25x the start
    assert not loss_rose([4.0] + [50.0] * 17 + [3.9, 3.9])  # 20 steps: the last 2 decide
    assert loss_rose([4.0] + [1.0] * 17 + [3.9, 4.2])       # start = mean of the first 2 (2.5)
    # 40 steps: the start is the first 3 (one lucky low first batch does not make a flat run "rise")
    flat = [1.5, 1.9, 1.9] + [1.8] * 33 + [1.9, 1.9, 1.95, 2.0]
    assert loss_start_end(flat)[0] == pytest.approx(1.7667, abs=1e-3) and not loss_rose(flat)


def test_a_run_whose_loss_ends_above_its_start_is_flagged(tmp_path, caplog, monkeypatch) -> None:  # noqa: ANN001
    import aptune.train.config as train_config

    tok = tiny_tokenizer()
    items = [SFTItem(chat_prompt(tok, f"Say {w}"), w) for w in ["red", "green", "blue", "cyan"]]
    model = tiny_lora(0)
    # first learn a little (loss below the uniform 4.85 nats), then blow it up with lr 3.0; the
    # tiny model can only climb back to about uniform (+6%), so the noise margin real runs need
    # (loss_rose's own test) is set to 1 here: this checks the trainer's wiring on a real run
    monkeypatch.setattr(train_config, "LOSS_ROSE_MARGIN", 1.0)
    tuned = train_sft(model, tok, items, TrainConfig(**{**FAST, "lr": 0.1}, epochs=30, batch_size=2), tmp_path / "a")
    assert tuned.extra["loss_rose"] is False
    cfg = TrainConfig(**{**FAST, "lr": 3.0}, epochs=3, batch_size=2, warmup_ratio=0.0)
    called = time.perf_counter()
    with caplog.at_level("WARNING", logger="aptune.train.trainer"):
        result = train_sft(model, tok, items, cfg, tmp_path / "b")
    elapsed = time.perf_counter() - called
    assert result.extra["loss_rose"] is True
    # the flag's warning once reused the timer's name, so flagged runs reported the clock's uptime
    assert 0 < result.wall_s <= elapsed
    assert json.loads((tmp_path / "b" / "train_result.json").read_text())["extra"]["loss_rose"] is True
    assert "ended above where it started" in caplog.text


# --- mid-training checkpoints ---------------------------------------------------------------


def _train(kind: str, model, tok, cfg: TrainConfig, out):  # noqa: ANN001, ANN202
    if kind == "dpo":
        return train_preference(model, tok, _pairs(tok), cfg, out)
    items = [SFTItem(p.prompt, p.chosen, p.id) for p in _pairs(tok)]
    return train_sft(model, tok, items, cfg, out)


def _interrupt_after_checkpoint(monkeypatch, model, at_step: int, extra_forwards: int) -> None:  # noqa: ANN001
    """Raise KeyboardInterrupt in the forward pass ``extra_forwards`` calls after checkpoint ``at_step``."""
    import aptune.train.trainer as trainer

    real = trainer.save_checkpoint
    armed: list[int] = []

    def saving(out_dir, state, *args):  # noqa: ANN001, ANN202
        path = real(out_dir, state, *args)
        if state.step == at_step:
            armed.append(0)
        return path

    def forward_hook(module, args) -> None:  # noqa: ANN001
        if armed:
            armed[0] += 1
            if armed[0] > extra_forwards:
                raise KeyboardInterrupt("simulated kill")

    monkeypatch.setattr(trainer, "save_checkpoint", saving)
    model.register_forward_pre_hook(forward_hook)


def _rows(path) -> list[dict]:  # noqa: ANN001
    return [{k: v for k, v in json.loads(line).items() if k != "elapsed_s"}
            for line in (path / "train_metrics.jsonl").read_text().splitlines()]


def _adapted(adapter: str):  # noqa: ANN202
    """A tiny model with adapter dropout 0.1: LoRA (PEFT) or aptune's ALoRA."""
    if adapter == "lora":
        return tiny_lora(0, dropout=0.1)
    from aptune.adapters import AdapterConfig, attach_adapter

    return attach_adapter(tiny_model(0), AdapterConfig(kind="alora", r=4, alpha=8.0, dropout=0.1, heads=2))


def _trainable(model) -> dict[str, torch.Tensor]:  # noqa: ANN001
    return {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}


@pytest.mark.parametrize(("kind", "adapter"), [("dpo", "lora"), ("sft", "lora"), ("dpo", "alora")])
def test_an_interrupted_training_call_resumes_at_its_checkpoint_as_if_never_stopped(
    tmp_path, monkeypatch, caplog, kind: str, adapter: str,  # noqa: ANN001
) -> None:
    """Killed one step past checkpoint-6 of 8 steps, a fresh model in the same folder carries on
    from step 6: the same adapter bit for bit, the same metrics rows, counters and loss history.
    Dropout is on, so the RNG state must be restored too; no checkpoint is left at the end."""
    tok = tiny_tokenizer()
    cfg = TrainConfig(epochs=2, batch_size=2, checkpoint_every=3, disable_dropout=False, **FAST)
    clean_model = _adapted(adapter)
    clean = _train(kind, clean_model, tok, cfg, tmp_path / "clean")

    killed_model = _adapted(adapter)
    with monkeypatch.context() as patch:
        _interrupt_after_checkpoint(patch, killed_model, at_step=6, extra_forwards=1)
        with pytest.raises(KeyboardInterrupt):
            _train(kind, killed_model, tok, cfg, tmp_path / "killed")
    assert [p.name for p in (tmp_path / "killed").glob("checkpoint-*")] == ["checkpoint-6"]
    from aptune.io import new_mode

    for path in (tmp_path / "killed" / "checkpoint-6").iterdir():  # readable by whoever shares the run folder
        assert path.stat().st_mode & 0o777 == new_mode(), path.name
    assert len(_rows(tmp_path / "killed")) == 7  # step 7 was logged after the checkpoint, then the kill

    resumed_model = _adapted(adapter)
    with caplog.at_level("INFO", logger="aptune.train.checkpoint"):
        resumed = _train(kind, resumed_model, tok, cfg, tmp_path / "killed")
    assert "resuming training from" in caplog.text and "step 6" in caplog.text
    assert _rows(tmp_path / "killed") == _rows(tmp_path / "clean")
    assert (resumed.steps, resumed.examples, resumed.tokens) == (clean.steps, clean.examples, clean.tokens) == (
        8, 16, clean.tokens)
    assert resumed.mean_loss == clean.mean_loss and resumed.final_loss == clean.final_loss
    want, got = _trainable(clean_model), _trainable(resumed_model)
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)
    assert not list((tmp_path / "killed").glob("checkpoint-*")) and not list((tmp_path / "clean").glob("checkpoint-*"))


def _killed_right_after_checkpoint_3(monkeypatch, tok, cfg: TrainConfig, out) -> None:  # noqa: ANN001
    """A DPO call into ``out`` that is killed as soon as it has written checkpoint-3."""
    model = tiny_lora(0)
    with monkeypatch.context() as patch:
        _interrupt_after_checkpoint(patch, model, at_step=3, extra_forwards=0)
        with pytest.raises(KeyboardInterrupt):
            _train("dpo", model, tok, cfg, out)


def test_a_resumed_call_counts_the_interrupted_calls_training_seconds(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    """The checkpoint keeps the loop's own seconds apart from the call's: a resumed call's
    ``train_s`` adds the killed call's loop time; its ``resumed_s`` is the killed call's whole time."""
    tok = tiny_tokenizer()
    cfg = TrainConfig(epochs=2, batch_size=2, checkpoint_every=3, **FAST)
    _killed_right_after_checkpoint_3(monkeypatch, tok, cfg, tmp_path)
    before = json.loads((tmp_path / "checkpoint-3" / "state.json").read_text())["loop"]
    assert 0 < before["train_s"] < before["elapsed_s"]
    resumed = _train("dpo", tiny_lora(0), tok, cfg, tmp_path)
    assert resumed.resumed_s == before["elapsed_s"] and resumed.train_s > before["train_s"]
    assert resumed.wall_s > resumed.resumed_s + resumed.reference_s


def test_a_checkpoint_of_another_job_is_ignored_and_training_starts_over(tmp_path, monkeypatch, caplog) -> None:  # noqa: ANN001
    tok = tiny_tokenizer()
    cfg = TrainConfig(epochs=2, batch_size=2, checkpoint_every=3, **FAST)
    _killed_right_after_checkpoint_3(monkeypatch, tok, cfg, tmp_path / "out")
    other = TrainConfig(**{**cfg.to_dict(), "lr": 5e-3})  # another learning rate: another job
    fresh_model = tiny_lora(0)
    with caplog.at_level("WARNING", logger="aptune.train.checkpoint"):
        result = _train("dpo", tiny_lora(0), tok, other, tmp_path / "out")
    assert "different training job" in caplog.text
    fresh = _train("dpo", fresh_model, tok, other, tmp_path / "fresh")
    assert result.mean_loss == fresh.mean_loss and _rows(tmp_path / "out") == _rows(tmp_path / "fresh")
    # settings that do not change the computation keep a checkpoint usable
    base = dict(cfg.to_dict())
    quiet = {**base, "progress": True, "checkpoint_every": 4, "log_every": 2}
    from aptune.train.checkpoint import fingerprint

    named = [("w", torch.zeros(2))]
    assert fingerprint(base, named, "d", 1) == fingerprint(quiet, named, "d", 1)
    assert fingerprint(base, named, "d", 1) != fingerprint(base, named, "e", 1) != fingerprint(base, named, "d", 2)


def _damage(folder, how: str) -> None:  # noqa: ANN001
    """Spoil a checkpoint the way a full disk, a bad copy or a hand edit would."""
    from safetensors.torch import load_file, save_file

    path = folder / "state.safetensors"
    if how == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif how == "garbage":
        path.write_bytes(b"\x00not a safetensors file")
    elif how == "missing":
        path.unlink()
    else:  # "lost-tensor" or "wrong-shape": a well-formed file that no longer fits the model
        tensors = load_file(str(path))
        name = max(k for k in tensors if k.startswith("param."))  # not the first copied: catches half-restores
        if how == "lost-tensor":
            del tensors[name]
        else:
            tensors[name] = torch.zeros(3, 3)
        save_file(tensors, str(path))


@pytest.mark.parametrize("how", ["truncated", "garbage", "missing", "lost-tensor", "wrong-shape"])
def test_a_damaged_checkpoint_is_skipped_with_a_warning_and_training_starts_over(
    tmp_path, monkeypatch, caplog, how: str,  # noqa: ANN001
) -> None:
    """A checkpoint only saves time: one that cannot be read back whole must not stop the run or
    leave half its state in the model. The call warns (naming the folder), trains from step 0 as
    a fresh call would, and leaves no checkpoint behind."""
    tok = tiny_tokenizer()
    cfg = TrainConfig(epochs=2, batch_size=2, checkpoint_every=3, **FAST)
    _killed_right_after_checkpoint_3(monkeypatch, tok, cfg, tmp_path / "out")
    _damage(tmp_path / "out" / "checkpoint-3", how)
    retried_model, fresh_model = tiny_lora(0), tiny_lora(0)
    with caplog.at_level("WARNING", logger="aptune.train.checkpoint"):
        retried = _train("dpo", retried_model, tok, cfg, tmp_path / "out")
    assert "checkpoint-3: damaged or incomplete" in caplog.text
    fresh = _train("dpo", fresh_model, tok, cfg, tmp_path / "fresh")
    assert retried.mean_loss == fresh.mean_loss and _rows(tmp_path / "out") == _rows(tmp_path / "fresh")
    want, got = _trainable(fresh_model), _trainable(retried_model)
    assert all(torch.equal(want[k], got[k]) for k in want)
    assert not list((tmp_path / "out").glob("checkpoint-*"))


def test_no_checkpoints_when_turned_off_or_too_few_steps(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    tok = tiny_tokenizer()
    import aptune.train.trainer as trainer

    saved: list[int] = []
    real = trainer.save_checkpoint
    monkeypatch.setattr(trainer, "save_checkpoint", lambda out, state, *a: saved.append(state.step) or real(out, state, *a))
    _train("dpo", tiny_lora(0), tok, TrainConfig(epochs=2, batch_size=2, checkpoint_every=0, **FAST), tmp_path / "a")
    assert saved == []
    _train("dpo", tiny_lora(0), tok, TrainConfig(epochs=2, batch_size=2, checkpoint_every=4, **FAST), tmp_path / "b")
    assert saved == [4]  # step 8 is the end: the adapter itself is saved, no checkpoint


def test_config_and_input_errors(tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="checkpoint_every must be >= 0"):
        TrainConfig(checkpoint_every=-1)
    with pytest.raises(ValueError, match="loss must be one of"):
        TrainConfig(loss="kto-pairs")  # type: ignore[arg-type]
    tok = tiny_tokenizer()
    frozen = tiny_model(0).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        train_preference(frozen, tok, _pairs(tok), TrainConfig(**FAST), tmp_path)
    with pytest.raises(ValueError, match="no adapter to disable"):  # full model: no implicit reference
        train_preference(tiny_model(0), tok, _pairs(tok), TrainConfig(**FAST), tmp_path)
    with pytest.raises(ValueError, match="no preference pairs"):
        train_preference(tiny_lora(0), tok, [], TrainConfig(**FAST), tmp_path)


def test_tensorboard_tracking_logs_the_jsonl_rows_offline(tmp_path):
    """train.tracking: tensorboard writes accelerate's TensorBoard event files beside the JSONL
    (which stays the source of the report), the same numbers at the same steps."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from aptune.adapters import AdapterConfig, attach_adapter
    from aptune.io import read_jsonl
    from aptune.train.config import TrainConfig
    from aptune.train.pairs import PreferencePair
    from aptune.train.trainer import train_preference
    from tiny import tiny_model, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    model = attach_adapter(tiny_model("llama"), AdapterConfig(r=4, alpha=8.0))
    pairs = [PreferencePair(f"p{i}", f"what is the {w}?", f" the {w}", " a dog") for i, w in
             enumerate(["sun", "moon", "cat", "tree", "star", "fire"])]
    cfg = TrainConfig(epochs=2, batch_size=2, lr=0.01, progress=False, tracking="tensorboard")
    train_preference(model, tokenizer, pairs, cfg, tmp_path / "train")
    rows = read_jsonl(tmp_path / "train" / "train_metrics.jsonl")
    events = list((tmp_path / "train" / "tracking").rglob("events.out.tfevents.*"))
    assert rows and events
    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    logged = acc.Scalars("loss")
    assert [e.step for e in logged] == [r["step"] for r in rows]
    assert [e.value for e in logged] == pytest.approx([r["loss"] for r in rows], rel=1e-6)


def test_an_unknown_or_missing_tracker_is_refused_before_training():
    from aptune.train.config import TrainConfig

    with pytest.raises(ValueError, match="tracking must be one of jsonl, tensorboard, wandb, mlflow"):
        TrainConfig(tracking="neptune")


def test_pairs_cut_to_max_length_are_named(caplog):
    import logging

    from aptune.train.pairs import PreferencePair, tokenize_pairs
    from tiny import tiny_tokenizer

    pairs = [PreferencePair("short", "the cat", " a", " b"),
             PreferencePair("long-one", " ".join(["the sun and the moon"] * 20), " a", " b")]
    with caplog.at_level(logging.WARNING):
        out = tokenize_pairs(tiny_tokenizer(), pairs, max_length=16)
    assert len(out[1].prompt_ids) + max(len(out[1].chosen_ids), len(out[1].rejected_ids)) <= 16
    assert "1 of 2 pairs exceeded train.max_length=16" in caplog.text and "'long-one'" in caplog.text


def test_peak_memory_is_the_calls_own_not_the_processes(tmp_path) -> None:  # noqa: ANN001
    """A training call reports the resident memory it reached, sampled while it ran: after the
    process held 400 MB more than it does now, a small call's peak stays below that mark."""
    import gc

    from aptune.train.peak_memory import PeakMemory, process_peak_rss_mb

    if PeakMemory(torch.device("cpu")).scope != "call":
        pytest.skip("no /proc: the reading is the process peak")
    ballast = torch.ones(100 * 2**20)  # 400 MB, touched
    high = process_peak_rss_mb()
    del ballast
    gc.collect()
    tok = tiny_tokenizer()
    result = _train("dpo", tiny_lora(0), tok, TrainConfig(epochs=1, batch_size=2, **FAST), tmp_path)
    assert 0 < result.peak_rss_mb < high - 200, (result.peak_rss_mb, high)
    assert result.extra["peak_rss_scope"] == "call" and result.peak_device_mb is None
