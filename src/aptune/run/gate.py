"""The general-capability gate: keep a round only if it did not cost general skill.

Each round is compared with the starting model (round 0) on the same general items — by
default the general tasks' dev items (``general_dev``), never the test items the run is then
reported by. Two rules (``rounds.gate``):

- ``paired`` (the default): roll the round back when general accuracy fell by more than
  ``rounds.general_tolerance`` **and** the paired 95% bootstrap interval of the change lies
  wholly below zero — the items lost outnumber the items gained by more than resampling noise.
  With 20 dev items per task a point rule fires on a swing of two or three items (results 25
  in docs/results.md: a 2.1-point drop, 3 of 140 items, rolled back a round whose test items
  showed no loss); the paired rule asks the same items for evidence first.
- ``drop``: roll back whenever the point drop exceeds the tolerance (the rule runs started
  before ``rounds.gate`` existed keep).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from aptune.evaluate.metrics import Interval

GateRule = Literal["paired", "drop"]


@dataclass(frozen=True)
class GateVerdict:
    """The gate's answer for one round: roll back or keep, the sentence that says why, and the
    paired change it read (None under ``drop``, or when the round has no item rows)."""

    rolled_back: bool
    reason: str
    change: Interval | None = None


def gate_view(summary: dict[str, Any]) -> tuple[str | None, str]:
    """Which evaluated view the gate reads, and how the decision names its items: the general
    dev items where the run has them, else (``general_dev.tasks: []``, or a run started before
    that view existed) the general test items, said as such."""
    if "general_dev" in summary:
        return "general_dev", "general dev items"
    if "general" in summary:
        return "general", "general TEST items (no general_dev)"
    return None, ""


def _points(x: float) -> str:
    return f"{100 * x:+.1f}"


def general_gate(rule: GateRule, tolerance: float, items: str, drop: float, change: Interval | None) -> GateVerdict:
    """Decide one round from its general accuracy ``drop`` (round 0 minus now, a fraction) and,
    for the ``paired`` rule, the paired change (now minus round 0) on the same ``items``."""
    said = f"general accuracy on the {items} fell {100 * drop:.1f} points"
    tol = f"tolerance {100 * tolerance:.1f}"
    if drop <= tolerance:
        return GateVerdict(False, f"within the general-capability tolerance ({items})", change)
    if rule == "drop" or change is None:
        why = "" if rule == "drop" else " (no item rows to pair: point rule)"
        return GateVerdict(True, f"general-capability gate: {said} ({tol}){why}; round rolled back", change)
    interval = f"[95% paired CI {_points(change.low)}, {_points(change.high)}, n = {change.n}]"
    if change.high < 0:
        return GateVerdict(True, f"general-capability gate: {said} {interval} ({tol}; the interval excludes "
                                 "no change); round rolled back", change)
    return GateVerdict(False, f"general accuracy on the {items} fell {100 * drop:.1f} points {interval}, "
                              f"more than the {tol} but within resampling noise (the interval includes no "
                              "change); round kept", change)
