"""The task registry: the one place where tasks, suites and suites' task groups are registered and looked up.

Why a registry of its own. The data layer reads tasks by name (``loading.py``), the bundled
tasks (``bundled.py``) and benchmark suites built on them (``aptune.benchmarks.gci``) declare
them. If the reader imported the declarers and a declarer imported the reader back, the data
package would be a circle; here nobody imports a plug-in by name: the registry is filled by
**plug-ins** it loads on the first lookup, and both the reader and the plug-ins depend only on
this module (plug-ins not even on that: they are handed the registry to fill).

Plug-ins. A plug-in is a function ``register(registry: Registry) -> None``, named
``"module:function"``. The registry loads, on first lookup and in this order:

1. the built-in plug-ins (``BUILTIN_PLUGINS``): the bundled tasks, then the GCI suite, which
   builds on them — listed here so that aptune works from a plain checkout, with no
   reinstall after ``pyproject.toml`` changes and whatever order installed metadata gives;
2. every other plug-in declared under the Python entry-point group ``aptune.tasks``
   (``[project.entry-points."aptune.tasks"]`` in a package's ``pyproject.toml``), sorted by
   entry-point name: how another installed package adds its own tasks without touching aptune.
   aptune declares its own built-ins there too; those entries are not loaded twice.

Registration order is lookup order (``tasks()``, ``suites()`` list in it). A name registered
twice is an error (``DuplicateName``), and so is a suite or task group naming a task that is not
registered yet; looking up an unknown name raises ``DataError`` with the closest known names.

A **task group** declaration is what a suite says about how its tasks are reported together:
group → view → tasks (the GCI suite: three groups × domain / general / integrated views), with a
title and a note. Reports render every declaration they find here, and never import a
benchmark by name.
"""

from __future__ import annotations

import difflib
import importlib
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Protocol

from aptune.data.example import Example
from aptune.data.files import DataError

log = logging.getLogger(__name__)

#: The entry-point group other packages declare their task plug-ins under.
ENTRY_POINT_GROUP = "aptune.tasks"

#: aptune's own plug-ins, loaded first and in this order (the GCI suite derives from bundled tasks).
BUILTIN_PLUGINS: tuple[str, ...] = ("aptune.data.bundled:register", "aptune.benchmarks.gci:register")


class Task(Protocol):
    """What the registry holds for one task: its name and domain, where its items come from,
    and how to read them (all items, every source split, in source order)."""

    name: str
    domain: str

    @property
    def source(self) -> str: ...

    def load(self) -> list[Example]: ...


@dataclass(frozen=True)
class TaskGroups:
    """How a suite's tasks are reported together: group → view → tasks, with a title and a note.

    ``views`` is the column order (every view any group has, in the order first met)."""

    suite: str
    title: str
    note: str
    groups: Mapping[str, Mapping[str, Sequence[str]]]

    @property
    def views(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for views in self.groups.values():
            seen.update(dict.fromkeys(views))
        return tuple(seen)

    def cells(self) -> list[tuple[str, str, tuple[str, ...]]]:
        """(group, view, tasks) for every cell, groups in declared order, views in ``views`` order."""
        return [(group, view, tuple(views[view])) for group, views in self.groups.items()
                for view in self.views if view in views]


class DuplicateName(ValueError):
    """A task, suite or task-group declaration registered under a name already taken."""


Plugin = Callable[["Registry"], None]


@dataclass
class Registry:
    """Tasks, suites and task groups by name, filled by plug-ins on the first lookup.

    ``plugins``: ``"module:function"`` names loaded first; ``use_entry_points``: then the
    ``aptune.tasks`` entry points. A test builds its own ``Registry`` with a toy plug-in."""

    plugins: Sequence[str] = BUILTIN_PLUGINS
    use_entry_points: bool = True
    _tasks: dict[str, Task] = field(default_factory=dict, init=False, repr=False)
    _suites: dict[str, list[str]] = field(default_factory=dict, init=False, repr=False)
    _groups: dict[str, TaskGroups] = field(default_factory=dict, init=False, repr=False)
    _loaded: bool = field(default=False, init=False, repr=False)
    _failure: Exception | None = field(default=None, init=False, repr=False)

    # --- registration (called by plug-ins; never triggers loading) -----------------------------

    def register_task(self, task: Task) -> None:
        """Add one task under ``task.name``."""
        if task.name in self._tasks:
            raise DuplicateName(f"task {task.name!r} is already registered (source: {self._tasks[task.name].source})")
        self._tasks[task.name] = task

    def register_suite(self, name: str, tasks: Iterable[str]) -> None:
        """Add a named suite: a list of registered task names."""
        if name in self._suites:
            raise DuplicateName(f"suite {name!r} is already registered")
        names = list(tasks)
        self._check_known(names, f"suite {name!r}")
        self._suites[name] = names

    def register_task_groups(self, suite: str, groups: Mapping[str, Mapping[str, Sequence[str]]], *,
                             title: str, note: str) -> None:
        """Declare how ``suite``'s tasks are reported together (see ``TaskGroups``)."""
        if suite in self._groups:
            raise DuplicateName(f"task groups of suite {suite!r} are already registered")
        self._check_known([t for views in groups.values() for ts in views.values() for t in ts],
                          f"task groups of {suite!r}")
        frozen = {g: {v: tuple(ts) for v, ts in views.items()} for g, views in groups.items()}
        self._groups[suite] = TaskGroups(suite, title, note, frozen)

    def _check_known(self, names: Sequence[str], what: str) -> None:
        unknown = [n for n in names if n not in self._tasks]
        if unknown:
            raise DataError(f"{what} names unregistered tasks {', '.join(unknown)} "
                            "(register tasks before the suites and groups that use them)")

    # --- lookup (loads the plug-ins once) ------------------------------------------------------

    def has_task(self, name: str) -> bool:
        self._load()
        return name in self._tasks

    def get_task(self, name: str) -> Task:
        self._load()
        if name not in self._tasks:
            raise DataError(f"unknown task {name!r}{_hint(name, self._tasks)} (see `aptune data`)")
        return self._tasks[name]

    def get_suite(self, name: str) -> list[str]:
        self._load()
        if name not in self._suites:
            raise DataError(f"unknown suite {name!r}{_hint(name, self._suites)} (known: {', '.join(self._suites)})")
        return list(self._suites[name])

    def task_groups(self, suite: str) -> TaskGroups:
        self._load()
        if suite not in self._groups:
            known = ", ".join(self._groups) or "none"
            raise DataError(f"suite {suite!r} declares no task groups (suites that do: {known})")
        return self._groups[suite]

    def tasks(self) -> dict[str, Task]:
        """Every registered task by name, in registration order (a copy)."""
        self._load()
        return dict(self._tasks)

    def suites(self) -> dict[str, list[str]]:
        """Suite name → its task names, in registration order (a copy)."""
        self._load()
        return {name: list(tasks) for name, tasks in self._suites.items()}

    def all_task_groups(self) -> dict[str, TaskGroups]:
        """Suite → its task-group declaration, for every suite that declares one."""
        self._load()
        return dict(self._groups)

    # --- plug-ins ------------------------------------------------------------------------------

    def _load(self) -> None:
        if self._failure is not None:  # a half-filled registry must not pass for a whole one
            raise RuntimeError(f"the task registry could not be filled: {self._failure}")
        if self._loaded:
            return
        self._loaded = True  # first, so that a plug-in's own lookups see the registry as it fills
        try:
            for spec in self.plugins:
                _call(spec, lambda spec=spec: _resolve(spec), self)
            if self.use_entry_points:
                builtin = set(self.plugins)
                for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
                    if ep.value.replace(" ", "") not in builtin:
                        _call(f"{ep.name} = {ep.value}", ep.load, self)
        except RuntimeError as exc:
            self._failure = exc
            raise


def _resolve(spec: str) -> Plugin:
    module, _, attr = spec.partition(":")
    if not attr:
        raise ValueError(f"task plug-in {spec!r}: expected 'module:function'")
    return getattr(importlib.import_module(module), attr)


def _call(spec: str, resolve: Callable[[], Plugin], registry: Registry) -> None:
    """Import the plug-in (``resolve``) and let it register; any failure names the plug-in."""
    try:
        resolve()(registry)
    except Exception as exc:
        raise RuntimeError(f"task plug-in {spec} failed to register: {exc}") from exc
    log.debug("task plug-in %s registered", spec)


def _hint(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=3)
    return f" (did you mean {', '.join(close)}?)" if close else ""


#: The process-wide registry every lookup below uses.
REGISTRY = Registry()

register_task = REGISTRY.register_task
register_suite = REGISTRY.register_suite
register_task_groups = REGISTRY.register_task_groups
has_task = REGISTRY.has_task
get_task = REGISTRY.get_task
get_suite = REGISTRY.get_suite
task_groups = REGISTRY.task_groups
all_task_groups = REGISTRY.all_task_groups
tasks = REGISTRY.tasks
suites = REGISTRY.suites
