"""Accuracy with bootstrap intervals, and the position statistics that expose a letter prior.

Small models answer "A" to almost everything in letter formats (the letter-format position bias),
so an accuracy means little without the score of the best constant-position guess beside it and
the histogram of predicted positions (``format_positions``). Every multiple-choice result
carries both.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

DEFAULT_RESAMPLES = 1000


@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided bootstrap confidence interval (fractions, or nats), and
    the number of items behind it.

    The one interval type of aptune: per-task metrics, pooled accuracies, paired changes and the
    reports all carry it. On disk it has three shapes, all read by ``from_dict``, each written
    by one method so that files already written keep their keys:

    - ``to_dict``: ``{"value", "low", "high", "n"}`` (compare-results.json);
    - ``to_metric_dict``: ``{"value", "low", "high", "level"}`` (a task's metrics in metrics.json);
    - ``to_summary_dict``: ``{"accuracy", "low", "high", "n"}`` (a view's accuracy in the
      ``summary`` of a run round's metrics.json).
    """

    value: float
    low: float
    high: float
    level: float = 0.95
    n: int | None = None  # items behind the estimate; 0 = no items (nothing to show); None = not recorded

    @classmethod
    def empty(cls, level: float = 0.95) -> Interval:
        """No items: NaN estimate, ``n`` = 0 (formats as "–")."""
        return cls(float("nan"), float("nan"), float("nan"), level, 0)

    @property
    def missing(self) -> bool:
        """True when there is nothing to show: no items, or a NaN estimate."""
        return self.n == 0 or math.isnan(self.value)

    def contains(self, x: float) -> bool:
        return self.low <= x <= self.high

    def format(self, scale: float = 100.0, digits: int = 1, signed: bool = False) -> str:
        """``value [low, high]`` times ``scale`` (default: percentage points, one decimal)."""
        f = f"{'+' if signed else ''}.{digits}f"
        return f"{self.value * scale:{f}} [{self.low * scale:{f}}, {self.high * scale:{f}}]"

    def pct(self, signed: bool = False) -> str:
        """In percent with one decimal (``signed`` for a change), or "–" when ``missing``."""
        return "–" if self.missing else self.format(signed=signed)

    def nats(self) -> str:
        """A log-likelihood change, in nats, with its interval; "–" when ``missing``."""
        return "–" if self.missing else self.format(scale=1.0, digits=2, signed=True)

    def to_dict(self) -> dict[str, float]:
        """``{"value", "low", "high", "n"}``: a pooled figure (compare-results.json)."""
        return {"value": self.value, "low": self.low, "high": self.high, "n": self.n or 0}

    def to_metric_dict(self) -> dict[str, float]:
        """``{"value", "low", "high", "level"}``: one task's metric (metrics.json ``tasks``)."""
        return {"value": self.value, "low": self.low, "high": self.high, "level": self.level}

    def to_summary_dict(self) -> dict[str, float]:
        """``{"accuracy", "low", "high", "n"}``: a view's accuracy (metrics.json ``summary``)."""
        return {"accuracy": self.value, "low": self.low, "high": self.high, "n": self.n or 0}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Interval:
        """Any of the three shapes above (the estimate under ``value`` or ``accuracy``)."""
        value = data["value"] if "value" in data else data["accuracy"]
        n = data.get("n")
        return cls(float(value), float(data["low"]), float(data["high"]), float(data.get("level", 0.95)),
                   None if n is None else int(n))


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
        return Interval.empty(level)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, data.size, size=(resamples, data.size))
    means = data[idx].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return Interval(float(data.mean()), float(low), float(high), level, int(data.size))


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


def position_letter(position: int) -> str:
    """Option index → its letter (0 → "A")."""
    return chr(ord("A") + position)


def format_positions(hist: Mapping[int, int], empty: str = "–") -> str:
    """A predicted-position histogram as ``A:62% B:20% C:10% D:8%`` (positions in order, shares
    of all predictions rounded to whole percent); ``empty`` when it counts nothing."""
    total = sum(hist.values())
    if not total:
        return empty
    return " ".join(f"{position_letter(k)}:{100 * v / total:.0f}%" for k, v in sorted(hist.items()))


@dataclass
class TaskMetrics:
    """Everything reported for one task: the JSON written to metrics.json, one entry a task."""

    task: str
    domain: str
    n: int
    metrics: dict[str, Interval] = field(default_factory=dict)
    positions: PositionStats | None = None
    judge_unparsable: int = 0  # llm judge outputs without a score (each judged wrong, counted here)
    skipped_too_long: list[str] = field(default_factory=list)  # ids left out by prompt.too_long: skip

    def to_dict(self) -> dict:
        out: dict = {"task": self.task, "domain": self.domain, "n": self.n}
        out["metrics"] = {k: v.to_metric_dict() for k, v in self.metrics.items()}
        if self.positions is not None:
            out["positions"] = asdict(self.positions)
        if self.judge_unparsable:
            out["judge_unparsable"] = self.judge_unparsable
        if self.skipped_too_long:
            out["skipped_too_long"] = list(self.skipped_too_long)
        return out


@dataclass(frozen=True)
class Interference:
    """Items that changed sides between two evaluations of the same items: ``lost`` = right
    before and wrong after (forgetting, item by item), ``gained`` = the reverse; each a share of
    the ``n`` shared items with a 95% bootstrap interval over items. An average accuracy that
    rises can still hide lost items; these count them."""

    n: int
    lost: Interval
    gained: Interval
    lost_count: int
    gained_count: int


def interference(before: Sequence[bool], after: Sequence[bool], *, seed: int = 0) -> Interference:
    """Lost and gained items between ``before`` and ``after`` (aligned, same items)."""
    if len(before) != len(after):
        raise ValueError(f"{len(before)} items before but {len(after)} after")
    b = np.asarray(before, dtype=bool)
    a = np.asarray(after, dtype=bool)
    lost, gained = (b & ~a), (~b & a)
    return Interference(len(b), bootstrap_mean(lost.astype(float), seed=seed),
                        bootstrap_mean(gained.astype(float), seed=seed), int(lost.sum()), int(gained.sum()))


def hierarchical_bootstrap_mean(groups: Sequence[Sequence[float]], *, resamples: int = DEFAULT_RESAMPLES,
                                level: float = 0.95, seed: int = 0) -> Interval:
    """Mean over groups (training seeds) of each group's mean over its items, with a two-stage
    percentile bootstrap: each resample draws the seeds with replacement, then, for every seed
    drawn, that seed's items with replacement (independently for a seed drawn twice). So the
    interval carries the run-to-run variation of training as well as the item sampling; with one
    seed it is the item bootstrap. ``n`` is the number of items over all groups."""
    arrays = [np.asarray(g, dtype=np.float64) for g in groups if len(g)]
    if not arrays:
        return Interval.empty(level)
    rng = np.random.default_rng(seed)
    k = len(arrays)
    picks = rng.integers(0, k, size=(resamples, k))  # the seeds of each resample
    # item means of every seed for every (resample, pick slot): independent draws per slot
    item_means = np.empty((k, resamples, k))
    for g, data in enumerate(arrays):
        for start in range(0, resamples, 250):  # in blocks: a block's draws are 250 x k x items
            stop = min(start + 250, resamples)
            idx = rng.integers(0, data.size, size=(stop - start, k, data.size))
            item_means[g, start:stop] = data[idx].mean(axis=2)
    slots = np.arange(k)
    stats = item_means[picks, np.arange(resamples)[:, None], slots[None, :]].mean(axis=1)
    alpha = (1 - level) / 2
    low, high = np.quantile(stats, [alpha, 1 - alpha])
    point = float(np.mean([a.mean() for a in arrays]))
    return Interval(point, float(low), float(high), level, sum(a.size for a in arrays))
