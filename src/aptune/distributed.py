"""Several processes, one result: item sharding and write discipline under ``accelerate launch``.

aptune adds no distributed layer of its own; this module is a thin shell over accelerate's
``PartialState`` (the process group ``accelerate launch`` / ``torchrun`` set up):

- ``map_sharded(fn, items)``: each process runs ``fn`` on a contiguous slice of ``items``
  (``split_between_processes``) and every process gets all results back in input order
  (``gather_object``). Mining and evaluation answer the pool this way.
- ``is_main()``: the one process that writes files. ``aptune.io.write_atomic`` skips writes on
  the others, so no file is written twice or half-written by a second writer.
- ``barrier()``: the others wait until the main process has written a stage's files.

In a plain single process (no launcher) every helper is a no-op: ``map_sharded`` is ``fn(items)``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch

T = TypeVar("T")
R = TypeVar("R")


def _launched() -> bool:
    """True when a launcher started several processes (WORLD_SIZE > 1 in the environment)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


def state() -> Any:
    """accelerate's ``PartialState`` (initialises the process group once), or None when single."""
    if not _launched():
        return None
    from accelerate import PartialState

    # CPU-only processes need cpu=True, or accelerate treats a torchrun launch as single-process
    cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true") or not torch.accelerator.is_available()
    return PartialState(cpu=cpu)


def world_size() -> int:
    s = state()
    return s.num_processes if s is not None else 1


def process_index() -> int:
    s = state()
    return s.process_index if s is not None else 0


def is_main() -> bool:
    """The process that writes run-directory files (always True in a single process)."""
    s = state()
    return True if s is None else bool(s.is_main_process)


def device() -> torch.device:
    """This process's device under a launcher (e.g. ``cuda:1``); CPU in a plain process."""
    s = state()
    return s.device if s is not None else torch.device("cpu")


def barrier() -> None:
    """Wait until every process gets here (no-op in a single process)."""
    s = state()
    if s is not None:
        s.wait_for_everyone()


def map_sharded(fn: Callable[[Sequence[T]], list[R]], items: Sequence[T]) -> list[R]:
    """``fn(items)`` computed across processes: each takes a contiguous slice, results gathered.

    ``fn`` must return one result per item, in order. Every process returns the full list in
    input order, so whatever follows (metrics, weakness cases) is identical on all of them.
    """
    s = state()
    if s is None or s.num_processes == 1:
        return fn(items)
    from accelerate.utils import gather_object

    with s.split_between_processes(list(items)) as part:
        local = fn(part) if part else []
    if len(local) != len(part):
        raise RuntimeError(f"map_sharded: {len(local)} results for {len(part)} items on process {s.process_index}")
    return list(gather_object(local))
