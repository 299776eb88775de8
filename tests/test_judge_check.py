"""The judge check between mining and training, and what the report shows of the judge's work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from aptune.apt.judge_check import check_answers
from aptune.config import load_run_config
from aptune.io import read_json
from aptune.methods.apt import APTRun
from aptune.apt.judge_check import JudgeCheckError
from tiny import save_tiny

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def _row(i: int, correct: bool, answer: str = "Paris", reference: str | None = "Paris") -> dict:
    row = {"id": f"q{i}", "correct": correct, "answer_text": answer, "prediction": answer,
           "judge": "short_answer", "judge_detail": "why", "example": {"question": f"question {i}?"}}
    if reference is not None:
        row["reference"] = reference
    return row


def test_the_limits():
    ok = check_answers([_row(i, i % 2 == 0) for i in range(10)], 1, max_wrong_share=0.8, max_length_ratio=4)
    assert ok.passed and ok.wrong == 5 and ok.length_ratio is None  # short_answer: no length limit
    too_wrong = check_answers([_row(i, i == 0) for i in range(10)], 1, max_wrong_share=0.8, max_length_ratio=4)
    assert not too_wrong.passed and "9 of 10 pool items wrong (90%" in too_wrong.problems[0]
    assert len(too_wrong.sample) == 5 and all(s["verdict"].startswith("wrong") for s in too_wrong.sample)
    wordy_rows = [{**_row(i, True, "The capital of France is Paris, of course."), "judge": "exact_match"}
                  for i in range(4)]
    wordy = check_answers(wordy_rows, 2, max_wrong_share=0.8, max_length_ratio=4)
    assert not wordy.passed and wordy.length_ratio == 8.0 and "8x as long as the references" in wordy.problems[0]
    # the short-answer judge reads sentences by design: no length limit for its items
    sentences = check_answers([_row(i, True, "The capital of France is Paris, of course.") for i in range(4)], 2,
                              max_wrong_share=0.8, max_length_ratio=4)
    assert sentences.passed and sentences.length_ratio is None
    # exactly at the limit passes; multiple choice has no length ratio
    edge = check_answers([_row(i, i < 2, reference=None) for i in range(10)], 1, max_wrong_share=0.8,
                         max_length_ratio=4)
    assert edge.passed and edge.length_ratio is None


def _generative(tmp_path: Path) -> Path:
    """A free-form pool a tiny random model gets all wrong, with long answers: the check must stop it."""
    model_dir = save_tiny(tmp_path / "model")
    rows = [{"id": f"c{i}", "question": f"what is the capital of land {i}?", "answer": "sun", "split": "train"}
            for i in range(12)]
    (tmp_path / "capitals.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = {
        "name": "capitals", "model": model_dir, "precision": "fp32", "seed": 0,
        "pool": {"tasks": ["capitals.jsonl"], "split": "train"},
        "dev": {"tasks": []}, "domain_eval": {"tasks": ["capitals.jsonl"], "split": "train", "limit": 4},
        "general_eval": {"tasks": []},
        "mining": {"judge": "exact_match", "max_new_tokens": 8},
        "pairs": {"similar_negative": "other_gold"},
        "retrieval": {"strategy": "none"},
        "train": {"lr": 0.05, "epochs": 1, "batch_size": 4, "progress": False},
        "rounds": {"max_rounds": 1, "general_tolerance": 1.0},
    }
    path = tmp_path / "capitals.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_a_judge_that_fails_everything_stops_before_training_until_told_to_go_on(tmp_path: Path):
    config = _generative(tmp_path)
    root = tmp_path / "run"
    with pytest.raises(JudgeCheckError) as info:
        APTRun(load_run_config(config), root, progress=False).run()
    message = str(info.value)
    assert "\n" not in message and "12 of 12 pool items wrong (100%" in message
    assert "judge: exact_match" in message and "--yes (mining.accept_judge: true)" in message
    assert (root / "round-1" / "weakness.jsonl").exists() and not (root / "round-1" / "retrieved.jsonl").exists()
    checks = read_json(root / "manifest.json")["judge_checks"]
    assert checks["1"]["passed"] is False and checks["1"]["accepted_by_user"] is False
    # the same command stops again: the stop holds on resume
    with pytest.raises(JudgeCheckError):
        APTRun(load_run_config(config), root, progress=False).run()

    # going on is not a config change: the same run folder resumes, mining is not redone
    cfg = load_run_config(config, ["mining.accept_judge=true"])
    APTRun(cfg, root, progress=False).run()
    assert (root / "round-1" / "train" / "train_result.json").exists()
    checks = read_json(root / "manifest.json")["judge_checks"]
    assert checks["1"]["passed"] is False and checks["1"]["accepted_by_user"] is True


def test_cli_prints_the_judged_sample_then_one_error_line_and_the_report_shows_the_cases(tmp_path: Path):
    config = _generative(tmp_path)
    root = tmp_path / "cli"
    cmd = [sys.executable, "-m", "aptune.cli", "run", str(config), "--out", str(root)]
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    error = [line for line in proc.stderr.splitlines() if line.startswith("aptune: error:")]
    assert len(error) == 1 and "Traceback" not in proc.stderr and "judge looks wrong" in error[0]
    assert "judge check, round 1: 12 of 12 pool items judged wrong" in proc.stdout
    assert proc.stdout.count("question: what is the capital of land") == 5 and "verdict: wrong: exact match" in proc.stdout
    done = subprocess.run([*cmd, "--yes"], env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = (root / "report.md").read_text()
    assert "## What the judge marked wrong" in report and "| 1 | c" in report
    assert "Round 1: the judge check failed — it marked 12 of 12" in report and "the run went on" in report


def test_cli_eval_with_the_llm_judge_counts_what_it_could_not_score(tmp_path: Path):
    """`aptune eval --judge llm`: the model itself judges (no judge_model); a tiny random model
    writes no score, so every item is judged wrong and counted as unparsable, never scored."""
    model_dir = save_tiny(tmp_path / "model")
    rows = [{"id": f"q{i}", "question": f"what is the sun {i}?", "answer": "a star"} for i in range(4)]
    (tmp_path / "q.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "eval"
    proc = subprocess.run([sys.executable, "-m", "aptune.cli", "eval", "--model", model_dir, "--tasks",
                           str(tmp_path / "q.jsonl"), "--split", "source", "--judge", "llm", "--max-new-tokens", "4",
                           "--judge-threshold", "2", "--out", str(out)], env=ENV, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    task = read_json(out / "metrics.json")["tasks"]["q"]
    assert task["n"] == 4 and task["judge_unparsable"] == 4 and task["metrics"]["accuracy"]["value"] == 0.0
