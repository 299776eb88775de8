"""lm-evaluation-harness tasks as the general yardstick, offline: a task YAML over a local JSON
file, run in-process on the model aptune holds; its metric beside ours, in the run, the gate and
the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from aptune.config import load_run_config
from aptune.data import load_task
from aptune.evaluate.lm_eval_bridge import LmEvalConfig, run_lm_eval
from aptune.evaluate.runner import EvalSettings, evaluate
from aptune.io import read_json
from aptune.prompts import PromptFormat
from test_apt_loop import run_config  # noqa: F401  (the fixture)

N = 12


def local_task(folder: Path, name: str = "arc_easy_local") -> Path:
    """A few bundled ARC-Easy items exported to a JSON file, and an lm-eval task YAML over it
    (lm-eval's arc_easy prompt), in ``folder``."""
    items = load_task("arc_easy", split="source", limit=N)
    data = folder / f"{name}.json"
    data.write_text("\n".join(json.dumps({"question": ex.question, "choices": list(ex.choices), "gold": ex.gold})
                              for ex in items))
    (folder / f"{name}.yaml").write_text(yaml.safe_dump({
        "task": name, "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(data)}},
        "test_split": "test", "output_type": "multiple_choice", "doc_to_text": "Question: {{question}}\nAnswer:",
        "doc_to_choice": "{{choices}}", "doc_to_target": "{{gold}}",
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}]}))
    return folder


def test_a_local_lm_eval_task_runs_in_process_and_agrees_with_our_scorer(model, tokenizer, tmp_path: Path):
    folder = local_task(tmp_path)
    results = run_lm_eval(model, tokenizer, LmEvalConfig(tasks=["arc_easy_local"], include_path=str(folder)),
                          torch.float32)
    task = results["tasks"]["arc_easy_local"]
    assert task["primary"] == "acc" and task["n"] == N and "acc" in task["stderr"]
    ours = evaluate(model, tokenizer, {"arc": load_task("arc_easy", split="source", limit=N)},
                    EvalSettings(prompt=PromptFormat(template="plain")), torch.float32, progress=False)
    assert task["metrics"]["acc"] == pytest.approx(ours.metrics["arc"].metrics["acc"].value)
    assert results["mean"] == task["metrics"]["acc"]


def test_an_unknown_task_is_one_line(model, tokenizer, tmp_path: Path):
    with pytest.raises(ValueError, match=r"lm_eval: unknown task 'no_such_task_x' \(not in lm-eval's registry or in"):
        run_lm_eval(model, tokenizer, LmEvalConfig(tasks=["no_such_task_x"], include_path=str(tmp_path)),
                    torch.float32)


def test_a_run_reports_lm_eval_and_the_gate_reads_it(run_config: Path, tmp_path: Path):  # noqa: F811
    from aptune.methods.apt import APTRun
    from aptune.report.apt_report import write_report

    (tmp_path / "tasks").mkdir()
    folder = local_task(tmp_path / "tasks")
    data = yaml.safe_load(run_config.read_text())
    data["lm_eval"] = {"tasks": ["arc_easy_local"], "include_path": str(folder)}
    data["rounds"]["max_rounds"] = 1
    run_config.write_text(yaml.safe_dump(data))
    run = APTRun(load_run_config(run_config), tmp_path / "run", progress=False)
    run.run()
    for r in (0, 1):
        metrics = read_json(tmp_path / "run" / f"round-{r}" / "eval" / "metrics.json")
        assert metrics["lm_eval"]["tasks"]["arc_easy_local"]["n"] == N
        assert metrics["summary"]["lm_eval"]["accuracy"] == metrics["lm_eval"]["mean"]
    report = write_report(tmp_path / "run").read_text()
    assert "lm-evaluation-harness" in report and "arc_easy_local" in report
    # the gate: general dev holds, the lm-eval mean falls 10 points -> rolled back
    run.cfg.rounds.general_tolerance = 0.02
    run.dir.write_output(0, "eval", {"summary": {"general_dev": {"accuracy": 0.5}, "lm_eval": {"accuracy": 0.6}}})
    run.dir.write_output(1, "eval", {"summary": {"general_dev": {"accuracy": 0.5}, "lm_eval": {"accuracy": 0.5}}})
    decision = run.stage_decide(1)
    assert decision["accepted"] is False and "mean lm-eval metric (arc_easy_local) fell 10.0 points" in decision["reason"]


def test_aptune_eval_runs_lm_eval_tasks_beside_its_own(tmp_path: Path):
    import os
    import subprocess
    import sys

    from tiny import save_tiny

    model = save_tiny(tmp_path / "model")
    folder = local_task(tmp_path)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "aptune.cli", "eval", "--model", model, "--lm-eval", "arc_easy_local",
                           "--lm-eval-include", str(folder), "--precision", "fp32", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "lm-evaluation-harness" in proc.stdout and "arc_easy_local" in proc.stdout
    assert read_json(out / "metrics.json")["lm_eval"]["tasks"]["arc_easy_local"]["n"] == N
