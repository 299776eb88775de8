"""Pool embeddings and a FAISS inner-product index, built once and cached in the run directory.

The cache key is a SHA-256 over the encoder name and every text in pool order, so a changed
pool (or encoder, or embedding mode) gets a new key and is rebuilt, while later APT rounds over
the same pool reuse the files. Files: ``<key>.npy`` (float32, loaded with allow_pickle=False),
``<key>.faiss`` (FAISS's own serialisation) and ``<key>.json`` (metadata, written last: a file
set without its JSON is treated as absent). Nothing is pickled.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aptune.retrieval.encoder import TextEncoder, normalize_rows
from aptune.io import write_atomic

log = logging.getLogger(__name__)

CACHE_VERSION = 1


def content_key(texts: Sequence[str], encoder_name: str) -> str:
    """SHA-256 hex digest of the encoder name and the texts (length-prefixed, order-sensitive)."""
    digest = hashlib.sha256()
    for part in (f"aptune-retrieval-v{CACHE_VERSION}", encoder_name, *texts):
        raw = part.encode("utf-8")
        digest.update(len(raw).to_bytes(8, "little"))
        digest.update(raw)
    return digest.hexdigest()


class VectorIndex:
    """Exact inner-product search (cosine on unit rows) over a fixed matrix of embeddings."""

    def __init__(self, embeddings: np.ndarray, faiss_index: object | None = None):
        import faiss

        self.embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        if faiss_index is None:
            faiss_index = faiss.IndexFlatIP(self.embeddings.shape[1])
            faiss_index.add(self.embeddings)
        if faiss_index.ntotal != len(self.embeddings):
            raise ValueError(
                f"index holds {faiss_index.ntotal} vectors but there are {len(self.embeddings)} embeddings"
            )
        self._index = faiss_index

    def __len__(self) -> int:
        return len(self.embeddings)

    @property
    def faiss_index(self) -> object:
        return self._index

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (scores, rows) for each query row, best first; k is capped at the pool size."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = min(k, len(self))
        if k <= 0 or len(queries) == 0:
            empty = np.zeros((len(queries), 0))
            return empty.astype(np.float32), empty.astype(np.int64)
        return self._index.search(queries, k)

    def ranked(
        self, query: np.ndarray, exclude: set[int] | frozenset[int] = frozenset(), depth: int | None = None
    ) -> Iterator[tuple[int, float]]:
        """Every pool row as (row, score) by decreasing similarity to ``query``, minus ``exclude``.

        Lazy: it searches ``depth`` rows deep (default: twice the excluded count plus 16) and
        doubles the depth only when a caller reads past it, so taking the top few of a large
        pool stays cheap. ``exclude`` is read at each step, so a caller may grow it while
        iterating (that is how strategies deduplicate).
        """
        return self._ranked(query, exclude, depth or 2 * len(exclude) + 16, None)

    def ranked_many(
        self, queries: np.ndarray, exclude: set[int] | frozenset[int] = frozenset(), depth: int = 32
    ) -> list[Iterator[tuple[int, float]]]:
        """``ranked`` for many queries, with the first ``depth`` rows found in one batched search
        (FAISS uses BLAS for a batch: far faster than one search per query)."""
        queries = np.atleast_2d(queries)
        depth = min(len(self), max(1, depth))
        scores, rows = self.search(queries, depth)
        return [self._ranked(q, exclude, depth, (s, r)) for q, s, r in zip(queries, scores, rows)]

    def _ranked(
        self,
        query: np.ndarray,
        exclude: set[int] | frozenset[int],
        depth: int,
        first: tuple[np.ndarray, np.ndarray] | None,
    ) -> Iterator[tuple[int, float]]:
        depth = min(len(self), max(1, depth))
        visited: set[int] = set()  # rows already yielded or skipped; robust to tie reordering
        while True:
            if first is not None:
                scores, rows = first
                first = None
            else:
                found_scores, found_rows = self.search(query, depth)
                scores, rows = found_scores[0], found_rows[0]
            for row, score in zip(rows.tolist(), scores.tolist()):
                if row < 0 or row in visited:
                    continue
                visited.add(row)
                if row not in exclude:
                    yield row, float(score)
            if depth >= len(self):
                return
            depth = min(len(self), depth * 2)


@dataclass(frozen=True)
class PoolIndex:
    """Embeddings of a pool's texts, their index, and the cache key they were stored under."""

    key: str
    encoder_name: str
    index: VectorIndex
    from_cache: bool

    @property
    def embeddings(self) -> np.ndarray:
        return self.index.embeddings


def _load_cached(folder: Path, key: str, n: int) -> VectorIndex | None:
    """The cached index for ``key``, or None when absent, incomplete or inconsistent."""
    import faiss

    meta_path = folder / f"{key}.json"
    if not meta_path.exists():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        embeddings = np.load(folder / f"{key}.npy", allow_pickle=False)
        faiss_index = faiss.read_index(str(folder / f"{key}.faiss"))
        if meta.get("key") != key or embeddings.shape != (n, meta.get("dim")):
            raise ValueError(f"shape {embeddings.shape} does not match metadata")
        return VectorIndex(embeddings, faiss_index)
    except (OSError, ValueError, RuntimeError, json.JSONDecodeError) as exc:
        log.warning("%s: ignoring unusable retrieval cache (%s); rebuilding", meta_path, exc)
        return None


def build_pool_index(
    texts: Sequence[str], encoder: TextEncoder, cache_dir: Path | str | None = None
) -> PoolIndex:
    """Embed ``texts`` with ``encoder`` and index them, reusing ``cache_dir`` when it holds them.

    ``cache_dir`` None disables caching (everything is computed in memory).
    """
    import faiss

    if not texts:
        raise ValueError("cannot build a retrieval index over an empty pool")
    key = content_key(texts, encoder.name)
    folder = Path(cache_dir) if cache_dir is not None else None
    if folder is not None:
        cached = _load_cached(folder, key, len(texts))
        if cached is not None:
            log.info("retrieval cache hit %s (%d texts)", key[:12], len(texts))
            return PoolIndex(key, encoder.name, cached, from_cache=True)
    log.info("embedding %d pool texts with %s", len(texts), encoder.name)
    embeddings = normalize_rows(encoder.encode(list(texts)))
    if embeddings.shape[0] != len(texts):
        raise ValueError(f"encoder {encoder.name} returned {embeddings.shape[0]} rows for {len(texts)} texts")
    index = VectorIndex(embeddings)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(folder / f"{key}.npy", lambda p: _save_npy(p, embeddings))
        write_atomic(folder / f"{key}.faiss", lambda p: faiss.write_index(index.faiss_index, str(p)))
        meta = {
            "key": key,
            "version": CACHE_VERSION,
            "encoder": encoder.name,
            "n": len(texts),
            "dim": int(embeddings.shape[1]),
            "index": "IndexFlatIP",
        }
        write_atomic(folder / f"{key}.json", lambda p: p.write_text(json.dumps(meta, indent=2) + "\n"))
    return PoolIndex(key, encoder.name, index, from_cache=False)


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as handle:
        np.save(handle, array, allow_pickle=False)
