"""The package's layers, checked from the source: lower layers never import upper ones, and no
two modules import each other at import time. Every ``import`` statement counts, including
those inside functions (a lazy import that climbs back up is still a climb)."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "aptune"

#: a module under the key may not import anything under the listed packages
FORBIDDEN = {
    "aptune.data": ("aptune.apt", "aptune.methods", "aptune.run", "aptune.compare", "aptune.report",
                    "aptune.benchmarks", "aptune.train", "aptune.evaluate", "aptune.cli"),
    "aptune.evaluate": ("aptune.apt", "aptune.methods", "aptune.run", "aptune.compare", "aptune.report",
                        "aptune.train", "aptune.cli"),
    "aptune.train": ("aptune.apt", "aptune.methods", "aptune.run", "aptune.compare", "aptune.report",
                     "aptune.evaluate", "aptune.cli"),
    "aptune.retrieval": ("aptune.apt", "aptune.methods", "aptune.run", "aptune.compare", "aptune.report", "aptune.cli"),
    "aptune.adapters": ("aptune.apt", "aptune.methods", "aptune.run", "aptune.compare", "aptune.report", "aptune.cli"),
    "aptune.apt": ("aptune.methods", "aptune.run", "aptune.compare", "aptune.report", "aptune.cli"),
    "aptune.run": ("aptune.methods", "aptune.compare", "aptune.report", "aptune.cli"),
    "aptune.methods": ("aptune.compare", "aptune.report", "aptune.cli"),
    "aptune.compare": ("aptune.report", "aptune.cli"),
    "aptune.report": ("aptune.cli",),
    "aptune.export": ("aptune.methods", "aptune.compare", "aptune.cli"),
    "aptune.inference": ("aptune.apt", "aptune.methods", "aptune.compare", "aptune.report", "aptune.train",
                         "aptune.cli"),
    "aptune.benchmarks": ("aptune.apt", "aptune.methods", "aptune.run", "aptune.compare", "aptune.report", "aptune.cli"),
}
#: modules at the package root below every layer above
BASE_MODULES = ("aptune.io", "aptune.distributed", "aptune.shapes", "aptune.packing", "aptune.provenance",
                "aptune.config_loader", "aptune.modeling")


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path, *, top_level_only: bool) -> set[str]:
    """Modules ``path`` imports (``from a.b import c`` counts as ``a.b`` and ``a.b.c``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    if top_level_only:  # statements run at import time, including those under `if`/`try`, not TYPE_CHECKING
        nodes = [n for stmt in tree.body for n in ast.walk(stmt)
                 if not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                 and not (isinstance(stmt, ast.If) and "TYPE_CHECKING" in ast.unparse(stmt.test))]
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            submodules = {f"{node.module}.{alias.name}" for alias in node.names} & set(MODULES)
            found.update(submodules or {node.module})
    return {name for name in found if name.startswith("aptune")}


def _under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_lower_layers_never_import_upper_ones():
    climbs = []
    for name, path in MODULES.items():
        rules = [banned for layer, banned in FORBIDDEN.items() if _under(name, layer)]
        if name in BASE_MODULES:
            rules.append(tuple(layer for layer in FORBIDDEN if layer != "aptune.data") + ("aptune.data",))
        for imported in _imports(path, top_level_only=False):
            for banned in (b for rule in rules for b in rule):
                if _under(imported, banned) and not _under(name, banned):
                    climbs.append(f"{name} imports {imported}")
    assert not climbs, "\n".join(sorted(set(climbs)))


def test_no_import_cycle_between_modules():
    """A depth-first walk over import-time imports between modules finds no cycle."""
    # a module's own parent packages are imported before it by Python itself: no edge to them
    graph = {name: {m for m in _imports(path, top_level_only=True)
                    if m in MODULES and m != name and not name.startswith(m + ".")}
             for name, path in MODULES.items()}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_every_module_imports():
    """Every module imports, one after another in a fresh interpreter: a cycle or a missing
    name that only shows at run time would fail here."""
    names = [n for n in MODULES if not n.endswith("__main__")]
    code = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"
    proc = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_layer_table_names_real_packages():
    for layer in FORBIDDEN:
        importlib.import_module(layer)
