"""The run report, drawn from a run directory written by hand (no model): the verdict sentence,
the legends, the runtime line, the paired-change plot, and run folders old and new."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from aptune.evaluate.metrics import Interval
from aptune.io import write_json_atomic
from aptune.report.apt_report import describe_change, verdict, write_report, collect

CONFIG = {"name": "toy", "model": "tiny", "seed": 0,
          "pool": {"tasks": ["sciq"], "split": "train"}, "domain_eval": {"tasks": ["sciq"], "split": "test"},
          "general_eval": {"tasks": ["piqa"], "split": "test"}}
N = 200


def _round(root: Path, r: int, domain_right: int, general_right: int, decision: dict[str, Any] | None) -> None:
    """Round r's evaluation: the first ``*_right`` of N items per view answered correctly."""
    ev = root / f"round-{r}" / "eval"
    ev.mkdir(parents=True)
    rows = [{"task": f"{view}/{task}", "id": str(i), "correct": i < right}
            for view, task, right in (("domain", "sciq", domain_right), ("general", "piqa", general_right))
            for i in range(N)]
    (ev / "predictions.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    summary = {view: Interval(right / N, right / N - 0.05, right / N + 0.05, n=N).to_summary_dict()
               for view, right in (("domain", domain_right), ("general", general_right))}
    positions = {"gold_histogram": {"0": 100, "1": 100}, "predicted_histogram": {"0": 150, "1": 50}}
    write_json_atomic(ev / "metrics.json", {"summary": summary, "tasks": {"domain/sciq": {"positions": positions}}})
    if decision is not None:
        write_json_atomic(root / f"round-{r}" / "decision.json", decision)


def _run(tmp_path: Path, stages: dict[str, Any], runtime: dict[str, str] | None) -> Path:
    root = tmp_path / "run"
    _round(root, 0, 100, 120, None)
    _round(root, 1, 130, 118, {"accepted": True, "reason": "within the general-capability tolerance"})
    _round(root, 2, 140, 60, {"accepted": False, "reason": "general accuracy fell"})
    manifest: dict[str, Any] = {"config": CONFIG, "stages": stages}
    if runtime is not None:
        manifest["runtime"] = runtime
    write_json_atomic(root / "manifest.json", manifest)
    return root


APT_STAGES = {
    "round-0/eval": {"seconds": 10.0},
    "round-1/mine": {"pool": 300, "weakness": 120, "sft_pool_tokens": 27000, "seconds": 5.0},
    "round-1/retrieve": {"retrieved": 120, "seconds": 1.0},
    "round-1/pairs": {"pairs": 240, "weakness_pairs": 120, "similar_pairs": 120, "seconds": 1.0},
    "round-1/train": {"examples": 240, "tokens": 40000, "mean_loss": 0.6, "mean_margin": 0.12, "seconds": 40.0,
                      "reference_s": 12.0, "train_s": 27.5},
    "round-1/eval": {"seconds": 10.0},
    "round-2/train": {"examples": 200, "tokens": 30000, "mean_loss": 0.5, "mean_margin": 0.2, "seconds": 30.0},
}
RUNTIME = {"device": "cuda:0", "device_name": "NVIDIA H200", "precision": "bfloat16", "machine": "x86_64, 16 threads"}


def test_the_verdict_names_each_view_as_gained_lost_or_within_noise():
    assert describe_change("domain", Interval(0.09, 0.035, 0.145)) == "domain gained +9.0 [+3.5, +14.5] points"
    assert describe_change("general", Interval(-0.008, -0.031, 0.015)) == "general within noise (-0.8 [-3.1, +1.5])"
    assert describe_change("general", Interval(-0.05, -0.08, -0.02)) == "general lost -5.0 [-8.0, -2.0] points"


def test_report_has_verdict_legends_runtime_and_the_paired_change_plot(tmp_path: Path):
    root = _run(tmp_path, APT_STAGES, RUNTIME)
    write_report(root)
    md = (root / "report.md").read_text()
    # round 2 (rolled back) is not the final model: round 1 is, +15 domain points, general -1 within noise
    sentence = verdict(collect(root))
    assert sentence.startswith("Verdict (round 1, the last accepted, against round 0; paired 95% CI): domain gained +15.0 [")
    assert "; general within noise (-1.0 [" in sentence and f"**{sentence}**" in md
    assert "Device: cuda:0 (NVIDIA H200); precision: bfloat16; machine: x86_64, 16 threads; wall time: 97 s" in md
    for column in ("mean margin", "domain majority-pos %", "domain predicted positions", "train set",
                   "reference pass s", "training loop s"):
        assert f"- **{column}" in md or f"/ {column}" in md or f"**{column}**" in md, column
    assert "| 1 | 120/300 | 120 retrieved | 240 pairs (120+120) | 240 | 40000 | 0.600 | 0.120 | 40.0 | 12.0 | 27.5 |" in md
    assert "| 2 | – | – | – | 200 | 30000 | 0.500 | 0.200 | 30.0 | – | – |" in md
    assert "| 0 | 50.0 [45.0, 55.0] | – | 60.0 [55.0, 65.0] | – | 50.0 | A:75% B:25% | start |" in md
    assert "one SFT epoch on the full pool is 300 examples" in md
    assert (root / "plots" / "accuracy.png").stat().st_size > 1000
    page = (root / "report.html").read_text()
    assert "<table>" in page and "Verdict (round 1" in page and "NVIDIA H200" in page


def test_an_sft_run_old_and_new_and_a_run_without_runtime_read(tmp_path: Path):
    old = {"round-1/pairs": {"pairs": 150, "weakness_pairs": 100, "similar_pairs": 50, "domain_items": 100,
                             "replay_items": 50, "kind": "sft items"},
           "round-1/train": {"examples": 150, "tokens": 9000, "mean_loss": 1.2, "mean_margin": None}}
    root = _run(tmp_path, old, None)
    write_report(root)
    md = (root / "report.md").read_text()
    assert "| 1 | – | – | 150 items (100+50) | 150 | 9000 | 1.200 | – | – |" in md
    assert "Device: not recorded; precision: not recorded; machine: not recorded; wall time: not recorded." in md
    assert "reference pass s" not in md
    new = {"round-1/sft_items": {"items": 150, "domain_items": 100, "replay_items": 50, "seconds": 1.0},
           "round-1/select": {"selected": 80, "seconds": 2.0}, "round-1/train": {"examples": 150, "tokens": 9000}}
    root = _run(tmp_path / "new", new, RUNTIME)
    write_report(root)
    assert "| 1 | – | 80 selected | 150 items (100+50) | 150 | 9000 | – | – | – |" in (root / "report.md").read_text()
    assert "wall time: ≥ 3 s, the sum of the run's stages (1 stages untimed)" in (root / "report.md").read_text()


def test_no_accepted_round_says_the_final_model_is_the_starting_one(tmp_path: Path):
    root = _run(tmp_path, {}, None)
    (root / "round-1" / "decision.json").write_text(json.dumps({"accepted": False, "reason": "gate"}))
    assert verdict(collect(root)) == ("Verdict: no round was accepted (rolled back: 1, 2); the final model is the "
                                      "starting model (round 0).")


@pytest.mark.parametrize("shape", ["to_dict", "to_metric_dict", "to_summary_dict"])
def test_interval_reads_back_every_shape_it_writes(shape: str):
    iv = Interval(0.5, 0.4, 0.6, 0.95, 10)
    back = Interval.from_dict(getattr(iv, shape)())
    assert (back.value, back.low, back.high) == (0.5, 0.4, 0.6)


def test_the_report_counts_items_lost_and_gained_even_when_accuracy_rises(tmp_path: Path):
    """Round 1 gains 30 points of domain accuracy on average, yet loses 20 items round 0 had right."""
    root = _run(tmp_path, APT_STAGES, RUNTIME)
    rows = [{"task": f"{view}/{task}", "id": str(i), "correct": (20 <= i < 150) if view == "domain" else i < 118}
            for view, task in (("domain", "sciq"), ("general", "piqa")) for i in range(N)]
    (root / "round-1" / "eval" / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    from aptune.report.apt_report import interference_rows

    table = {(r[0], r[1]): r for r in interference_rows(collect(root))}
    assert table[("1", "domain")][2] == "200" and table[("1", "domain")][3].startswith("20 (10.0 [")
    assert table[("1", "domain")][4].startswith("50 (25.0 [")
    assert table[("1", "general")][3].startswith("2 (1.0 [") and table[("1", "general")][4].startswith("0 (0.0 [")
    write_report(root)
    md = (root / "report.md").read_text()
    assert "## Items lost and gained against round 0" in md and "| 1 | domain | 200 | 20 (10.0 [" in md


def test_interference_counts_are_exact_and_intervals_hold_them():
    from aptune.evaluate.metrics import interference

    change = interference([True, True, False, False, True], [False, True, True, False, True])
    assert (change.n, change.lost_count, change.gained_count) == (5, 1, 1)
    assert change.lost.value == pytest.approx(0.2) and change.lost.low <= 0.2 <= change.lost.high
    with pytest.raises(ValueError, match="3 items before but 2 after"):
        interference([True] * 3, [True] * 2)
