"""The compare folder: the one place that knows its file names and layout::

    OUT/compare.json                       the resolved compare config (a rerun must match it)
    OUT/<method>/seed-<s>/                 one ordinary run directory per (method, seed)
    OUT/<method>/seed-<s>/method.json      the method's settings that run was started with
    OUT/<method>/seed-<s>/compare_run.json written when that run finished: wall time, stop reason
    OUT/compare.md, compare.html, compare-results.json, plots/
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aptune.run.run_dir import RunDir


@dataclass(frozen=True)
class CompareDir:
    root: Path

    @property
    def meta(self) -> Path:
        return self.root / "compare.json"

    def run_dir(self, method: str, seed: int) -> RunDir:
        return RunDir(self.root / method / f"seed-{seed}")

    def seed_runs(self, method: str) -> list[RunDir]:
        """The method's run folders present on disk, by seed."""
        found = [p for p in (self.root / method).glob("seed-*") if p.name.removeprefix("seed-").isdigit()]
        return [RunDir(p) for p in sorted(found, key=lambda p: int(p.name.removeprefix("seed-")))]

    @staticmethod
    def method_file(run: RunDir) -> Path:
        return run.root / "method.json"

    @staticmethod
    def finished_marker(run: RunDir) -> Path:
        return run.root / "compare_run.json"

    @property
    def report_path(self) -> Path:
        return self.root / "compare.md"

    @property
    def report_html(self) -> Path:
        return self.root / "compare.html"

    @property
    def results_json(self) -> Path:
        return self.root / "compare-results.json"

    @property
    def plots_dir(self) -> Path:
        return self.root / "plots"
