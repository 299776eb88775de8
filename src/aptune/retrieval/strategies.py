"""Selection strategies: which pool rows to add as "similar cases" for a set of weakness cases.

Each strategy takes the pool's index (unit-length embeddings), the rows of the weakness cases
and a budget, and returns at most ``budget`` picks. All share three rules: the weakness cases
are never picked, no row is picked twice, and the result depends only on the inputs and the
seed. A pick records the weakness case it is closest to (``source``), so pair building and
reports can say which mistake pulled it in.

- ``knn``: every case in turn takes its nearest not-yet-taken neighbour (round-robin), so each
  mistake contributes about the same number of cases, however clustered the mistakes are.
- ``centroid``: rank the pool by cosine to the mean weakness embedding (APT's code).
- ``kmeans``: cluster the weakness cases (k = min(10, distinct cases)); each cluster gets a
  quota proportional to its size (largest-remainder rounding, summing to the budget) filled by
  cosine to its centroid, clusters taking turns so a shared neighbour goes to one of them.
- ``tag`` (``by_tag``; the released APT code's default): every pool row carries tags
  (``tags.py``); each tag among the weakness cases gets a quota proportional to how many
  weakness cases carry it, filled with pool rows *carrying that tag*, ranked by cosine to the
  mean of that tag's weakness cases; tags take turns as the clusters do.

A pick also names its ``group`` (the cluster or tag that chose it), for the round's retrieval
report.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from aptune.retrieval.encoder import normalize_rows
from aptune.retrieval.index import VectorIndex

log = logging.getLogger(__name__)

MAX_CLUSTERS = 10


@dataclass(frozen=True)
class Pick:
    """A selected pool row, its ranking score, and the weakness-case row it came from."""

    row: int
    score: float
    source: int
    group: str | None = None  # kmeans: "cluster N"; tag: the tag; knn/centroid: None


Strategy = Callable[[VectorIndex, Sequence[int], int, int], list[Pick]]


def budget_for(n_cases: int, s: float) -> int:
    """How many similar cases to retrieve: s × number of weakness cases, rounded half up."""
    if not math.isfinite(s) or s < 0:
        raise ValueError(f"similar-case ratio s must be a finite number >= 0, not {s!r}")
    return int(math.floor(s * n_cases + 0.5))


def _nearest_cases(index: VectorIndex, rows: Sequence[int], case_rows: Sequence[int]) -> list[int]:
    """For each of ``rows``, the weakness-case row most similar to it (first one on ties)."""
    if not rows:
        return []
    sims = index.embeddings[list(rows)] @ index.embeddings[list(case_rows)].T  # one BLAS call
    return [int(case_rows[j]) for j in np.argmax(sims, axis=1)]


def _round_robin(
    streams: list[Iterator[tuple[int, float]]], quotas: list[int], total: int, taken: set[int]
) -> list[tuple[int, float, int]]:
    """Streams take turns, each taking its next untaken row, until ``total`` picks are made.

    Returns (row, score, stream number) in pick order. A stream stops at its quota or when it
    has seen the whole pool. ``taken`` is the shared exclusion set the streams read; it grows
    as rows are picked, which is the deduplication.
    """
    picks: list[tuple[int, float, int]] = []
    remaining = list(quotas)
    active = [i for i, q in enumerate(remaining) if q > 0]
    while active and len(picks) < total:
        still = []
        for i in active:
            if len(picks) == total:
                break
            choice = next(streams[i], None)
            if choice is None:
                continue  # this stream has seen the whole pool
            row, score = choice
            taken.add(row)
            picks.append((row, score, i))
            remaining[i] -= 1
            if remaining[i] > 0:
                still.append(i)
        active = still
    return picks


def knn(index: VectorIndex, case_rows: Sequence[int], budget: int, seed: int = 0) -> list[Pick]:
    """Per-case nearest neighbours, round-robin over the cases in the order given.

    With a budget below the number of cases (s < 1) not every case can contribute; the turn
    order is then a seeded shuffle, so the cases served are a random subset rather than the
    first ones in pool order.
    """
    if budget <= 0 or not case_rows:
        return []
    if budget < len(case_rows):
        order = np.random.default_rng(seed).permutation(len(case_rows))
        case_rows = [case_rows[i] for i in order]
    taken = set(case_rows)
    per_case = -(-budget // len(case_rows))  # ceil: what each case takes on average
    streams = index.ranked_many(index.embeddings[list(case_rows)], taken, depth=4 * per_case + 16)
    # No per-case quota: cases take turns until the budget is spent or the pool runs out.
    quotas = [budget] * len(case_rows)
    picks = _round_robin(streams, quotas, budget, taken)
    return [Pick(row, score, int(case_rows[i])) for row, score, i in picks]


def centroid(index: VectorIndex, case_rows: Sequence[int], budget: int, seed: int = 0) -> list[Pick]:
    """Top-``budget`` rows by cosine to the normalised mean of the weakness embeddings."""
    del seed
    if budget <= 0 or not case_rows:
        return []
    mean = index.embeddings[list(case_rows)].mean(axis=0, keepdims=True)
    if not np.any(mean):
        log.warning("weakness embeddings average to zero; centroid ranking is arbitrary")
    query = normalize_rows(mean)[0]
    taken = set(case_rows)
    picks = _round_robin([index.ranked(query, taken)], [budget], budget, taken)
    sources = _nearest_cases(index, [row for row, _, _ in picks], case_rows)
    return [Pick(row, score, source) for (row, score, _), source in zip(picks, sources)]


def _cluster(vectors: np.ndarray, seed: int) -> np.ndarray:
    """K-means labels for ``vectors`` with k = min(10, distinct vectors); one cluster if k < 2."""
    distinct = len(np.unique(vectors, axis=0))
    k = min(MAX_CLUSTERS, distinct)
    if k < 2:
        return np.zeros(len(vectors), dtype=np.int64)
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(vectors)


def apportion(sizes: Sequence[int], total: int) -> list[int]:
    """Split ``total`` in proportion to ``sizes`` (largest remainder; ties to the earlier entry)."""
    weight = sum(sizes)
    if weight == 0 or total <= 0:
        return [0] * len(sizes)
    exact = [total * size / weight for size in sizes]
    quotas = [math.floor(x) for x in exact]
    order = sorted(range(len(sizes)), key=lambda i: (-(exact[i] - quotas[i]), i))
    for i in order[: total - sum(quotas)]:
        quotas[i] += 1
    return quotas


def kmeans(index: VectorIndex, case_rows: Sequence[int], budget: int, seed: int = 0) -> list[Pick]:
    """Per-cluster quotas (∝ cluster size) filled by cosine to each cluster's centroid."""
    if budget <= 0 or not case_rows:
        return []
    rows = np.asarray(case_rows, dtype=np.int64)
    vectors = index.embeddings[rows]
    labels = _cluster(vectors, seed)
    # Canonical cluster order (largest first, then earliest member) so label numbering from
    # the clustering library never changes the result.
    members = [np.flatnonzero(labels == label) for label in np.unique(labels)]
    members.sort(key=lambda m: (-len(m), int(m[0])))
    centroids = normalize_rows(np.stack([vectors[m].mean(axis=0) for m in members]))
    quotas = apportion([len(m) for m in members], budget)
    log.info("kmeans retrieval: %d clusters of sizes %s, quotas %s",
             len(members), [len(m) for m in members], quotas)
    taken = set(int(r) for r in rows)
    streams = index.ranked_many(centroids, taken, depth=2 * max(quotas) + len(taken) + 16)
    cluster_rows = [rows[m].tolist() for m in members]
    picks = _round_robin(streams, quotas, budget, taken)
    source: dict[int, int] = {}
    for i, members_rows in enumerate(cluster_rows):
        rows_i = [row for row, _, j in picks if j == i]
        source.update(zip(rows_i, _nearest_cases(index, rows_i, members_rows)))
    return [Pick(row, score, source[row], f"cluster {i + 1}") for row, score, i in picks]


def by_tag(index: VectorIndex, case_rows: Sequence[int], budget: int, seed: int,
           tags: Sequence[Sequence[str]]) -> list[Pick]:
    """Per-tag quotas (∝ weakness cases carrying the tag) filled with rows of that tag, ranked by
    cosine to the tag's mean weakness embedding (module docstring). ``tags``: one per pool row."""
    del seed  # deterministic: tags in order of first appearance among the cases, ties by row
    if budget <= 0 or not case_rows:
        return []
    names: list[str] = []
    members: dict[str, list[int]] = {}
    for row in case_rows:
        for tag in tags[row]:
            if tag not in members:
                names.append(tag)
                members[tag] = []
            members[tag].append(int(row))
    if not names:
        return []
    names.sort(key=lambda t: -len(members[t]))  # stable: larger tags first, then first seen
    quotas = apportion([len(members[t]) for t in names], budget)
    log.info("tag retrieval: %d tags among the weakness cases, quotas %s",
             len(names), dict(zip(names, quotas)))
    carrying = {t: {i for i, row_tags in enumerate(tags) if t in row_tags} for t in names}
    taken = set(int(r) for r in case_rows)
    centroids = normalize_rows(np.stack([index.embeddings[members[t]].mean(axis=0) for t in names]))

    def within(tag: str, stream: Iterator[tuple[int, float]]) -> Iterator[tuple[int, float]]:
        return ((row, score) for row, score in stream if row in carrying[tag])

    streams = [within(t, index.ranked(c, taken)) for t, c in zip(names, centroids)]
    picks = _round_robin(streams, quotas, budget, taken)
    sources: dict[int, int] = {}
    for i, tag in enumerate(names):
        rows_i = [row for row, _, j in picks if j == i]
        sources.update(zip(rows_i, _nearest_cases(index, rows_i, members[tag])))
    return [Pick(row, score, sources[row], names[i]) for row, score, i in picks]


STRATEGIES: dict[str, Strategy] = {"knn": knn, "centroid": centroid, "kmeans": kmeans}
