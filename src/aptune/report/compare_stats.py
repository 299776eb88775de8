"""Per-method summaries of a compare folder: accuracies, paired changes and baselines.

For every method:

- the **final model** is its last accepted round (round 0 for ``base``, or when no round was
  accepted); every round that trained counts towards its cost;
- domain held-out and general accuracy pool all items of the view over all seeds; the 95%
  interval is a percentile bootstrap over items, each item's correctness averaged over the
  seeds that evaluated it;
- Δ against ``base`` is paired: for each seed, the final model and that run's round 0 (the
  untrained model, on the same items) are compared item by item; the interval resamples the
  seeds and then each drawn seed's items (``seed_item_delta``, a hierarchical bootstrap), so
  a change that holds for one training run only does not look certain;
- beside every multiple-choice accuracy sits the majority-position baseline (always answering
  the most common gold position of those items) and, for the domain, the predicted-position
  histogram, so that a position prior cannot pass for a gain; a final model that answers one
  option on most items of a task is named (``method_collapses``), and the pooled figures are
  given again without the tasks any method collapsed on (``without_tasks``);
- a suite that declares task groups in the task registry (the GCI suite: group × view) gets
  its accuracy and Δ per (group, view) cell, pooled over the cell's tasks (``group_cells``);
- beside accuracy, the paired change in the **log-likelihood of the gold answer** (nats per
  item): a small model's accuracy can hold while its language model degrades, because every
  choice of an item loses likelihood together. It is the forgetting signal accuracy misses.
"""

from __future__ import annotations

import dataclasses

from collections import Counter, defaultdict
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aptune.data.registry import TaskGroups, all_task_groups
from aptune.evaluate.metrics import (Interval, bootstrap_mean, format_positions, hierarchical_bootstrap_mean,
                                     position_letter)
from aptune.io import read_json
from aptune.compare.compare_dir import CompareDir
from aptune.compare.selection import chosen_methods, chosen_seeds
from aptune.report.compare_runs import VIEWS, SeedRun, load_seed_run


#: No items: what a cell without data shows ("–").
NAN = Interval.empty()


def _item_means(runs: list[SeedRun], view: str, tasks: Collection[str] | None = None) -> tuple[list[float], list[float]]:
    """Per item (keys in both round 0 and the final model of a seed): after and before,
    each averaged over the seeds that evaluated the item; items in sorted key order.
    ``tasks`` (view-prefixed names, e.g. ``general/piqa``) keeps only those tasks' items."""
    after: dict[tuple[str, str], list[float]] = defaultdict(list)
    before: dict[tuple[str, str], list[float]] = defaultdict(list)
    for run in runs:
        a, b = run.after.get(view, {}), run.before.get(view, {})
        for key in a.keys() & b.keys():
            if tasks is None or key[0] in tasks:
                after[key].append(float(a[key]))
                before[key].append(float(b[key]))
    keys = sorted(after)
    return [float(np.mean(after[k])) for k in keys], [float(np.mean(before[k])) for k in keys]


def accuracy_and_delta(runs: list[SeedRun], view: str, tasks: Collection[str] | str | None = None,
                       seed: int = 0) -> tuple[Interval, Interval]:
    """Pooled accuracy of the final models and its paired change against round 0 (same items);
    ``tasks``: one view-prefixed task name or several, pooled (default: the whole view). The
    change's interval resamples the training seeds as well as the items (``seed_item_delta``)."""
    wanted = {tasks} if isinstance(tasks, str) else tasks
    after, _ = _item_means(runs, view, wanted)
    if not after:
        return NAN, NAN
    return bootstrap_mean(after, seed=seed), seed_item_delta(runs, view, wanted, seed)


def seed_item_delta(runs: list[SeedRun], view: str, tasks: Collection[str] | None = None, seed: int = 0) -> Interval:
    """The final models' change against round 0, paired item by item within each seed, with a
    hierarchical bootstrap (seeds drawn with replacement, then each drawn seed's items): the
    interval carries the run-to-run variation of training, not only the item sampling; with
    one seed it is the paired item bootstrap. The point is the mean over seeds of each seed's
    change; ``n`` counts distinct items, as the accuracy's does."""
    groups, items = [], set()
    for run in sorted(runs, key=lambda r: r.seed):
        a, b = run.after.get(view, {}), run.before.get(view, {})
        keys = sorted(k for k in a.keys() & b.keys() if tasks is None or k[0] in tasks)
        if keys:
            groups.append([float(a[k]) - float(b[k]) for k in keys])
            items.update(keys)
    return dataclasses.replace(hierarchical_bootstrap_mean(groups, seed=seed), n=len(items))


def lost_and_gained(runs: list[SeedRun], view: str, seed: int = 0) -> tuple[Interval, Interval, float, float]:
    """Items right at round 0 and wrong in the final model (lost) and the reverse (gained):
    shares with 95% bootstrap intervals over items (each item's share averaged over the seeds
    that evaluated it, as the accuracy change is), and the mean count per seed."""
    lost: dict[tuple[str, str], list[float]] = defaultdict(list)
    gained: dict[tuple[str, str], list[float]] = defaultdict(list)
    for run in runs:
        a, b = run.after.get(view, {}), run.before.get(view, {})
        for key in a.keys() & b.keys():
            lost[key].append(float(b[key] and not a[key]))
            gained[key].append(float(a[key] and not b[key]))
    if not lost:
        return NAN, NAN, float("nan"), float("nan")
    keys = sorted(lost)
    n_seeds = max(len(runs), 1)
    return (bootstrap_mean([float(np.mean(lost[k])) for k in keys], seed=seed),
            bootstrap_mean([float(np.mean(gained[k])) for k in keys], seed=seed),
            sum(sum(v) for v in lost.values()) / n_seeds, sum(sum(v) for v in gained.values()) / n_seeds)


def loglik_delta(runs: list[SeedRun], view: str, seed: int = 0) -> Interval:
    """Paired change of the gold answer's log-likelihood (nats per item) against round 0, each
    item's change averaged over the seeds that evaluated it; NAN without multiple-choice items."""
    change: dict[tuple[str, str], list[float]] = defaultdict(list)
    for run in runs:
        a, b = run.loglik_after.get(view, {}), run.loglik_before.get(view, {})
        for key in a.keys() & b.keys():
            change[key].append(a[key] - b[key])
    if not change:
        return NAN
    return bootstrap_mean([float(np.mean(change[k])) for k in sorted(change)], seed=seed)


def _pooled(runs: list[SeedRun], histograms: str, *keys: str) -> Counter:
    """One position histogram (``histograms``: ``"gold_hist"`` or ``"pred_hist"``) pooled over
    the runs and the given keys (a view, "view/task" names, or several)."""
    hist: Counter = Counter()
    for run in runs:
        for key in keys:
            hist.update(getattr(run, histograms).get(key, Counter()))
    return hist


def _majority(runs: list[SeedRun], *keys: str) -> float | None:
    """Accuracy of always answering the most common gold position of the items under ``keys``
    (a view, "view/task" names, or several pooled)."""
    hist = _pooled(runs, "gold_hist", *keys)
    total = sum(hist.values())
    return max(hist.values()) / total if total else None


def _pred_positions(runs: list[SeedRun], key: str) -> str:
    return format_positions(_pooled(runs, "pred_hist", key))


#: A final model that answers one option on at least this share of a task's items has
#: collapsed onto a position: its accuracy there is that position's gold share, not the skill.
COLLAPSE_SHARE = 0.9
#: ... counted only on tasks with at least this many items (over the seeds), so that a handful
#: of items cannot raise it
COLLAPSE_MIN_ITEMS = 10


@dataclass(frozen=True)
class Collapse:
    """A method whose final models answer one option on most items of a task (pooled over seeds)."""

    method: str
    task: str  # view-prefixed, e.g. general/boolq
    position: int
    share: float  # of the task's predictions
    gold_share: float  # of the task's gold answers at that position: the accuracy it buys

    def describe(self) -> str:
        letter = position_letter(self.position)
        return (f"{self.method} on {self.task} ({letter} on {100 * self.share:.0f}% of items; "
                f"gold is {letter} on {100 * self.gold_share:.0f}%)")


def method_collapses(method: str, runs: list[SeedRun]) -> list[Collapse]:
    """Every task on which ``method``'s final models (``runs``, its seeds) put at least
    ``COLLAPSE_SHARE`` of their answers on one option, pooled over seeds: pooled accuracy can
    rise or fall by such a collapse alone (a two-option task whose gold is mostly one side),
    so the report names them."""
    tasks = sorted({task for run in runs for task in run.pred_hist if "/" in task})  # the bare view pools its tasks
    found = []
    for task in tasks:
        hist = _pooled(runs, "pred_hist", task)
        total = sum(hist.values())
        if total < COLLAPSE_MIN_ITEMS:
            continue
        position, count = hist.most_common(1)[0]
        if count / total >= COLLAPSE_SHARE:
            golds = _pooled(runs, "gold_hist", task)
            found.append(Collapse(method, task, position, count / total,
                                  golds.get(position, 0) / max(1, sum(golds.values()))))
    return found


def collapsed_tasks(collapses: Collection[Collapse], view: str) -> list[str]:
    """The view's tasks (view-prefixed) on which any method's final model collapsed."""
    return sorted({c.task for c in collapses if c.task.split("/", 1)[0] == view})


def without_tasks(runs: list[SeedRun], view: str, left_out: Collection[str]) -> tuple[Interval, Interval]:
    """The view's pooled accuracy and paired Δ with the ``left_out`` tasks excluded: the figure
    without the tasks on which some method collapsed, whose position prior alone moves the pool."""
    return accuracy_and_delta(runs, view, set(view_tasks(runs, view)) - set(left_out))  # none kept: NAN


def view_tasks(runs: list[SeedRun], view: str) -> list[str]:
    """The view-prefixed task names the runs evaluated in ``view`` (e.g. ``general/piqa``)."""
    return sorted({k[0] for run in runs for k in run.before.get(view, {})})


Cell = tuple[str, str]  # (group, view) of a suite's task-group declaration


def _cell_tasks(runs: list[SeedRun], groups: TaskGroups) -> dict[Cell, tuple[str, set[str]]]:
    """(group, view) of the declaration -> (the run's view, the "view/task" names it evaluated for
    that cell); a task may sit in the run's domain or general view; empty when the runs
    evaluated none of the suite's tasks."""
    evaluated = {view: set(view_tasks(runs, view)) for view in VIEWS}
    cells: dict[Cell, tuple[str, set[str]]] = {}
    for group, views in groups.groups.items():
        for group_view, names in views.items():
            for view, present in evaluated.items():
                wanted = {f"{view}/{name}" for name in names} & present
                if wanted:
                    cells[(group, group_view)] = (view, wanted)
    return cells


def group_cells(runs: list[SeedRun], groups: TaskGroups) -> dict[Cell, tuple[Interval, Interval]]:
    """(group, view) -> pooled accuracy and Δ over that cell's tasks."""
    return {cell: accuracy_and_delta(runs, view, wanted) for cell, (view, wanted) in _cell_tasks(runs, groups).items()}


def group_majority(runs: list[SeedRun], groups: TaskGroups) -> dict[Cell, float | None]:
    """(group, view) -> the majority-position baseline of that cell's pooled items."""
    return {cell: _majority(runs, *sorted(wanted)) for cell, (_, wanted) in _cell_tasks(runs, groups).items()}


@dataclass
class MethodSummary:
    method: str
    kind: str
    seeds: list[int]
    finished: int
    domain: Interval
    domain_delta: Interval
    general: Interval
    general_delta: Interval
    domain_loglik_delta: Interval
    general_loglik_delta: Interval
    general_macro: float
    general_macro_delta: float
    per_task: dict[str, tuple[Interval, Interval]]
    domain_per_task: dict[str, tuple[Interval, Interval]]
    # suite -> (group, view) -> (accuracy, Δ), for every suite that declares task groups
    groups: dict[str, dict[Cell, tuple[Interval, Interval]]]
    group_majority: dict[str, dict[Cell, float | None]]
    domain_majority: float | None
    general_majority: float | None
    task_majority: dict[str, float | None]
    domain_predicted: str
    collapses: list[Collapse]
    train: dict[str, float]
    train_set: int
    rounds_trained: int
    wall_s: float
    wall_partial: bool  # some seed's wall time misses an untimed earlier invocation (lower bound)
    per_seed: list[dict[str, Any]]
    # view -> (lost share, gained share, lost per seed, gained per seed) against round 0
    interference: dict[str, tuple[Interval, Interval, float, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """compare-results.json's entry; a suite's task groups under its name (e.g. ``gci``) and
        ``<suite>_majority_baseline``, cells as ``group/view``."""
        out: dict[str, Any] = {
            "method": self.method, "kind": self.kind, "seeds": self.seeds, "finished_runs": self.finished,
            "domain": self.domain.to_dict(), "domain_delta": self.domain_delta.to_dict(),
            "general": self.general.to_dict(), "general_delta": self.general_delta.to_dict(),
            "domain_loglik_delta": self.domain_loglik_delta.to_dict(),
            "general_loglik_delta": self.general_loglik_delta.to_dict(),
            "general_macro": self.general_macro, "general_macro_delta": self.general_macro_delta,
            "per_task": _acc_delta_dict(self.per_task), "domain_per_task": _acc_delta_dict(self.domain_per_task),
        }
        for suite, cells in self.groups.items():
            out[suite] = _acc_delta_dict({f"{g}/{v}": stats for (g, v), stats in cells.items()})
            out[f"{suite}_majority_baseline"] = {f"{g}/{v}": m for (g, v), m in self.group_majority[suite].items()}
        return out | {
            "domain_majority_baseline": self.domain_majority, "general_majority_baseline": self.general_majority,
            "task_majority_baseline": self.task_majority, "domain_predicted_positions": self.domain_predicted,
            "train": self.train, "train_set": self.train_set, "rounds_trained": self.rounds_trained,
            "wall_s": self.wall_s, "wall_partial": self.wall_partial, "per_seed": self.per_seed,
            "interference": {view: {"lost": lost.to_dict(), "gained": gained.to_dict(), "lost_per_seed": lost_n,
                                    "gained_per_seed": gained_n}
                             for view, (lost, gained, lost_n, gained_n) in self.interference.items()},
        }


def _acc_delta_dict(cells: dict[str, tuple[Interval, Interval]]) -> dict[str, dict[str, Any]]:
    return {name: {"acc": acc.to_dict(), "delta": delta.to_dict()} for name, (acc, delta) in cells.items()}


def summarize(method: str, kind: str, runs: list[SeedRun]) -> MethodSummary:
    domain, domain_delta = accuracy_and_delta(runs, "domain")
    general, general_delta = accuracy_and_delta(runs, "general")
    tasks = view_tasks(runs, "general")
    per_task = {t.split("/", 1)[1]: accuracy_and_delta(runs, "general", t) for t in tasks}
    domain_tasks = view_tasks(runs, "domain")
    domain_per_task = {t.split("/", 1)[1]: accuracy_and_delta(runs, "domain", t) for t in domain_tasks}
    valid = [(a, d) for a, d in per_task.values() if a.n]
    n_seeds = max(len(runs), 1)
    per_seed = []
    for run in runs:
        d, dd = accuracy_and_delta([run], "domain")
        g, gd = accuracy_and_delta([run], "general")
        per_seed.append({"seed": run.seed, "final_round": run.final_round, "domain": d.to_dict(),
                         "domain_delta": dd.to_dict(), "general": g.to_dict(), "general_delta": gd.to_dict(),
                         "train": run.train, "wall_s": run.wall_s, "wall_partial": run.wall_partial})
    train: Counter = Counter()
    for run in runs:
        train.update(run.train)
    declared = all_task_groups()
    return MethodSummary(
        method=method, kind=kind, seeds=[r.seed for r in runs], finished=sum(r.finished for r in runs),
        domain=domain, domain_delta=domain_delta, general=general, general_delta=general_delta,
        domain_loglik_delta=loglik_delta(runs, "domain"), general_loglik_delta=loglik_delta(runs, "general"),
        general_macro=float(np.mean([a.value for a, _ in valid])) if valid else float("nan"),
        general_macro_delta=float(np.mean([d.value for _, d in valid])) if valid else float("nan"),
        per_task=per_task, domain_per_task=domain_per_task,
        groups={suite: group_cells(runs, decl) for suite, decl in declared.items()},
        group_majority={suite: group_majority(runs, decl) for suite, decl in declared.items()},
        domain_majority=_majority(runs, "domain"), general_majority=_majority(runs, "general"),
        task_majority={t.split("/", 1)[1]: _majority(runs, t) for t in tasks + domain_tasks},
        domain_predicted=_pred_positions(runs, "domain"),
        collapses=method_collapses(method, runs),
        # cost per seed (mean over seeds), so methods with different seed counts compare
        train={k: v / n_seeds for k, v in train.items()},
        train_set=round(sum(r.train_set for r in runs) / n_seeds),
        rounds_trained=max((r.rounds_trained for r in runs), default=0),
        wall_s=sum(r.wall_s or 0.0 for r in runs) / n_seeds,
        wall_partial=any(r.wall_partial for r in runs),
        per_seed=per_seed,
        interference={view: lost_and_gained(runs, view) for view in ("domain", "general")},
    )


def collect(out: Path, seeds: Collection[int] | None = None,
            methods: Collection[str] | None = None) -> tuple[dict[str, Any], list[MethodSummary], list[SeedRun]]:
    """The compare folder's metadata and per-method summaries; ``seeds`` / ``methods`` restrict
    both to those of the folder's (the metadata returned lists only them)."""
    folder = CompareDir(out)
    meta = read_json(folder.meta)
    meta["seeds"] = chosen_seeds(meta["seeds"], seeds, out)
    names = chosen_methods([m["name"] for m in meta["methods"]], methods, out)
    meta["methods"] = [m for m in meta["methods"] if m["name"] in names]
    summaries, all_runs = [], []
    for m in meta["methods"]:
        runs = [r for seed in meta["seeds"]
                if (r := load_seed_run(m["name"], seed, folder.run_dir(m["name"], seed).root)) is not None]
        all_runs += runs
        if runs:
            summaries.append(summarize(m["name"], m["kind"], runs))
    return meta, summaries, all_runs
