"""One entry point for data: a bundled task name or a data file path → the Examples of one split."""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from aptune.data.bundled import SUITES, TASKS
from aptune.data.example import Example
from aptune.data.files import SUFFIXES, DataError, load_file
from aptune.data.splits import SPLITS, select, split_of

log = logging.getLogger(__name__)


@cache
def _bundled(name: str) -> tuple[Example, ...]:
    """A bundled task's items, read once per process (the package files never change under us).

    The Examples are shared between callers: treat their ``meta`` as read-only.
    """
    return tuple(TASKS[name].load())


def _all_items(name: str) -> tuple[Example, ...]:
    """Every item of a bundled task or a data file (files are re-read: users edit them)."""
    if name in TASKS:
        return _bundled(name)
    if Path(name).suffix.lower() in SUFFIXES:
        return tuple(load_file(name))
    close = difflib.get_close_matches(name, list(TASKS), n=3)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise DataError(
        f"unknown task {name!r}: {hint}not a bundled task (see `aptune data`) "
        f"nor a data file ({', '.join(SUFFIXES)})"
    )


def load_task(name: str, split: str = "test", limit: int | None = None, seed: int = 0) -> list[Example]:
    """The items of a bundled task, or of a JSONL/CSV/Parquet file, in ``split``.

    ``split``: train/dev/test (hash-assigned, seed-independent membership, seeded order),
    ``source`` (all items in source order) or ``source:<name>`` (one source split);
    ``limit`` takes the first items of that order. See ``aptune.data.splits``.
    """
    every = _all_items(name)  # raises DataError with its own file/line message
    try:
        items = select(every, split, limit, seed)
    except ValueError as exc:
        raise DataError(f"task {name!r}: {exc}") from None
    log.debug("loaded %d items of %s (split=%s, limit=%s, seed=%d)", len(items), name, split, limit, seed)
    return items


def load_suite(name: str, split: str = "test", limit_per_task: int | None = None,
               seed: int = 0) -> dict[str, list[Example]]:
    """Task name → items for every task of a named suite (see ``list_suites``)."""
    if name not in SUITES:
        raise DataError(f"unknown suite {name!r} (known: {', '.join(SUITES)})")
    return {task: load_task(task, split, limit_per_task, seed) for task in SUITES[name]}


@dataclass(frozen=True)
class TaskInfo:
    """What ``aptune data`` shows for one bundled task."""

    name: str
    domain: str
    kind: str  # "multiple-choice" or "generative"
    size: int
    source: str
    split_sizes: dict[str, int] = field(default_factory=dict)  # train/dev/test → items


def task_info(name: str) -> TaskInfo:
    """Size and per-split sizes of one bundled task."""
    items = _all_items(name)
    sizes = {s: 0 for s in SPLITS}
    for ex in items:
        sizes[split_of(ex)] += 1
    kind = "multiple-choice" if items and items[0].is_multiple_choice else "generative"
    task = TASKS[name]
    return TaskInfo(name, task.domain, kind, len(items), task.source, sizes)


def list_tasks() -> list[TaskInfo]:
    """Every bundled task with its size and per-split sizes (about 1 s: reads every source)."""
    return [task_info(name) for name in TASKS]


def list_suites() -> dict[str, list[str]]:
    """Suite name → its task names."""
    return {name: list(tasks) for name, tasks in SUITES.items()}
