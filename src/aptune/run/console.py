"""What a run prints while it works: where and how it computes, a header per stage, one line
per finished round (the paired change against the starting model, with its interval), and
the closing table — sized to fit a 100-column terminal.
"""

from __future__ import annotations

import time
from typing import Any

from aptune.evaluate.metrics import Interval
from aptune.run.driver import Run
from aptune.run.evaluation import paired_change
from aptune.run.run_dir import STAGES

#: the closing table stays within this many columns, whatever the terminal's width
TABLE_WIDTH = 100


def _delta(iv: Interval | None) -> str:
    return "–" if iv is None else f"{100 * iv.value:+.1f} [{100 * iv.low:+.1f}, {100 * iv.high:+.1f}]"


def _acc(summary: dict[str, Any], view: str) -> str:
    return f"{100 * summary[view]['accuracy']:.1f}" if view in summary else "–"


class RunConsole:
    """Prints a run's progress to a rich console (``aptune run``)."""

    def __init__(self, run: Run, console: Any) -> None:
        self.run = run
        self.console = console
        self._started = time.perf_counter()

    def start(self) -> None:
        rt = self.run.dir.manifest().get("runtime", {})
        cfg = self.run.cfg
        self.console.print(
            f"aptune run {cfg.name}: model {cfg.model.name} on {rt.get('device', '?')} ({rt.get('device_name', '?')}), "
            f"weights {rt.get('weights', '?')}, precision {rt.get('precision', '?')} (asked: {cfg.precision}), seed {cfg.seed}, "
            f"up to {cfg.rounds.max_rounds} round(s) -> {self.run.dir.root}",
            highlight=False, soft_wrap=True)

    def stage(self, round_index: int, stage: str) -> None:
        what = ("evaluate the starting model on the domain, general and dev views" if round_index == 0
                else STAGES[stage].summary)
        self.console.print(f"[bold]round {round_index} · {stage}[/bold] — {what}", highlight=False, soft_wrap=True)

    def round_done(self, round_index: int, decision: dict[str, Any]) -> None:
        verdict = "accepted" if decision.get("accepted") else "not accepted"
        if not self.run.dir.is_done(round_index, "eval"):
            self.console.print(f"round {round_index}: {verdict} — {decision.get('reason', '')}", highlight=False)
            return
        change = paired_change(self.run.dir, round_index, seed=self.run.cfg.seed)
        self.console.print(
            f"round {round_index}: domain {_delta(change.get('domain'))} · general {_delta(change.get('general'))} "
            f"points vs round 0 (paired, 95% CI) · {verdict} — {decision.get('reason', '')}",
            highlight=False, soft_wrap=True)

    def finish(self, decision: dict[str, Any]) -> None:
        """The per-round table (accuracy %, and the paired change vs round 0), then why it stopped."""
        from rich.table import Table

        run_dir = self.run.dir
        table = Table(title=f"{self.run.cfg.name}: accuracy % and change vs round 0 in points [95% CI]",
                      width=TABLE_WIDTH, title_justify="left")
        for col in ("round", "domain", "Δ domain", "general", "Δ general", "dev", "decision"):
            table.add_column(col, no_wrap=col != "decision")
        rounds = [r for r in run_dir.rounds_on_disk() if run_dir.is_done(r, "eval")]
        for r in rounds:
            summary = run_dir.read_output(r, "eval")["summary"]
            change = paired_change(run_dir, r, seed=self.run.cfg.seed) if r else {}
            if r == 0:
                verdict = "start"
            elif run_dir.is_done(r, "decide"):
                verdict = "accepted" if run_dir.read_output(r, "decide")["accepted"] else "rolled back"
            else:
                verdict = "–"
            table.add_row(str(r), _acc(summary, "domain"), _delta(change.get("domain")) if r else "",
                          _acc(summary, "general"), _delta(change.get("general")) if r else "",
                          _acc(summary, "dev"), verdict)
        self.console.print(table)
        self.console.print(f"stopped: {decision.get('reason', 'done')} ({time.perf_counter() - self._started:.0f} s)",
                           highlight=False)
