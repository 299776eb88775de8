"""The task registry: plug-ins fill it on first lookup, names are unique, unknown names are clear
errors, and the data layer reaches no plug-in by import."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass

import pytest

from aptune.data import DataError, Example, load_suite, load_task, registry
from aptune.data.registry import DuplicateName, Registry


@dataclass(frozen=True)
class ToyTask:
    name: str
    domain: str = "toy"
    source: str = "made up in the test"

    def load(self) -> list[Example]:
        return [Example(f"{self.name}-{i}", self.name, self.domain, f"q{i}?", ("a", "b"), i % 2) for i in range(4)]


CALLS: list[str] = []


def toy_plugin(reg: Registry) -> None:
    """A plug-in as another package would write it (named ``module:function``)."""
    CALLS.append("toy")
    reg.register_task(ToyTask("toy_a"))
    reg.register_task(ToyTask("toy_b", domain="general"))
    reg.register_suite("toy", ["toy_a", "toy_b"])
    reg.register_task_groups("toy", {"g1": {"domain": ["toy_a"], "general": ["toy_b"]}, "g2": {"general": ["toy_b"]}},
                             title="Toy", note="a toy declaration")


def broken_plugin(reg: Registry) -> None:
    reg.register_task(ToyTask("half"))
    raise ValueError("boom")


def _toy_registry(*plugins: str) -> Registry:
    return Registry(plugins=plugins or (f"{__name__}:toy_plugin",), use_entry_points=False)


def test_a_plugin_is_loaded_once_on_first_lookup_and_registers_tasks_suites_and_groups():
    CALLS.clear()
    reg = _toy_registry()
    assert CALLS == []  # nothing is loaded before a lookup
    assert list(reg.tasks()) == ["toy_a", "toy_b"] and reg.suites() == {"toy": ["toy_a", "toy_b"]}
    assert reg.get_task("toy_b").domain == "general" and reg.has_task("toy_a") and not reg.has_task("piqa")
    groups = reg.task_groups("toy")
    assert (groups.title, groups.views) == ("Toy", ("domain", "general"))
    assert groups.cells() == [("g1", "domain", ("toy_a",)), ("g1", "general", ("toy_b",)), ("g2", "general", ("toy_b",))]
    assert list(reg.all_task_groups()) == ["toy"]
    reg.get_suite("toy")
    assert CALLS == ["toy"]


def test_duplicates_and_unknown_names_are_clear_errors():
    reg = _toy_registry()
    reg.tasks()
    with pytest.raises(DuplicateName, match="task 'toy_a' is already registered"):
        reg.register_task(ToyTask("toy_a"))
    with pytest.raises(DuplicateName, match="suite 'toy' is already registered"):
        reg.register_suite("toy", ["toy_a"])
    with pytest.raises(DuplicateName, match="task groups of suite 'toy'"):
        reg.register_task_groups("toy", {}, title="", note="")
    with pytest.raises(DataError, match="suite 'bad' names unregistered tasks nope"):
        reg.register_suite("bad", ["toy_a", "nope"])
    with pytest.raises(DataError, match=r"unknown task 'toy_c' \(did you mean toy_b, toy_a\?\)"):
        reg.get_task("toy_c")
    with pytest.raises(DataError, match="unknown suite 'toys'.*known: toy"):
        reg.get_suite("toys")
    with pytest.raises(DataError, match="suite 'x' declares no task groups"):
        reg.task_groups("x")
    assert "bad" not in reg.suites()


def test_a_failing_plugin_is_named_and_the_half_filled_registry_is_not_used():
    reg = _toy_registry(f"{__name__}:toy_plugin", f"{__name__}:broken_plugin")
    with pytest.raises(RuntimeError, match=f"task plug-in {__name__}:broken_plugin failed to register: boom"):
        reg.tasks()
    with pytest.raises(RuntimeError, match="could not be filled"):
        reg.get_task("toy_a")
    with pytest.raises(RuntimeError, match="expected 'module:function'"):
        _toy_registry("no_function_named").tasks()


def test_the_process_registry_holds_the_bundled_tasks_then_the_gci_suite_and_its_groups():
    names = list(registry.tasks())
    assert names.index("mmlu_world_religions") < names.index("gci_reasoning_domain")
    assert len(names) == len(set(names))
    assert list(registry.all_task_groups()) == ["gci"]
    assert registry.task_groups("gci").views == ("domain", "general", "integrated")
    assert list(load_suite("science", limit_per_task=1)) == registry.get_suite("science")
    assert load_task("gci_events_integrated", split="test", limit=1)[0].task == "gci_events_integrated"


def test_the_data_layer_imports_no_plugin_until_a_lookup():
    """The circle this registry breaks: loading → bundled → gci → bundled. Importing the data
    layer imports neither plug-in; the first lookup imports both."""
    code = ("import sys; import aptune.data, aptune.data.loading, aptune.data.registry as r; "
            "before = sorted(m for m in sys.modules if m.startswith(('aptune.benchmarks', 'aptune.data.bundled'))); "
            "r.tasks(); "
            "after = sorted(m for m in sys.modules if m in ('aptune.benchmarks.gci', 'aptune.data.bundled')); "
            "print(before, after)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[] ['aptune.benchmarks.gci', 'aptune.data.bundled']"


def test_entry_point_plugins_load_after_the_builtins_and_builtins_are_not_loaded_twice(monkeypatch: pytest.MonkeyPatch):
    from importlib.metadata import EntryPoint

    import aptune.data.registry as module

    eps = [EntryPoint("zz_toy", f"{__name__}:toy_plugin", module.ENTRY_POINT_GROUP),
           EntryPoint("again", f"{__name__}:toy_plugin", module.ENTRY_POINT_GROUP)]  # same as a built-in here
    monkeypatch.setattr(module, "entry_points", lambda group: [ep for ep in eps if ep.group == group])
    CALLS.clear()
    reg = Registry(plugins=(f"{__name__}:toy_plugin",))
    assert list(reg.tasks()) == ["toy_a", "toy_b"] and CALLS == ["toy"]
    eps[0] = EntryPoint("zz_toy", f"{__name__}:extra_plugin", module.ENTRY_POINT_GROUP)
    reg = Registry(plugins=(f"{__name__}:toy_plugin",))
    assert list(reg.tasks()) == ["toy_a", "toy_b", "extra"]


def extra_plugin(reg: Registry) -> None:
    reg.register_task(ToyTask("extra"))
