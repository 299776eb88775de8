"""Shared fixtures: tiny models/tokenizers, offline mode, one thread per test process."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).parent))

import pytest  # noqa: E402

from tiny import tiny_model, tiny_tokenizer  # noqa: E402


@pytest.fixture
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture
def model():
    return tiny_model("llama")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Keep every test's derived artefacts out of the user's cache, unless it asks for it."""
    if "APTUNE_TEST_REAL_CACHE" not in os.environ:
        monkeypatch.setenv("APTUNE_CACHE_TEST_DIR", str(tmp_path_factory.getbasetemp()))
