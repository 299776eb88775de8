"""Paired comparison of two evaluations of the same items (``aptune eval-diff``).

Two ``aptune eval`` folders — say the base model and a trained one, in any prompt format —
are matched item by item on (task, id). Per task and pooled: both accuracies, the paired
accuracy change and the paired change in the gold answer's log-likelihood (nats per item),
each with a 95% percentile bootstrap over items. Items only one side evaluated are left out
and counted, so a mismatch of settings is visible instead of silently skewing the numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aptune.evaluate.metrics import Interval, bootstrap_mean, paired_bootstrap_delta
from aptune.io import read_jsonl

POOLED = "all tasks"


@dataclass(frozen=True)
class PairedTask:
    task: str
    n: int
    before: Interval
    after: Interval
    accuracy_change: Interval
    loglik_change: Interval | None  # None when the items carry no choice log-probs (generative)


def _rows(folder: Path) -> dict[tuple[str, str], dict[str, Any]]:
    path = folder / "predictions.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path}: not an `aptune eval` output folder (no predictions.jsonl)")
    return {(str(r["task"]), str(r["id"])): r for r in read_jsonl(path)}


def gold_loglik(row: dict[str, Any]) -> float | None:
    """log p(gold answer) of one predictions.jsonl row; None for items without choice log-probs."""
    logprobs, gold = row.get("logprobs"), row.get("gold")
    return float(logprobs[gold]) if logprobs and gold is not None else None


def _paired(task: str, keys: list[tuple[str, str]], a: dict, b: dict, seed: int) -> PairedTask:
    before = [float(b[k]["correct"]) for k in keys]
    after = [float(a[k]["correct"]) for k in keys]
    lls = [(gold_loglik(a[k]), gold_loglik(b[k])) for k in keys]
    ll_change = None
    if all(x is not None and y is not None for x, y in lls):
        ll_change = bootstrap_mean([x - y for x, y in lls], seed=seed)  # type: ignore[operator]
    return PairedTask(task, len(keys), bootstrap_mean(before, seed=seed), bootstrap_mean(after, seed=seed),
                      paired_bootstrap_delta(after, before, seed=seed), ll_change)


def compare_evals(before: str | Path, after: str | Path, seed: int = 0) -> tuple[list[PairedTask], int]:
    """Per-task and pooled paired changes from ``before`` to ``after``; and how many items only
    one of the two folders has."""
    b, a = _rows(Path(before)), _rows(Path(after))
    shared = sorted(a.keys() & b.keys())
    if not shared:
        raise ValueError(f"{before} and {after} share no (task, id) items: not evaluations of the same items")
    tasks = sorted({t for t, _ in shared})
    out = [_paired(t, [k for k in shared if k[0] == t], a, b, seed) for t in tasks]
    if len(tasks) > 1:
        out.append(_paired(POOLED, shared, a, b, seed))
    return out, len(a.keys() ^ b.keys())
