"""The CLI as a user runs it: models, data, eval (tables printed, files written)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from aptune.io import read_json, read_jsonl
from tiny import save_tiny, tiny_mc_rows

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def _aptune(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aptune.cli", *args], env=ENV, capture_output=True, text=True,
                          timeout=300)


def test_models_lists_the_registry():
    proc = _aptune("models")
    assert proc.returncode == 0
    assert "smollm2-135m (default)" in proc.stdout and "gemma3-270m" in proc.stdout


def test_data_lists_tasks_with_splits():
    proc = _aptune("data", "--domain", "science")
    assert proc.returncode == 0
    assert "arc_easy" in proc.stdout and "sciq" in proc.stdout and "hellaswag" not in proc.stdout.split("suite")[0]
    assert "suite science" in proc.stdout


def test_eval_writes_predictions_and_metrics(tmp_path: Path):
    model = save_tiny(tmp_path / "model")
    data = tmp_path / "mc.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in tiny_mc_rows(30, seed=4)))
    out = tmp_path / "out"
    proc = _aptune("eval", "--model", model, "--tasks", str(data), "--split", "source", "--precision", "fp32",
                   "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-1500:]
    assert "majority-position" in proc.stdout and "mc" in proc.stdout
    rows = read_jsonl(out / "predictions.jsonl")
    assert len(rows) == 30 and {"id", "gold", "prediction", "correct", "logprobs"} <= set(rows[0])
    metrics = read_json(out / "metrics.json")
    task = metrics["tasks"]["mc"]
    assert task["n"] == 30
    assert abs(task["metrics"]["acc"]["value"] - sum(r["correct_acc"] for r in rows) / 30) < 1e-9
    assert task["metrics"]["acc"]["low"] <= task["metrics"]["acc"]["value"] <= task["metrics"]["acc"]["high"]
    assert sum(task["positions"]["predicted_histogram"].values()) == 30
    assert metrics["precision"] == "float32" and metrics["provenance"]["versions"]["torch"]


def test_eval_rejects_a_path_that_is_not_a_model(tmp_path: Path):
    (tmp_path / "notamodel").mkdir()
    proc = _aptune("eval", "--model", str(tmp_path / "notamodel"), "--tasks", "arc_easy", "--limit", "2",
                   "--out", str(tmp_path / "o"))
    assert proc.returncode == 2
    assert "not a model folder" in proc.stderr and "Traceback" not in proc.stderr


def test_eval_applies_saved_adapters_in_order(tmp_path: Path):
    import torch

    from aptune.adapters import AdapterConfig, apply_adapters, attach_adapter, merge_adapter, save_adapter
    from aptune.data.files import load_file
    from aptune.evaluate.scoring import score_choices
    from aptune.models import load_model, load_tokenizer
    from aptune.prompts import PromptFormat

    model_dir = save_tiny(tmp_path / "model")
    folders = []
    base = load_model(model_dir)
    for i in range(2):  # two "rounds": the first merged, the second trained on top of it
        lm = attach_adapter(base, AdapterConfig(r=4, alpha=8.0, target_modules="all-linear"))
        torch.manual_seed(i)
        for name, p in lm.named_parameters():
            if "lora_B" in name:
                p.data.normal_(0, 0.5)  # a trained adapter: B is no longer zero
        folders.append(save_adapter(lm, tmp_path / f"adapter-{i}"))
        base = merge_adapter(lm)
    data = tmp_path / "mc.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in tiny_mc_rows(12, seed=3)))
    args = ["eval", "--model", model_dir, "--tasks", str(data), "--split", "source", "--precision", "fp32"]
    proc = _aptune(*args, "--adapter", str(folders[0]), "--adapter", str(folders[1]), "--out", str(tmp_path / "a"))
    assert proc.returncode == 0, proc.stderr[-1500:]
    assert read_json(tmp_path / "a" / "metrics.json")["adapters"] == [str(f) for f in folders]
    got = [r["logprobs"] for r in read_jsonl(tmp_path / "a" / "predictions.jsonl")]
    examples = load_file(data)
    expected = apply_adapters(load_model(model_dir), folders)
    fmt = PromptFormat()
    want = [list(s.logprobs) for s in score_choices(expected, load_tokenizer(model_dir), examples, fmt, progress=False)]
    plain = [list(s.logprobs) for s in score_choices(load_model(model_dir), load_tokenizer(model_dir), examples, fmt,
                                                     progress=False)]
    assert all(abs(a - b) < 1e-3 for g, w in zip(got, want) for a, b in zip(g, w))
    assert any(abs(a - b) > 1e-2 for g, p in zip(got, plain) for a, b in zip(g, p))  # the adapters did something
    bad = _aptune(*args, "--adapter", str(tmp_path), "--out", str(tmp_path / "b"))
    assert bad.returncode == 2 and "no adapter found" in bad.stderr and "Traceback" not in bad.stderr


def test_eval_diff_pairs_two_evaluations_item_by_item(tmp_path: Path):
    from aptune.io import write_jsonl_atomic

    def folder(name, rows):
        write_jsonl_atomic(tmp_path / name / "predictions.jsonl", rows)
        return str(tmp_path / name)

    row = lambda t, i, correct, gold_lp: {"task": t, "id": i, "gold": 0, "correct": correct,  # noqa: E731
                                          "logprobs": [gold_lp, -5.0]}
    before = folder("before", [row("a", "1", True, -2.0), row("a", "2", False, -6.0), row("b", "1", True, -1.0),
                               row("b", "9", True, -1.0)])
    after = folder("after", [row("a", "1", True, -3.0), row("a", "2", True, -4.0), row("b", "1", False, -4.0)])
    proc = _aptune("eval-diff", before, after)
    assert proc.returncode == 0, proc.stderr[-1500:]
    lines = {ln.split("│")[1].strip(): ln for ln in proc.stdout.splitlines() if ln.count("│") > 3}
    assert "+50.0" in lines["a"] and "+0.50" in lines["a"]      # a: 1 of 2 newly right; (-1 + 2) / 2 nats
    assert "-100.0" in lines["b"] and "-3.00" in lines["b"]
    assert "+0.0" in lines["all tasks"] and "-0.67" in lines["all tasks"]  # (-1 + 2 - 3) / 3
    assert "1 items are in only one" in proc.stdout
    bad = _aptune("eval-diff", before, str(tmp_path))
    assert bad.returncode == 2 and "no predictions.jsonl" in bad.stderr and "Traceback" not in bad.stderr


def test_library_chatter_is_kept_below_warning() -> None:
    """faiss.loader logs a traceback at INFO for each CPU build it cannot import; the CLI's INFO
    log shows warnings from it and nothing else (the same for the other chatty libraries)."""
    import logging

    from aptune.cli import _setup_logging

    _setup_logging(verbose=False)
    for name in ("faiss.loader", "sentence_transformers", "httpx"):  # set on the logger, whatever the root's level
        assert logging.getLogger(name).level == logging.WARNING, name


def test_eval_options_come_from_the_settings_dataclasses():
    """Every prompt/mining setting is an `aptune eval` option with the schema's default, and the
    schema's defaults are the evaluator's own (declared once, in EvalSettings)."""
    from typer.main import get_command

    from aptune.cli import app
    from aptune.config import MiningConfig, PromptConfig, RunConfig
    from aptune.evaluate.runner import EvalSettings

    params = {p.name: p for p in get_command(app).commands["eval"].params}
    for cls in (PromptConfig, MiningConfig):
        for name, value in vars(cls()).items():
            if name in getattr(cls, "RUN_ONLY", ()):
                assert name not in params, f"{name} is a run's key, not an eval option"
                continue
            assert params[name].default == value, name
    assert params["model"].default == RunConfig().model.name
    for name in ("dtype", "attn_implementation", "quantization"):
        assert params[name].default == getattr(RunConfig().model, name), name
    ev = EvalSettings()
    assert (PromptConfig().template, PromptConfig().mc_format, MiningConfig().mc_metric,
            MiningConfig().max_new_tokens) == (ev.prompt.template, ev.prompt.mc_format, ev.mc_metric, ev.max_new_tokens)


def test_eval_bad_option_value_is_the_config_loaders_one_line_error(tmp_path: Path):
    proc = _aptune("eval", "--tasks", "sciq", "--mc-format", "bogus", "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert proc.stderr.strip() == "aptune: error: command line: mc_format: must be one of cloze, letter, got 'bogus'"


def test_methods_lists_the_method_table():
    from aptune.methods import METHODS

    proc = _aptune("methods")
    assert proc.returncode == 0, proc.stderr
    for kind in METHODS:
        assert kind in proc.stdout
    assert "rounds.max_rounds=1" in proc.stdout and "adapter.kind=alora" in proc.stdout


def test_plan_prints_the_memory_plan_and_refuses_what_cannot_fit(tmp_path: Path):
    """`aptune plan` and `aptune run --plan` read only config.json; a plan larger than the
    machine's free memory is a one-line refusal, before any run folder exists."""
    model = save_tiny(tmp_path / "model")
    proc = _aptune("plan", "--set", f"model={model}", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert "planned peak" in proc.stdout and "fits on cpu" in proc.stdout
    out = tmp_path / "run"
    proc = _aptune("run", "--plan", "--out", str(out), "--set", f"model={model}", "--set", "train.batch_size=100000",
                   "--set", "train.max_length=100000")
    assert proc.returncode == 2
    assert proc.stderr.startswith("aptune: error: planned peak") and "available on cpu" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not out.exists()
    proc = _aptune("run", "--out", str(out), "--set", f"model={model}", "--set", "train.batch_size=100000",
                   "--set", "train.max_length=100000")
    assert proc.returncode == 2 and proc.stderr.startswith("aptune: error: planned peak") and not out.exists()


def test_eval_reads_a_users_file_whole_and_says_which_split(tmp_path: Path):
    """A 12-item file without --split is evaluated in full (the hash test share would keep about 4),
    in a chat format, and the output names the split and the count; --split test still works."""
    model = save_tiny(tmp_path / "model")
    data = tmp_path / "my12items.jsonl"
    data.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"Say {w}"},
                                                     {"role": "assistant", "content": w}]}) + "\n"
                            for w in "red blue green sun moon water fire cat dog tree star planet".split()))
    out = tmp_path / "out"
    proc = _aptune("eval", "--model", model, "--tasks", str(data), "--precision", "fp32", "--max-new-tokens", "4",
                   "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-1500:]
    assert "my12items: 12 of 12 items (split source)" in proc.stdout
    assert len(read_jsonl(out / "predictions.jsonl")) == 12
    assert read_json(out / "metrics.json")["splits"] == {"my12items": "source"}
    proc = _aptune("eval", "--model", model, "--tasks", str(data), "--split", "test", "--precision", "fp32",
                   "--max-new-tokens", "4", "--out", str(tmp_path / "test"))
    assert proc.returncode == 0, proc.stderr[-1500:]
    n_test = len(read_jsonl(tmp_path / "test" / "predictions.jsonl"))
    assert 0 < n_test < 12 and f"my12items: {n_test} of 12 items (split test)" in proc.stdout


def test_eval_fields_option_renames_columns_and_rejects_bad_pairs(tmp_path: Path):
    model = save_tiny(tmp_path / "model")
    data = tmp_path / "renamed.jsonl"
    data.write_text("".join(json.dumps({"q": f"Say {w}", "r": w}) + "\n" for w in ("red", "blue")))
    proc = _aptune("eval", "--model", model, "--tasks", str(data), "--fields", "question=q,answer=r", "--precision",
                   "fp32", "--max-new-tokens", "2", "--out", str(tmp_path / "o"))
    assert proc.returncode == 0, proc.stderr[-1500:]
    assert "renamed: 2 of 2 items" in proc.stdout
    bad = _aptune("eval", "--model", model, "--tasks", str(data), "--fields", "question", "--out", str(tmp_path / "b"))
    assert bad.returncode != 0 and "expected FIELD=COLUMN pairs" in (bad.stderr + bad.stdout)


def test_aptune_run_end_to_end_from_the_command_line(tmp_path: Path):
    """`aptune run CONFIG --out DIR` on a tiny model finishes, prints the report line, and a second
    invocation resumes the finished run (the config it saved reads back as unchanged)."""
    import yaml

    model = save_tiny(tmp_path / "model")
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in tiny_mc_rows(30, seed=4)))
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({
        "model": model, "precision": "fp32", "pool": {"tasks": ["d.jsonl"], "split": "train"},
        "dev": {"tasks": []}, "domain_eval": {"tasks": ["d.jsonl"]}, "general_eval": {"tasks": []},
        "mining": {"accept_judge": True}, "adapter": {"r": 4, "alpha": 8.0, "target_modules": ["q_proj", "v_proj"],
                                                       "modules_to_save": []},
        "train": {"batch_size": 4, "epochs": 1}, "rounds": {"max_rounds": 1}}))
    out = tmp_path / "run"
    first = _aptune("run", str(cfg), "--out", str(out))
    assert first.returncode == 0, (first.stdout + first.stderr)[-2000:]
    assert "report:" in first.stdout and (out / "report.md").exists()
    again = _aptune("run", str(cfg), "--out", str(out))
    assert again.returncode == 0, (again.stdout + again.stderr)[-2000:]
