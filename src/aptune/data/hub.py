"""Tasks from Hugging Face datasets: a Hub id, or a folder written by ``save_to_disk``.

A task name ``hf:ORG/NAME[:CONFIG[:SPLIT]]`` loads that dataset with ``datasets`` (every split
when none is named, each item tagged ``meta["source_split"]``, so ``split: source:<name>``
selects one); a folder that ``Dataset.save_to_disk`` or ``DatasetDict.save_to_disk`` wrote is
read with ``load_from_disk``. Rows then go through the same formats as data files
(``formats.py``: messages, Alpaca, ShareGPT, preference, or aptune's own question/answer rows),
and aptune's hash split assigns train/dev/test as for any task.

The Hub is asked once, with a short timeout, before anything is downloaded: where it cannot be
reached (no network, a firewall), the task fails at once with one line that says so and what
to do instead, never a hang. ``HF_HUB_OFFLINE=1`` skips the question and reads the local cache.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aptune.data.example import Example
from aptune.data.files import DataError, items_from_rows

PREFIX = "hf:"
#: seconds to wait for the Hub's answer before calling it unreachable
HUB_TIMEOUT_S = 10.0


def is_dataset_folder(name: str) -> bool:
    """A folder that ``save_to_disk`` wrote (a Dataset's state.json, or a DatasetDict's index)."""
    path = Path(name)
    return path.is_dir() and ((path / "state.json").is_file() or (path / "dataset_dict.json").is_file())


def is_hub_task(name: str) -> bool:
    return name.startswith(PREFIX) or is_dataset_folder(name)


def parse_hub_id(name: str) -> tuple[str, str | None, str | None]:
    """``hf:ORG/NAME[:CONFIG[:SPLIT]]`` → (repo id, config, split)."""
    parts = name.removeprefix(PREFIX).split(":")
    if not parts[0] or len(parts) > 3 or any(not p for p in parts[1:]):
        raise DataError(f"{name}: expected hf:ORG/NAME, hf:ORG/NAME:CONFIG or hf:ORG/NAME:CONFIG:SPLIT")
    return parts[0], (parts[1] if len(parts) > 1 else None), (parts[2] if len(parts) > 2 else None)


def _check_reachable(name: str, repo: str) -> None:
    """One short request to the Hub; raise a one-line DataError when it cannot answer."""
    from huggingface_hub import HfApi

    try:
        HfApi().dataset_info(repo, timeout=HUB_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 -- connection, DNS, HTTP and auth errors all end here
        reason = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise DataError(f"{name}: cannot read dataset {repo!r} from the Hugging Face Hub ({type(exc).__name__}: "
                        f"{reason}); where there is no network, save it with save_to_disk elsewhere and pass "
                        "that folder, or export it to JSONL") from None


def _splits(data: Any) -> dict[str, Any]:
    """A Dataset or DatasetDict → split name → Dataset."""
    from datasets import DatasetDict

    return dict(data) if isinstance(data, DatasetDict) else {str(getattr(data, "split", None) or "data"): data}


def load_hub_task(name: str, format: str = "auto", fields: Mapping[str, str] | None = None) -> list[Example]:  # noqa: A002
    """Every item of a Hub dataset or a ``save_to_disk`` folder (module docstring)."""
    try:
        import datasets
    except ImportError:  # pragma: no cover - datasets is a dependency
        raise DataError(f"{name}: reading Hugging Face datasets needs the datasets package") from None
    if is_dataset_folder(name):
        try:
            data = datasets.load_from_disk(name)
        except Exception as exc:  # noqa: BLE001
            raise DataError(f"{name}: not a readable save_to_disk folder ({' '.join(str(exc).split())[:160]})") from None
        task = Path(name).name
    else:
        repo, config, split = parse_hub_id(name)
        if os.environ.get("HF_HUB_OFFLINE", "0").lower() not in ("1", "true", "yes"):
            _check_reachable(name, repo)
        try:
            data = datasets.load_dataset(repo, config, split=split)
        except Exception as exc:  # noqa: BLE001 -- offline cache misses, missing configs, bad splits
            raise DataError(f"{name}: cannot load ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})") from None
        task = repo.rsplit("/", 1)[-1] + (f"_{config}" if config else "")
    items: list[Example] = []
    number = 0
    for split_name, part in _splits(data).items():
        rows = [(number + i + 1, dict(row)) for i, row in enumerate(part)]
        number += len(rows)
        for ex in items_from_rows(Path(name), rows, task, format=format, fields=fields):
            ex.meta.setdefault("source_split", split_name)
            items.append(ex)
    seen: set[str] = set()
    for ex in items:
        if ex.id in seen:
            raise DataError(f"{name}: duplicate id {ex.id!r} across splits")
        seen.add(ex.id)
    return items
