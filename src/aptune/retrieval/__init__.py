"""Similar-case retrieval for APT: sentence embeddings, a cached FAISS index, selection strategies."""

from aptune.retrieval.encoder import DEFAULT_ENCODER, SentenceEncoder, TextEncoder, load_encoder
from aptune.retrieval.index import PoolIndex, VectorIndex, build_pool_index, content_key
from aptune.retrieval.retrieve import RetrievedCase, embed_text, index_pool, retrieve_similar
from aptune.retrieval.strategies import STRATEGIES, budget_for

__all__ = [
    "DEFAULT_ENCODER",
    "STRATEGIES",
    "PoolIndex",
    "RetrievedCase",
    "SentenceEncoder",
    "TextEncoder",
    "VectorIndex",
    "budget_for",
    "build_pool_index",
    "content_key",
    "embed_text",
    "index_pool",
    "load_encoder",
    "retrieve_similar",
]
