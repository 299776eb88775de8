"""One entry point for data: a registered task name or a data file path → the Examples of one split.

Task and suite names are looked up in the task registry (``aptune.data.registry``): the bundled
tasks and every plug-in's (e.g. the GCI suite), with no import of either here."""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass, field
from collections.abc import Mapping
from functools import cache
from pathlib import Path

from aptune.data import registry
from aptune.data.example import Example
from aptune.data.files import SUFFIXES, DataError, load_file
from aptune.data.splits import SPLITS, select, split_of

log = logging.getLogger(__name__)


@cache
def _bundled(name: str) -> tuple[Example, ...]:
    """A bundled task's items, read once per process (the package files never change under us).

    The Examples are shared between callers: treat their ``meta`` as read-only.
    """
    return tuple(registry.get_task(name).load())


def _all_items(name: str, format: str = "auto", fields: Mapping[str, str] | None = None) -> tuple[Example, ...]:  # noqa: A002
    """Every item of a bundled task or a data file (files are re-read: users edit them; their
    rows read in ``format`` with ``fields`` renamed, ``data/formats.py``)."""
    from aptune.data.hub import is_hub_task, load_hub_task

    if registry.has_task(name):
        return _bundled(name)
    if is_hub_task(name):
        return tuple(load_hub_task(name, format, fields))
    if Path(name).suffix.lower() in SUFFIXES:
        return tuple(load_file(name, format=format, fields=fields))
    close = difflib.get_close_matches(name, list(registry.tasks()), n=3)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise DataError(
        f"unknown task {name!r}: {hint}not a bundled task (see `aptune data`), "
        f"a data file ({', '.join(SUFFIXES)}), a Hugging Face dataset (hf:ORG/NAME) nor a save_to_disk folder"
    )


def load_task(name: str, split: str = "test", limit: int | None = None, seed: int = 0,
              shots: int = 0, format: str = "auto", fields: Mapping[str, str] | None = None) -> list[Example]:  # noqa: A002
    """The items of a bundled task, or of a JSONL/CSV/Parquet file, in ``split``.

    ``split``: train/dev/test (hash-assigned, seed-independent membership, seeded order),
    ``source`` (all items in source order) or ``source:<name>`` (one source split);
    ``limit`` takes the first items of that order. See ``aptune.data.splits``. ``shots``: each
    item carries that many exemplars from the task's train split (``aptune.data.fewshot``).
    ``format``/``fields``: how a data file's rows read (``aptune.data.formats``).
    """
    from aptune.data.fewshot import attach_exemplars

    every = _all_items(name, format, fields)  # raises DataError with its own file/line message
    try:
        items = attach_exemplars(select(every, split, limit, seed), every, shots, seed, name)
    except ValueError as exc:
        raise DataError(f"task {name!r}: {exc}".replace(f"task {name!r}: task {name!r}: ", f"task {name!r}: ")) from None
    log.debug("loaded %d items of %s (split=%s, limit=%s, seed=%d)", len(items), name, split, limit, seed)
    return items


def is_data_file(name: str) -> bool:
    """Whether a task name is a user's data (a file, a Hugging Face dataset), not a registered task."""
    from aptune.data.hub import is_hub_task

    return not registry.has_task(name) and (Path(name).suffix.lower() in SUFFIXES or is_hub_task(name))


def default_eval_split(name: str) -> str:
    """What ``aptune eval`` reads when no split is asked for: a bundled task's test split (its
    train and dev items are for training and model selection), but every item of a user's data
    file (``source``): a file handed to the evaluator is the evaluation set."""
    return "source" if is_data_file(name) else "test"


def task_size(name: str, format: str = "auto", fields: Mapping[str, str] | None = None) -> int:  # noqa: A002
    """How many items a task or data file holds over all splits."""
    return len(_all_items(name, format, fields))


def load_suite(name: str, split: str = "test", limit_per_task: int | None = None,
               seed: int = 0, shots: int = 0) -> dict[str, list[Example]]:
    """Task name → items for every task of a named suite (see ``list_suites``)."""
    return {task: load_task(task, split, limit_per_task, seed, shots) for task in registry.get_suite(name)}


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
    task = registry.get_task(name)
    return TaskInfo(name, task.domain, kind, len(items), task.source, sizes)


def list_tasks() -> list[TaskInfo]:
    """Every bundled task with its size and per-split sizes (about 1 s: reads every source)."""
    return [task_info(name) for name in registry.tasks()]


def list_suites() -> dict[str, list[str]]:
    """Suite name → its task names."""
    return registry.suites()
