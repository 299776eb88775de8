"""One finished (method, seed) run of ``aptune compare``, read back from its run directory.

The report never holds a model: everything it shows comes from the files a run wrote —
round 0's and the final round's ``eval/predictions.jsonl`` (each item's correctness and gold
log-likelihood), ``eval/metrics.json`` (gold and predicted position histograms),
``train/train_result.json`` (cost), ``train/train_metrics.jsonl`` (whether the loss ended above
its start), ``manifest.json`` (stage records) and ``compare_run.json``
(the marker that the run finished).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aptune.compare.compare_dir import CompareDir
from aptune.evaluate.paired import gold_loglik
from aptune.io import read_json, read_jsonl
from aptune.run.run_dir import RunDir
from aptune.train.config import loss_rose

#: The two views every compare run evaluates.
VIEWS = ("domain", "general")


@dataclass
class SeedRun:
    """One (method, seed) run directory, reduced to what the report needs."""

    method: str
    seed: int
    root: Path
    final_round: int
    # view -> (task, id) -> correct, for round 0 and for the final model
    before: dict[str, dict[tuple[str, str], bool]] = field(default_factory=dict)
    after: dict[str, dict[tuple[str, str], bool]] = field(default_factory=dict)
    gold_hist: dict[str, Counter] = field(default_factory=dict)  # "view" and "view/task" -> gold positions
    pred_hist: dict[str, Counter] = field(default_factory=dict)  # of the final model
    # view -> (task, id) -> log p(gold answer), multiple-choice items, round 0 and final model
    loglik_before: dict[str, dict[tuple[str, str], float]] = field(default_factory=dict)
    loglik_after: dict[str, dict[tuple[str, str], float]] = field(default_factory=dict)
    train: dict[str, float] = field(default_factory=dict)
    train_set: int = 0  # pairs or SFT items, summed over rounds (``train_set_size``)
    rounds_trained: int = 0
    loss_rose_rounds: list[int] = field(default_factory=list)  # rounds whose training loss ended above its start
    wall_s: float | None = None
    wall_partial: bool = False  # resumed, and the earlier invocations were not timed: a lower bound
    finished: bool = False
    provenance: dict[str, Any] = field(default_factory=dict)


Views = dict[str, dict[tuple[str, str], Any]]  # view -> (view-prefixed task, item id) -> value


def _read_views(pred_path: Path) -> tuple[Views, Views]:
    """One pass over a round's predictions: per view, each item's correctness, and the summed
    log-prob of its gold choice (multiple-choice items only)."""
    correct: Views = defaultdict(dict)
    loglik: Views = defaultdict(dict)
    for row in read_jsonl(pred_path):
        view, key = row["task"].split("/", 1)[0], (row["task"], str(row["id"]))
        correct[view][key] = bool(row["correct"])
        if (value := gold_loglik(row)) is not None:
            loglik[view][key] = value
    return dict(correct), dict(loglik)


def _histograms(metrics: dict[str, Any], key: str) -> dict[str, Counter]:
    out: dict[str, Counter] = {}
    for task, tm in metrics.get("tasks", {}).items():
        pos = tm.get("positions")
        if not pos:
            continue
        hist = Counter({int(k): v for k, v in pos[key].items()})
        out[task] = hist
        out.setdefault(task.split("/", 1)[0], Counter()).update(hist)
    return out


def final_round(run_dir: RunDir) -> int:
    """The last round that was accepted and evaluated; 0 when there is none."""
    best = 0
    for r in run_dir.rounds_on_disk():
        if r and run_dir.is_done(r, "decide") and run_dir.is_done(r, "eval") and run_dir.read_output(r, "decide").get("accepted"):
            best = max(best, r)
    return best


def load_seed_run(method: str, seed: int, root: Path) -> SeedRun | None:
    """None until the run has finished (``compare_run.json``): a half-done run is no result."""
    run_dir = RunDir(root)
    marker = CompareDir.finished_marker(run_dir)
    if not marker.exists() or not run_dir.is_done(0, "eval"):
        return None
    r = final_round(run_dir)
    run = SeedRun(method, seed, root, r)
    run.before, run.loglik_before = _read_views(run_dir.predictions(0))
    run.after, run.loglik_after = _read_views(run_dir.predictions(r))
    run.gold_hist = _histograms(run_dir.read_output(0, "eval"), "gold_histogram")
    run.pred_hist = _histograms(run_dir.read_output(r, "eval"), "predicted_histogram")
    totals: Counter = Counter()
    peak = 0.0
    for k in run_dir.rounds_on_disk():
        if not run_dir.is_done(k, "train"):
            continue
        tr = read_json(run_dir.stage_output(k, "train"))
        # "train_s" here is each training stage's whole wall time (reference pass included), as
        # committed compare results record it; TrainResult.train_s is the optimisation loop alone
        totals.update({"steps": tr["steps"], "examples": tr["examples"], "tokens": tr["tokens"], "train_s": tr["wall_s"],
                       "reference_s": tr.get("reference_s", 0.0)})
        # the largest training call's peak (sampled during the call; older results: the process's)
        peak = max(peak, tr.get("peak_rss_mb") or 0.0)
        run.rounds_trained += 1
        log_path = run_dir.train_metrics(k)
        if log_path.exists() and loss_rose([row["loss"] for row in read_jsonl(log_path) if "loss" in row]):
            run.loss_rose_rounds.append(k)
    run.train = {**totals, **({"peak_rss_mb": peak} if peak else {})}
    manifest = run_dir.manifest() if run_dir.manifest_path.exists() else {}
    run.provenance = manifest.get("provenance", {})
    run.train_set = sum(train_set_size(k.rsplit("/", 1)[-1], v) for k, v in manifest.get("stages", {}).items())
    if marker.exists():
        run.finished = True
        run.wall_s, run.wall_partial = run_wall(read_json(marker), manifest.get("stages", {}))
    return run


def train_set_size(stage: str, record: dict[str, Any]) -> int:
    """The training-set size a stage record counts: preference pairs (``pairs``) or SFT items
    (``sft_items``: ``items``); older SFT runs recorded their items as a ``pairs`` stage whose
    ``pairs`` count is the items. Any other stage counts 0."""
    if stage == "sft_items":
        return int(record.get("items", 0))
    if stage == "pairs":
        return int(record.get("pairs", record.get("items", 0)))
    return 0


def run_wall(marker: dict[str, Any], stages: dict[str, dict[str, Any]]) -> tuple[float, bool]:
    """A finished run's wall time, and whether that figure misses part of the run.

    Stages record their own ``seconds``, so a run resumed over several invocations still sums to
    its whole cost. Runs from before stages were timed have only the last invocation's wall time
    (``compare_run.json``); when some stage finished before that invocation began, the run was
    resumed and the figure is a lower bound."""
    if stages and all("seconds" in st for st in stages.values()):
        return float(sum(st["seconds"] for st in stages.values())), False
    wall = float(marker["wall_s"])
    try:
        began = dt.datetime.fromisoformat(marker["finished"]) - dt.timedelta(seconds=wall + 1)
        earlier = [dt.datetime.fromisoformat(st["finished"]) for st in stages.values()
                   if "copied_from" not in st and "finished" in st]
    except (KeyError, ValueError):
        return wall, False
    return wall, any(t < began for t in earlier)
