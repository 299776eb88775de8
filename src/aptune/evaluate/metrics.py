"""Accuracy with bootstrap intervals, and the position statistics that expose a letter prior.

Small models answer "A" to almost everything in letter formats (../shared/FINDINGS.md), so an
accuracy means little without the score of the best constant-position guess beside it and the
histogram of predicted positions. Every multiple-choice result carries both.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

DEFAULT_RESAMPLES = 1000


@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided bootstrap confidence interval."""

    value: float
    low: float
    high: float
    level: float = 0.95

    def format(self, scale: float = 100.0, digits: int = 1, signed: bool = False) -> str:
        f = f"{'+' if signed else ''}.{digits}f"
        return f"{self.value * scale:{f}} [{self.low * scale:{f}}, {self.high * scale:{f}}]"


def bootstrap_mean(
    values: Sequence[float] | np.ndarray,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Mean of ``values`` with a percentile bootstrap interval over items (seeded)."""
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        return Interval(float("nan"), float("nan"), float("nan"), level)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, data.size, size=(resamples, data.size))
    means = data[idx].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return Interval(float(data.mean()), float(low), float(high), level)


def paired_bootstrap_delta(
    after: Sequence[float] | np.ndarray,
    before: Sequence[float] | np.ndarray,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Mean of (after - before) over the same items, resampling items jointly."""
    a = np.asarray(after, dtype=np.float64)
    b = np.asarray(before, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired bootstrap needs the same items: {a.shape} vs {b.shape}")
    return bootstrap_mean(a - b, resamples=resamples, level=level, seed=seed)


@dataclass(frozen=True)
class PositionStats:
    """Where the gold answers sit and where the model's predictions land."""

    gold_histogram: dict[int, int]
    predicted_histogram: dict[int, int]
    majority_position: int
    majority_baseline: float  # accuracy of always answering the most common gold position


def position_stats(golds: Sequence[int], predictions: Sequence[int]) -> PositionStats:
    gold_counts = Counter(golds)
    pred_counts = Counter(predictions)
    if not golds:
        return PositionStats({}, {}, 0, float("nan"))
    majority, count = max(sorted(gold_counts.items()), key=lambda kv: kv[1])
    return PositionStats(
        dict(sorted(gold_counts.items())),
        dict(sorted(pred_counts.items())),
        majority,
        count / len(golds),
    )


@dataclass
class TaskMetrics:
    """Everything reported for one task: the JSON written to metrics.json, one entry a task."""

    task: str
    domain: str
    n: int
    metrics: dict[str, Interval] = field(default_factory=dict)
    positions: PositionStats | None = None

    def to_dict(self) -> dict:
        out: dict = {"task": self.task, "domain": self.domain, "n": self.n}
        out["metrics"] = {k: asdict(v) for k, v in self.metrics.items()}
        if self.positions is not None:
            out["positions"] = asdict(self.positions)
        return out
