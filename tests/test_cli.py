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
