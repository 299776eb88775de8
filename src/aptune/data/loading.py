"""One entry point for data: a bundled task name or a file path → Examples of one split."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from aptune.data.bundled import SUITES, TASKS
from aptune.data.example import Example
from aptune.data.files import SUFFIXES, DataError, load_file
from aptune.data.splits import SPLITS, assign_split, select


@lru_cache(maxsize=64)
def _all_items(name: str) -> tuple[Example, ...]:
    if name in TASKS:
        return tuple(TASKS[name].load())
    path = Path(name)
    if path.suffix.lower() in SUFFIXES:
        return tuple(load_file(path))
    known = ", ".join(sorted(t for t in TASKS if not t.startswith("mmlu_"))) + ", mmlu_<subject>"
    raise DataError(f"unknown task {name!r}: not a bundled task ({known}) nor a data file ({', '.join(SUFFIXES)})")


def load_task(name: str, split: str = "test", limit: int | None = None, seed: int = 0) -> list[Example]:
    """Items of a bundled task or a data file, restricted to ``split`` (see ``splits.py``)."""
    return select(_all_items(name), split, limit, seed)


def load_suite(name: str, split: str = "test", limit_per_task: int | None = None, seed: int = 0) -> dict[str, list[Example]]:
    if name not in SUITES:
        raise DataError(f"unknown suite {name!r} (known: {', '.join(SUITES)})")
    return {task: load_task(task, split, limit_per_task, seed) for task in SUITES[name]}


@dataclass(frozen=True)
class TaskInfo:
    name: str
    domain: str
    kind: str
    size: int
    source: str
    split_sizes: dict[str, int] = field(default_factory=dict)


def list_tasks() -> list[TaskInfo]:
    """Every bundled task with its size and per-split sizes (for ``aptune data``)."""
    out = []
    for task in TASKS.values():
        items = _all_items(task.name)
        sizes = {s: 0 for s in SPLITS}
        for ex in items:
            sizes[assign_split(ex.task, ex.id)] += 1
        kind = "multiple-choice" if items and items[0].is_multiple_choice else "generative"
        out.append(TaskInfo(task.name, task.domain, kind, len(items), task.source, sizes))
    return out


def list_suites() -> dict[str, list[str]]:
    return dict(SUITES)
