"""Bad input through the CLI, as a user meets it: one line on stderr naming file, line and field,
exit code 2, no traceback, and nothing written (or nothing already written lost).

Corpora: ``tests/data/bad/`` (data files) and ``tests/data/run/`` (run configs)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from aptune.run.evaluation import eval_settings
from aptune.config import load_run_config
from aptune.data import load_task
from aptune.evaluate.runner import answer
from aptune.models import load_model, load_tokenizer
from test_apt_loop import run_config  # noqa: F401  (fixture: a tiny run config next to its data)
from tiny import save_tiny, tiny_mc_rows, tiny_tokenizer

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
DATA = Path(__file__).parent / "data"


def _aptune(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aptune.cli", *args], env=ENV, capture_output=True, text=True,
                          timeout=timeout)


def _one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("aptune: error:")]
    assert len(lines) == 1, proc.stderr[-2000:]
    return lines[0]


BAD_POOLS = [
    ("malformed_json.jsonl", ":2: invalid JSON (Expecting ',' delimiter at column 52)"),
    ("missing_question.jsonl", ":1: field 'question': missing or empty"),
    ("empty_question.jsonl", ":2: field 'question': missing or empty"),
    ("missing_gold.jsonl", ":1: field 'gold': missing (required with choices)"),
    ("gold_out_of_range.jsonl", ":1: field 'gold': index 5 out of range for 2 choices"),
    ("duplicate_ids.jsonl", ":2: field 'id': duplicate id 'x' (first on line 1)"),
    ("empty.jsonl", ":1: the file has no items"),
]


@pytest.mark.parametrize("name,message", BAD_POOLS, ids=[n for n, _ in BAD_POOLS])
def test_bad_pool_file_is_one_line_and_nothing_is_touched(run_config: Path, tmp_path: Path,  # noqa: F811
                                                         name: str, message: str):
    """A finished run directory stays as it was when a rerun's data turns out bad."""
    root = tmp_path / "run"
    root.mkdir()
    (root / "keep.txt").write_text("earlier work")
    shutil.copy(DATA / "bad" / name, tmp_path / "domain.jsonl")
    error = _one_line_error(_aptune("run", str(run_config), "--out", str(root)))
    assert f"{tmp_path / 'domain.jsonl'}{message}" in error
    assert sorted(p.name for p in root.iterdir()) == ["keep.txt"]


def test_empty_pool_split_is_refused_before_work(run_config: Path, tmp_path: Path):  # noqa: F811
    rows = tiny_mc_rows(6, seed=1, split="test")  # every item pinned to test: the train pool is empty
    (tmp_path / "domain.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "never"
    error = _one_line_error(_aptune("run", str(run_config), "--out", str(out)))
    assert "pool: no items in split 'train'" in error and "nothing to mine" in error
    assert not out.exists()


@pytest.mark.parametrize("name,message", [
    ("unknown_key.yaml", "unknown_key.yaml:4: rounds.max_round: unknown key"),
    ("wrong_type.yaml", "wrong_type.yaml:4: train.lr: expected a number, got 'fast'"),
    ("python_tag.yaml", "python_tag.yaml:2: invalid YAML"),
])
def test_bad_config_is_one_line_with_file_and_line(tmp_path: Path, name: str, message: str):
    out = tmp_path / "never"
    error = _one_line_error(_aptune("run", str(DATA / "run" / name), "--out", str(out), timeout=120))
    assert message in error
    assert not out.exists()


def test_model_path_that_is_not_a_model(run_config: Path, tmp_path: Path):  # noqa: F811
    cfg = yaml.safe_load(run_config.read_text())
    (tmp_path / "empty-folder").mkdir()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text('{"model_type": "llama"}')  # config, no weights
    for model, message in ((tmp_path / "empty-folder", "not a model folder (no config.json)"),
                           (tmp_path / "broken", "cannot load a causal LM")):
        cfg["model"] = str(model)
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump(cfg))
        error = _one_line_error(_aptune("run", str(path), "--out", str(tmp_path / "out")))
        assert str(model) in error and message in error


def test_pool_the_model_gets_all_right_stops_cleanly(run_config: Path, tmp_path: Path):  # noqa: F811
    """Gold = the model's own prediction on every item: no weakness cases, a clean stop (exit 0)."""
    cfg = load_run_config(run_config)
    model, tok = load_model(cfg.model.name), load_tokenizer(cfg.model.name)
    path = tmp_path / "domain.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    examples = load_task(str(path), split="source", seed=cfg.seed)
    predicted = {r.example.id: r.prediction for r in answer(model, tok, examples, eval_settings(cfg), torch.float32,
                                                          progress=False)}
    path.write_text("".join(json.dumps({**row, "gold": predicted[row["id"]]}) + "\n" for row in rows))
    root = tmp_path / "run"
    proc = _aptune("run", str(run_config), "--out", str(root))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "stopped: no weakness cases" in proc.stdout
    decision = json.loads((root / "round-1" / "decision.json").read_text())
    assert decision == {"accepted": False, "stop": True,
                        "reason": "no weakness cases: the model answers every pool item correctly"}
    assert (root / "round-1" / "weakness.jsonl").read_text() == "" and (root / "report.md").exists()


def test_tokenizer_without_chat_template_falls_back_to_plain(tmp_path: Path):
    model = Path(save_tiny(tmp_path / "model"))
    (model / "chat_template.jinja").unlink(missing_ok=True)
    tiny_tokenizer(chat=False).save_pretrained(model)  # overwrite: no chat template
    assert not load_tokenizer(str(model)).chat_template
    data = tmp_path / "mc.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in tiny_mc_rows(6, seed=4)))
    args = ["eval", "--model", str(model), "--tasks", str(data), "--split", "source", "--precision", "fp32"]
    proc = _aptune(*args, "--out", str(tmp_path / "auto"), timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]  # template auto: plain "Question: ...\nAnswer:"
    error = _one_line_error(_aptune(*args, "--template", "chat", "--out", str(tmp_path / "chat"), timeout=120))
    assert "prompt template 'chat' requested but the tokenizer has no chat template" in error


def test_prompt_longer_than_the_context(run_config: Path, tmp_path: Path):  # noqa: F811
    """Truncated from the left with a warning by default; `prompt.too_long: error` refuses it."""
    rows = tiny_mc_rows(40, seed=1)
    rows[0]["question"] = "what is the " + "red " * 400 + "?"  # ~1600 tokens; the tiny context is 256
    rows[0]["split"] = "train"
    (tmp_path / "domain.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    mine = ["mine", "--run-dir"]
    proc = _aptune(*mine, str(tmp_path / "cut"), "--config", str(run_config))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "'item-0': " in proc.stderr and "prompt cut from the left" in proc.stderr
    cfg = yaml.safe_load(run_config.read_text())
    cfg["prompt"] = {"too_long": "error"}
    strict = tmp_path / "strict.yaml"
    strict.write_text(yaml.safe_dump(cfg))
    error = _one_line_error(_aptune(*mine, str(tmp_path / "strict"), "--config", str(strict)))
    assert "item 'item-0': prompt + longest choice is" in error and "more than the model's context of 256" in error


def test_prompts_longer_than_the_context_are_named_truncated_skipped_or_refused(caplog):
    """Every too-long item is named by task and id: truncate (default) cuts and says so, skip
    leaves it out and lists it in the metrics, error stops with one line; nothing silently."""
    import logging

    import torch

    from aptune.data.example import Example
    from aptune.evaluate.runner import EvalSettings, evaluate
    from aptune.prompts import PromptFormat
    from tiny import tiny_model, tiny_tokenizer

    model, tokenizer = tiny_model("llama"), tiny_tokenizer()
    model.config.max_position_embeddings = 64
    long_q = " ".join(["the sun and the moon"] * 30)
    items = {"t": [Example("short", "t", "x", "the cat", answer="dog"), Example("long", "t", "x", long_q, answer="a"),
                   Example("mc-long", "t", "x", long_q, choices=("a", "b"), gold=0)]}
    fmt = PromptFormat(template="plain")
    with caplog.at_level(logging.WARNING):
        report = evaluate(model, tokenizer, items, EvalSettings(prompt=fmt, max_new_tokens=4), torch.float32,
                          progress=False)
    assert report.metrics["t"].n == 3
    assert "item 'long'" in caplog.text and "item 'mc-long'" in caplog.text and "cut" in caplog.text
    skipped = evaluate(model, tokenizer, items, EvalSettings(prompt=fmt, max_new_tokens=4, too_long="skip"),
                       torch.float32, progress=False)
    assert skipped.metrics["t"].n == 1 and skipped.metrics["t"].to_dict()["skipped_too_long"] == ["long", "mc-long"]
    with pytest.raises(ValueError, match=r"item 'long': prompt is \d+ tokens"):
        evaluate(model, tokenizer, {"t": items["t"][:2]}, EvalSettings(prompt=fmt, max_new_tokens=4, too_long="error"),
                 torch.float32, progress=False)
