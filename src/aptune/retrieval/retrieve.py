"""APT step 4: retrieve pool items similar to the model's weakness cases.

One call per round: ``retrieve_similar(pool, weakness_ids, ...)``. The pool's embeddings and
index are cached under ``cache_dir`` (the run directory), so rounds after the first only
search. The weakness cases must be pool members (their embeddings come from the same index)
and are never returned.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from aptune.data.example import Example
from aptune.retrieval.encoder import TextEncoder, load_encoder
from aptune.retrieval.index import PoolIndex, build_pool_index
from aptune.retrieval.strategies import STRATEGIES, budget_for, by_tag

log = logging.getLogger(__name__)

EmbedField = Literal["question", "question+answer"]


@dataclass(frozen=True)
class RetrievedCase:
    """A pool item chosen as similar: its id, ranking score (cosine), and the weakness case it serves."""

    id: str
    score: float
    source_case_id: str
    group: str | None = None  # the cluster or tag that chose it (kmeans, tag)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def embed_text(example: Example, embed: EmbedField = "question") -> str:
    """The text embedded for ``example``: its question, or question and reference answer."""
    if embed == "question":
        return example.question
    if embed == "question+answer":
        return f"{example.question}\n{example.reference}"
    raise ValueError(f"embed must be 'question' or 'question+answer', not {embed!r}")


def index_pool(
    pool: Sequence[Example],
    cache_dir: Path | str | None = None,
    encoder: str | TextEncoder | None = None,
    embed: EmbedField = "question",
) -> PoolIndex:
    """Embeddings + FAISS index of ``pool`` (cached in ``cache_dir``); rows follow pool order."""
    texts = [embed_text(example, embed) for example in pool]
    model = encoder if isinstance(encoder, TextEncoder) else load_encoder(encoder)
    return build_pool_index(texts, _Named(model, f"{model.name}|{embed}"), cache_dir)


class _Named:
    """An encoder under a different cache name (the embedding mode is part of the key)."""

    def __init__(self, inner: TextEncoder, name: str):
        self._inner = inner
        self.name = name

    def encode(self, texts: Sequence[str]):  # noqa: ANN201
        return self._inner.encode(texts)


def retrieve_similar(
    pool: Sequence[Example],
    weakness_ids: Sequence[str],
    strategy: str = "knn",
    s: float = 1.0,
    cache_dir: Path | str | None = None,
    encoder: str | TextEncoder | None = None,
    embed: EmbedField = "question",
    seed: int = 0,
    tags: Sequence[Sequence[str]] | None = None,
) -> list[RetrievedCase]:
    """Up to round(s × |weakness cases|) pool items similar to the weakness cases.

    ``strategy`` is one of ``knn`` (per-case neighbours, round-robin), ``centroid`` or
    ``kmeans`` (see strategies.py). ``encoder`` is a sentence-transformers folder or Hub id,
    an object with ``name`` and ``encode``, or None for the offline all-MiniLM-L6-v2.
    Returns fewer items when the pool has fewer non-weakness items than the budget; never an
    id twice, never a weakness case; the same inputs and seed give the same list.
    """
    if strategy not in (*STRATEGIES, "tag"):
        raise ValueError(f"unknown retrieval strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}, tag")
    if strategy == "tag" and (tags is None or len(tags) != len(pool)):
        raise ValueError("the tag strategy needs one tag list per pool item (retrieval/tags.py)")
    row_of: dict[str, int] = {}
    for row, example in enumerate(pool):
        if example.id in row_of:
            raise ValueError(f"retrieval pool has duplicate id {example.id!r}")
        row_of[example.id] = row
    case_ids = list(dict.fromkeys(weakness_ids))  # dedupe, keep order
    missing = [case_id for case_id in case_ids if case_id not in row_of]
    if missing:
        raise ValueError(f"weakness case id {missing[0]!r} is not in the retrieval pool ({len(missing)} missing)")
    budget = budget_for(len(case_ids), s)
    if budget == 0:
        return []
    pool_index = index_pool(pool, cache_dir, encoder, embed)
    case_rows = [row_of[case_id] for case_id in case_ids]
    if strategy == "tag":
        assert tags is not None
        picks = by_tag(pool_index.index, case_rows, budget, seed, tags)
    else:
        picks = STRATEGIES[strategy](pool_index.index, case_rows, budget, seed)
    log.info("retrieved %d similar cases for %d weakness cases (%s, s=%g, budget %d)",
             len(picks), len(case_rows), strategy, s, budget)
    return [RetrievedCase(pool[p.row].id, p.score, pool[p.source].id, p.group) for p in picks]
