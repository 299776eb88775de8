"""Shared fixtures: tiny models and tokenizers built in-process; offline mode; caches in a temp folder."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).parent))


def _caches_in_a_temporary_folder() -> None:
    """Send every writable cache the suite touches to one temporary folder for the session.

    Without this, a test run wrote into the user's home: lm-eval's task (the parity test) left an
    arrow cache in ``~/.cache/huggingface/datasets``, the report's plots left matplotlib's font
    list in ``~/.cache/matplotlib`` and ``~/.config/matplotlib``. Libraries read these locations
    once, when first imported, so they are set here, before any test module imports them; test
    subprocesses (the CLI, ``accelerate launch``) inherit them. ``XDG_CACHE_HOME`` moves the
    caches that follow it (Hugging Face's, torch's); ``HF_HOME`` and ``MPLCONFIGDIR`` are set too,
    since a user may have set those to a folder of their own.

    One cache is kept where it is: aptune's converted-model cache (``APTUNE_CACHE``, by default
    ``~/.cache/aptune``), pinned here to the folder it resolves to before ``XDG_CACHE_HOME`` moves.
    It holds the offline models dequantized from their GGUF packages (about 0.5 GB and 10-20 s
    per model); rebuilding it in every session would cost that each run for no gain, since it is a
    pure function of the installed packages. ``make setup`` does not fill it: the first load does.
    So on a fresh machine the tests that load the real model (the ``integration`` ones) write it
    once, exactly as the user's first ``aptune`` command would, and every later run only reads it.
    """
    from aptune.models import cache_dir  # imports torch only: no library that reads a cache path

    os.environ["APTUNE_CACHE"] = str(cache_dir())
    scratch = Path(tempfile.mkdtemp(prefix="aptune-tests-cache-"))
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    os.environ["XDG_CACHE_HOME"] = str(scratch / "xdg")
    os.environ["HF_HOME"] = str(scratch / "huggingface")
    os.environ["MPLCONFIGDIR"] = str(scratch / "matplotlib")
    for own_folder in ("HF_DATASETS_CACHE", "HF_HUB_CACHE", "HF_MODULES_CACHE", "TRANSFORMERS_CACHE",
                       "SENTENCE_TRANSFORMERS_HOME", "TORCH_HOME"):
        os.environ.pop(own_folder, None)  # a user's own folder for one of them: back under the scratch


_caches_in_a_temporary_folder()

import pytest  # noqa: E402

from tiny import tiny_model, tiny_tokenizer  # noqa: E402


@pytest.fixture
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture
def model():
    return tiny_model("llama")
