"""The ``aptune compare`` report: methods side by side, each against the untrained model.

Read back entirely from the compare folder (``aptune.methods.compare`` lays it out), so it can
be redrawn at any time, also while runs are missing. For every method:

- the **final model** is its last accepted round (round 0 for ``base``, or when no round was
  accepted); every round that trained counts towards its cost;
- domain held-out and general accuracy pool all items of the view over all seeds; the 95%
  interval is a percentile bootstrap over items, each item's correctness averaged over the
  seeds that evaluated it;
- Δ against ``base`` is paired: for each seed, the final model and that run's round 0 (the
  untrained model, on the same items) are compared item by item; an item's change is averaged
  over seeds, and the interval resamples items (``paired_bootstrap_delta``);
- beside every multiple-choice accuracy sits the majority-position baseline (always answering
  the most common gold position of those items) and, for the domain, the predicted-position
  histogram, so that a position prior cannot pass for a gain;
- beside accuracy, the paired change in the **log-likelihood of the gold answer** (nats per
  item): a small model's accuracy can hold while its language model degrades, because every
  choice of an item loses likelihood together. It is the forgetting signal accuracy misses.
"""

from __future__ import annotations

import datetime as dt
import html
import logging
from collections import Counter, defaultdict
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aptune.evaluate.metrics import bootstrap_mean, paired_bootstrap_delta
from aptune.evaluate.paired import gold_loglik
from aptune.io import read_json, read_jsonl, write_json_atomic, write_text_atomic

log = logging.getLogger(__name__)

VIEWS = ("domain", "general")


@dataclass
class SeedRun:
    """One (method, seed) run directory, reduced to what the report needs."""

    method: str
    seed: int
    root: Path
    final_round: int
    # view -> (task, id) -> correct, for round 0 and for the final model
    before: dict[str, dict[tuple[str, str], bool]] = field(default_factory=dict)
    after: dict[str, dict[tuple[str, str], bool]] = field(default_factory=dict)
    gold_hist: dict[str, Counter] = field(default_factory=dict)  # "view" and "view/task" -> gold positions
    pred_hist: dict[str, Counter] = field(default_factory=dict)  # of the final model
    # view -> (task, id) -> log p(gold answer), multiple-choice items, round 0 and final model
    loglik_before: dict[str, dict[tuple[str, str], float]] = field(default_factory=dict)
    loglik_after: dict[str, dict[tuple[str, str], float]] = field(default_factory=dict)
    train: dict[str, float] = field(default_factory=dict)
    train_set: int = 0  # pairs or SFT items, summed over rounds
    rounds_trained: int = 0
    wall_s: float | None = None
    wall_partial: bool = False  # resumed, and the earlier invocations were not timed: a lower bound
    finished: bool = False
    provenance: dict[str, Any] = field(default_factory=dict)


Views = dict[str, dict[tuple[str, str], Any]]  # view -> (view-prefixed task, item id) -> value


def _read_views(pred_path: Path) -> tuple[Views, Views]:
    """One pass over a round's predictions: per view, each item's correctness, and the summed
    log-prob of its gold choice (multiple-choice items only)."""
    correct: Views = defaultdict(dict)
    loglik: Views = defaultdict(dict)
    for row in read_jsonl(pred_path):
        view, key = row["task"].split("/", 1)[0], (row["task"], str(row["id"]))
        correct[view][key] = bool(row["correct"])
        if (value := gold_loglik(row)) is not None:
            loglik[view][key] = value
    return dict(correct), dict(loglik)


def _histograms(metrics: dict[str, Any], key: str) -> dict[str, Counter]:
    out: dict[str, Counter] = {}
    for task, tm in metrics.get("tasks", {}).items():
        pos = tm.get("positions")
        if not pos:
            continue
        hist = Counter({int(k): v for k, v in pos[key].items()})
        out[task] = hist
        out.setdefault(task.split("/", 1)[0], Counter()).update(hist)
    return out


def final_round(root: Path) -> int:
    """The last round that was accepted and evaluated; 0 when there is none."""
    best = 0
    for rd in root.glob("round-*"):
        r = rd.name.split("-", 1)[1]
        if not r.isdigit() or int(r) == 0:
            continue
        decision, metrics = rd / "decision.json", rd / "eval" / "metrics.json"
        if decision.exists() and metrics.exists() and read_json(decision).get("accepted"):
            best = max(best, int(r))
    return best


def load_seed_run(method: str, seed: int, root: Path) -> SeedRun | None:
    """None until the run has finished (``compare_run.json``): a half-done run is no result."""
    if not (root / "compare_run.json").exists() or not (root / "round-0" / "eval" / "metrics.json").exists():
        return None
    r = final_round(root)
    run = SeedRun(method, seed, root, r)
    run.before, run.loglik_before = _read_views(root / "round-0" / "eval" / "predictions.jsonl")
    run.after, run.loglik_after = _read_views(root / f"round-{r}" / "eval" / "predictions.jsonl")
    run.gold_hist = _histograms(read_json(root / "round-0" / "eval" / "metrics.json"), "gold_histogram")
    run.pred_hist = _histograms(read_json(root / f"round-{r}" / "eval" / "metrics.json"), "predicted_histogram")
    totals: Counter = Counter()
    for result in sorted(root.glob("round-*/train/train_result.json")):
        tr = read_json(result)
        totals.update({"steps": tr["steps"], "examples": tr["examples"], "tokens": tr["tokens"], "train_s": tr["wall_s"]})
        run.rounds_trained += 1
    run.train = dict(totals)
    manifest = read_json(root / "manifest.json") if (root / "manifest.json").exists() else {}
    run.provenance = manifest.get("provenance", {})
    run.train_set = sum(int(v.get("pairs", 0)) for k, v in manifest.get("stages", {}).items() if k.endswith("/pairs"))
    marker = root / "compare_run.json"
    if marker.exists():
        run.finished = True
        run.wall_s, run.wall_partial = run_wall(read_json(marker), manifest.get("stages", {}))
    return run


def run_wall(marker: dict[str, Any], stages: dict[str, dict[str, Any]]) -> tuple[float, bool]:
    """A finished run's wall time, and whether that figure misses part of the run.

    Stages record their own ``seconds``, so a run resumed over several invocations still sums to
    its whole cost. Runs from before stages were timed have only the last invocation's wall time
    (``compare_run.json``); when some stage finished before that invocation began, the run was
    resumed and the figure is a lower bound."""
    if stages and all("seconds" in st for st in stages.values()):
        return float(sum(st["seconds"] for st in stages.values())), False
    wall = float(marker["wall_s"])
    try:
        began = dt.datetime.fromisoformat(marker["finished"]) - dt.timedelta(seconds=wall + 1)
        earlier = [dt.datetime.fromisoformat(st["finished"]) for st in stages.values()
                   if "copied_from" not in st and "finished" in st]
    except (KeyError, ValueError):
        return wall, False
    return wall, any(t < began for t in earlier)


# --------------------------------------------------------------------------- aggregation
@dataclass
class Stat:
    """An accuracy or change pooled over seeds: value and 95% interval (fractions), n items."""

    value: float
    low: float
    high: float
    n: int

    def pct(self, signed: bool = False) -> str:
        if self.n == 0 or np.isnan(self.value):
            return "–"
        f = "+.1f" if signed else ".1f"
        return f"{100 * self.value:{f}} [{100 * self.low:{f}}, {100 * self.high:{f}}]"

    def nats(self) -> str:
        """A log-likelihood change, in nats, with its interval."""
        if self.n == 0 or np.isnan(self.value):
            return "–"
        return f"{self.value:+.2f} [{self.low:+.2f}, {self.high:+.2f}]"

    def to_dict(self) -> dict[str, float]:
        return {"value": self.value, "low": self.low, "high": self.high, "n": self.n}


NAN = Stat(float("nan"), float("nan"), float("nan"), 0)


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
                       seed: int = 0) -> tuple[Stat, Stat]:
    """Pooled accuracy of the final models and its paired change against round 0 (same items);
    ``tasks``: one view-prefixed task name or several, pooled (default: the whole view)."""
    after, before = _item_means(runs, view, {tasks} if isinstance(tasks, str) else tasks)
    if not after:
        return NAN, NAN
    acc = bootstrap_mean(after, seed=seed)
    delta = paired_bootstrap_delta(after, before, seed=seed)
    return Stat(acc.value, acc.low, acc.high, len(after)), Stat(delta.value, delta.low, delta.high, len(after))


def loglik_delta(runs: list[SeedRun], view: str, seed: int = 0) -> Stat:
    """Paired change of the gold answer's log-likelihood (nats per item) against round 0, each
    item's change averaged over the seeds that evaluated it; NAN without multiple-choice items."""
    change: dict[tuple[str, str], list[float]] = defaultdict(list)
    for run in runs:
        a, b = run.loglik_after.get(view, {}), run.loglik_before.get(view, {})
        for key in a.keys() & b.keys():
            change[key].append(a[key] - b[key])
    if not change:
        return NAN
    per_item = [float(np.mean(change[k])) for k in sorted(change)]
    iv = bootstrap_mean(per_item, seed=seed)
    return Stat(iv.value, iv.low, iv.high, len(per_item))


def _majority(runs: list[SeedRun], *keys: str) -> float | None:
    """Accuracy of always answering the most common gold position of the items under ``keys``
    (a view, "view/task" names, or several pooled)."""
    hist: Counter = Counter()
    for run in runs:
        for key in keys:
            hist.update(run.gold_hist.get(key, Counter()))
    total = sum(hist.values())
    return max(hist.values()) / total if total else None


def _pred_positions(runs: list[SeedRun], key: str) -> str:
    hist: Counter = Counter()
    for run in runs:
        hist.update(run.pred_hist.get(key, Counter()))
    total = sum(hist.values())
    if not total:
        return "–"
    return " ".join(f"{chr(65 + k)}:{100 * v / total:.0f}%" for k, v in sorted(hist.items()))


def view_tasks(runs: list[SeedRun], view: str) -> list[str]:
    """The view-prefixed task names the runs evaluated in ``view`` (e.g. ``general/piqa``)."""
    return sorted({k[0] for run in runs for k in run.before.get(view, {})})


def _gci_cell_tasks(runs: list[SeedRun]) -> dict[tuple[str, str], tuple[str, set[str]]]:
    """(GCI group, GCI view) -> (the run's view, the "view/task" names it evaluated for that cell);
    a GCI task may sit in the run's domain or general view; empty without GCI tasks."""
    from aptune.data.gci import GCI_VIEWS

    evaluated = {view: set(view_tasks(runs, view)) for view in VIEWS}
    cells: dict[tuple[str, str], tuple[str, set[str]]] = {}
    for group, views in GCI_VIEWS.items():
        for gci_view, names in views.items():
            for view, present in evaluated.items():
                wanted = {f"{view}/{name}" for name in names} & present
                if wanted:
                    cells[(group, gci_view)] = (view, wanted)
    return cells


def gci_cells(runs: list[SeedRun]) -> dict[tuple[str, str], tuple[Stat, Stat]]:
    """(GCI group, GCI view) -> pooled accuracy and Δ over that cell's tasks."""
    return {cell: accuracy_and_delta(runs, view, wanted) for cell, (view, wanted) in _gci_cell_tasks(runs).items()}


def gci_majority(runs: list[SeedRun]) -> dict[tuple[str, str], float | None]:
    """(GCI group, GCI view) -> the majority-position baseline of that cell's pooled items."""
    return {cell: _majority(runs, *sorted(wanted)) for cell, (_, wanted) in _gci_cell_tasks(runs).items()}


@dataclass
class MethodSummary:
    method: str
    kind: str
    seeds: list[int]
    finished: int
    domain: Stat
    domain_delta: Stat
    general: Stat
    general_delta: Stat
    domain_loglik_delta: Stat
    general_loglik_delta: Stat
    general_macro: float
    general_macro_delta: float
    per_task: dict[str, tuple[Stat, Stat]]
    domain_per_task: dict[str, tuple[Stat, Stat]]
    gci: dict[tuple[str, str], tuple[Stat, Stat]]
    gci_majority: dict[tuple[str, str], float | None]
    domain_majority: float | None
    general_majority: float | None
    task_majority: dict[str, float | None]
    domain_predicted: str
    train: dict[str, float]
    train_set: int
    rounds_trained: int
    wall_s: float
    wall_partial: bool  # some seed's wall time misses an untimed earlier invocation (lower bound)
    per_seed: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method, "kind": self.kind, "seeds": self.seeds, "finished_runs": self.finished,
            "domain": self.domain.to_dict(), "domain_delta": self.domain_delta.to_dict(),
            "general": self.general.to_dict(), "general_delta": self.general_delta.to_dict(),
            "domain_loglik_delta": self.domain_loglik_delta.to_dict(),
            "general_loglik_delta": self.general_loglik_delta.to_dict(),
            "general_macro": self.general_macro, "general_macro_delta": self.general_macro_delta,
            "per_task": {t: {"acc": a.to_dict(), "delta": d.to_dict()} for t, (a, d) in self.per_task.items()},
            "domain_per_task": {t: {"acc": a.to_dict(), "delta": d.to_dict()}
                                for t, (a, d) in self.domain_per_task.items()},
            "gci": {f"{g}/{v}": {"acc": a.to_dict(), "delta": d.to_dict()} for (g, v), (a, d) in self.gci.items()},
            "gci_majority_baseline": {f"{g}/{v}": m for (g, v), m in self.gci_majority.items()},
            "domain_majority_baseline": self.domain_majority, "general_majority_baseline": self.general_majority,
            "task_majority_baseline": self.task_majority, "domain_predicted_positions": self.domain_predicted,
            "train": self.train, "train_set": self.train_set, "rounds_trained": self.rounds_trained,
            "wall_s": self.wall_s, "wall_partial": self.wall_partial, "per_seed": self.per_seed,
        }


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
    return MethodSummary(
        method=method, kind=kind, seeds=[r.seed for r in runs], finished=sum(r.finished for r in runs),
        domain=domain, domain_delta=domain_delta, general=general, general_delta=general_delta,
        domain_loglik_delta=loglik_delta(runs, "domain"), general_loglik_delta=loglik_delta(runs, "general"),
        general_macro=float(np.mean([a.value for a, _ in valid])) if valid else float("nan"),
        general_macro_delta=float(np.mean([d.value for _, d in valid])) if valid else float("nan"),
        per_task=per_task, domain_per_task=domain_per_task, gci=gci_cells(runs), gci_majority=gci_majority(runs),
        domain_majority=_majority(runs, "domain"), general_majority=_majority(runs, "general"),
        task_majority={t.split("/", 1)[1]: _majority(runs, t) for t in tasks + domain_tasks},
        domain_predicted=_pred_positions(runs, "domain"),
        # cost per seed (mean over seeds), so methods with different seed counts compare
        train={k: v / n_seeds for k, v in train.items()},
        train_set=round(sum(r.train_set for r in runs) / n_seeds),
        rounds_trained=max((r.rounds_trained for r in runs), default=0),
        wall_s=sum(r.wall_s or 0.0 for r in runs) / n_seeds,
        wall_partial=any(r.wall_partial for r in runs),
        per_seed=per_seed,
    )


def collect(out: Path) -> tuple[dict[str, Any], list[MethodSummary], list[SeedRun]]:
    meta = read_json(out / "compare.json")
    summaries, all_runs = [], []
    for m in meta["methods"]:
        runs = [r for seed in meta["seeds"]
                if (r := load_seed_run(m["name"], seed, out / m["name"] / f"seed-{seed}")) is not None]
        all_runs += runs
        if runs:
            summaries.append(summarize(m["name"], m["kind"], runs))
    return meta, summaries, all_runs


# --------------------------------------------------------------------------- plots
def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
    return path


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both axes (higher is better on both)."""
    front = []
    for i, (x, y) in enumerate(points):
        dominated = any((x2 >= x and y2 >= y) and (x2 > x or y2 > y) for j, (x2, y2) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def plot_pareto(summaries: list[MethodSummary], path: Path) -> Path | None:
    """Domain change against general change, one point per method (95% intervals as bars)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [s for s in summaries if s.domain_delta.n and s.general_delta.n]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(7.6, 5.2), dpi=120)
    ax.axhline(0, color="#999", lw=0.8)
    ax.axvline(0, color="#999", lw=0.8)
    colours = plt.get_cmap("tab10")
    pts = []
    for i, s in enumerate(rows):
        x, y = 100 * s.general_delta.value, 100 * s.domain_delta.value
        pts.append((x, y))
        xerr = [[x - 100 * s.general_delta.low], [100 * s.general_delta.high - x]]
        yerr = [[y - 100 * s.domain_delta.low], [100 * s.domain_delta.high - y]]
        ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt="o", capsize=3, color=colours(i % 10), label=s.method)
        for ps in s.per_seed:
            if len(s.per_seed) > 1 and ps["domain_delta"]["n"]:
                ax.plot(100 * ps["general_delta"]["value"], 100 * ps["domain_delta"]["value"], ".",
                        color=colours(i % 10), alpha=0.45)
        ax.annotate(s.method, (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
    front = pareto_front(pts)
    if len(front) > 1:
        ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front], "--", color="#555", lw=1, label="Pareto front")
    ax.set_xlabel("Δ general accuracy vs base, points (paired 95% CI)")
    ax.set_ylabel("Δ domain held-out accuracy vs base, points")
    ax.set_title("domain gain vs general change (big dots: pooled over seeds; small: one seed)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_general_tasks(summaries: list[MethodSummary], path: Path) -> Path | None:
    """Δ accuracy per general task, grouped by task, one bar per trained method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [s for s in summaries if s.kind != "base" and s.per_task]
    tasks = sorted({t for s in rows for t in s.per_task})
    if not rows or not tasks:
        return None
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(tasks) + 2), 4.2), dpi=120)
    width = 0.8 / len(rows)
    for i, s in enumerate(rows):
        xs = [j + (i - (len(rows) - 1) / 2) * width for j in range(len(tasks))]
        vals = [100 * s.per_task[t][1].value if t in s.per_task else 0.0 for t in tasks]
        ax.bar(xs, vals, width, label=s.method)
    ax.axhline(0, color="#555", lw=0.8)
    ax.set_xticks(range(len(tasks)))
    ax.set_xticklabels(tasks, rotation=20, fontsize=8)
    ax.set_ylabel("Δ accuracy vs base, points")
    ax.set_title("general tasks: change against the untrained model", fontsize=9)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


# --------------------------------------------------------------------------- tables
def _pct(x: float | None) -> str:
    return "–" if x is None or np.isnan(x) else f"{100 * x:.1f}"


def _spct(x: float | None) -> str:
    return "–" if x is None or np.isnan(x) else f"{100 * x:+.1f}"


MAIN_HEADER = ["method", "seeds", "domain acc % [95% CI]", "domain majority-pos %", "Δ domain vs base [95% CI]",
               "general acc % [95% CI]", "general majority-pos %", "Δ general vs base [95% CI]",
               "general macro avg %", "Δ macro", "domain predicted positions"]
COST_HEADER = ["method", "kind", "adapter", "lr", "epochs/round", "batch", "rounds trained", "train set (pairs or items)",
               "examples processed", "train tokens", "optimizer steps", "train s", "run wall s"]


def main_rows(summaries: list[MethodSummary]) -> list[list[str]]:
    return [[s.method, ",".join(map(str, s.seeds)), s.domain.pct(), _pct(s.domain_majority), s.domain_delta.pct(True),
             s.general.pct(), _pct(s.general_majority), s.general_delta.pct(True), _pct(s.general_macro),
             _spct(s.general_macro_delta), s.domain_predicted] for s in summaries]


def task_table(summaries: list[MethodSummary], view: str = "general") -> tuple[list[str], list[list[str]]]:
    """Accuracy (Δ vs base) per task of ``view``, one row per method, then the majority baseline."""
    per = {s.method: s.per_task if view == "general" else s.domain_per_task for s in summaries}
    tasks = sorted({t for p in per.values() for t in p})
    header = ["method"] + [f"{_short(t)} acc % (Δ)" for t in tasks]
    rows = []
    for s in summaries:
        cells = [s.method]
        for t in tasks:
            acc, d = per[s.method].get(t, (NAN, NAN))
            cells.append("–" if not acc.n else f"{100 * acc.value:.1f} ({100 * d.value:+.1f})")
        rows.append(cells)
    if summaries:
        first = summaries[0]
        rows.append(["majority-position baseline"] + [_pct(first.task_majority.get(t)) for t in tasks])
        rows.append(["items per seed"] + [str(per[first.method][t][0].n) if t in per[first.method] else "–"
                                          for t in tasks])
    return header, rows


def gci_table(summaries: list[MethodSummary]) -> tuple[list[str], list[list[str]]] | None:
    """The GCI table: accuracy % [95% CI] and paired Δ per (group, view), one row per method."""
    from aptune.data.gci import GCI_VIEWS
    from aptune.data.gci import VIEWS as GCI_VIEW_NAMES

    cells = [(g, v) for g in GCI_VIEWS for v in GCI_VIEW_NAMES if any((g, v) in s.gci for s in summaries)]
    if not cells:
        return None
    header = ["method"] + [f"{g} / {v} acc % [95% CI] (Δ)" for g, v in cells]
    rows = []
    for s in summaries:
        row = [s.method]
        for cell in cells:
            acc, d = s.gci.get(cell, (NAN, NAN))
            row.append("–" if not acc.n else f"{acc.pct()} ({100 * d.value:+.1f} [{100 * d.low:+.1f}, {100 * d.high:+.1f}])")
        rows.append(row)
    first = summaries[0]
    rows.append(["majority-position baseline"] + [_pct(first.gci_majority.get(c)) for c in cells])
    rows.append(["items per seed"] + [str(first.gci[c][0].n) if c in first.gci else "–" for c in cells])
    return header, rows


LOGLIK_HEADER = ["method", "Δ domain acc [95% CI]", "Δ domain gold log-lik, nats/item [95% CI]",
                 "Δ general acc [95% CI]", "Δ general gold log-lik, nats/item [95% CI]", "items (domain / general)"]


def loglik_rows(summaries: list[MethodSummary]) -> list[list[str]]:
    return [[s.method, s.domain_delta.pct(True), s.domain_loglik_delta.nats(), s.general_delta.pct(True),
             s.general_loglik_delta.nats(), f"{s.domain_loglik_delta.n} / {s.general_loglik_delta.n}"]
            for s in summaries]


LOGLIK_NOTE = (
    "Paired change in log p(gold answer) — the summed log-probability of the gold choice's tokens, as scored — "
    "against the untrained model on the same items, averaged over seeds, 95% bootstrap over items. Accuracy only "
    "asks whether the gold choice still wins; a model can keep that ranking while its language model degrades "
    "(every choice losing likelihood together), which shows here first."
)


def _wall(seconds: float | None, partial: bool) -> str:
    """Wall seconds; "≥" marks a lower bound (a resumed run whose earlier part was not timed)."""
    if not seconds:
        return "–"
    return f"≥{seconds:.0f}" if partial else f"{seconds:.0f}"


def seed_rows(summaries: list[MethodSummary]) -> list[list[str]]:
    out = []
    for s in summaries:
        for ps in s.per_seed:
            st = lambda d, signed=False: Stat(**d).pct(signed)  # noqa: E731
            out.append([s.method, str(ps["seed"]), str(ps["final_round"]), st(ps["domain"]), st(ps["domain_delta"], True),
                        st(ps["general"]), st(ps["general_delta"], True),
                        str(int(ps["train"].get("steps", 0))), _wall(ps["wall_s"], ps.get("wall_partial", False))])
    return out


SEED_HEADER = ["method", "seed", "final round", "domain acc %", "Δ domain", "general acc %", "Δ general",
               "optimizer steps", "run wall s"]


def cost_rows(summaries: list[MethodSummary], methods: list[dict[str, Any]]) -> list[list[str]]:
    by_name = {m["name"]: m for m in methods}
    out = []
    for s in summaries:
        m = by_name.get(s.method, {})
        tr = m.get("train", {})
        t = s.train
        out.append([s.method, s.kind, m.get("adapter", "–"), f"{tr.get('lr', float('nan')):g}" if tr else "–",
                    str(tr.get("epochs", "–")), str(tr.get("batch_size", 0) * tr.get("grad_accum", 1)) if tr else "–",
                    str(s.rounds_trained), str(s.train_set), f"{t.get('examples', 0):.0f}", f"{t.get('tokens', 0):,.0f}",
                    f"{t.get('steps', 0):.0f}", f"{t.get('train_s', 0):.0f}", _wall(s.wall_s, s.wall_partial)])
    return out


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


NOTES = (
    "Final model = the method's last accepted round (base: the untrained model). Accuracy pools every item of "
    "the view over all seeds; Δ is paired: each seed's final model against that run's round 0 (the untrained model) "
    "on the same items, each item's change averaged over seeds, 95% percentile bootstrap over items. "
    "Majority-pos = accuracy of always answering the most common gold position of those items. "
    "Cost columns are per seed (mean over seeds), summed over the rounds that trained (rolled-back rounds included); "
    "examples/tokens count every epoch and, for preference methods, both sides of each pair. "
    "Run wall time sums the run's own stages (a shared round-0 evaluation is charged to the run that did it); "
    "≥ marks a run resumed before stages were timed, whose figure covers only its last invocation."
)


GCI_NOTE = (
    "Our offline re-construction of the GCI setting (aptune.data.gci), not the paper's data. Each cell pools its "
    "tasks' items: domain = legal knowledge, general = the same skill without legal content (the forgetting view), "
    "integrated = both at once. Δ is paired against the untrained model, 95% bootstrap over items."
)


def write_compare_report(out: str | Path) -> Path:
    """Write ``compare.md``, ``compare.html``, ``compare-results.json`` and ``plots/*.png``."""
    out = Path(out)
    meta, summaries, runs = collect(out)
    methods = _method_rows(meta, out)
    base = meta["base"]
    pareto = plot_pareto(summaries, out / "plots" / "pareto.png")
    tasks_png = plot_general_tasks(summaries, out / "plots" / "general_tasks.png")
    prov = next((r.provenance for r in runs if r.provenance), {})
    title = f"aptune compare `{meta['name']}` — {base['model']}" + (" (quick profile)" if meta.get("quick") else "")
    setting = (
        f"Domain pool: {', '.join(_short(t) for t in base['pool']['tasks'])} ({base['pool']['split']}, "
        f"limit {base['pool']['limit']}/task); domain held-out: {', '.join(_short(t) for t in base['domain_eval']['tasks'])} "
        f"({base['domain_eval']['split']}, limit {base['domain_eval']['limit']}/task); general: "
        f"{', '.join(_short(t) for t in base['general_eval']['tasks'])} ({base['general_eval']['split']}, limit "
        f"{base['general_eval']['limit']}/task). Seeds {', '.join(map(str, meta['seeds']))}. Prompt "
        f"{base['prompt']['template']}/{base['prompt']['mc_format']}, answer rule {base['mining']['mc_metric']}."
    )
    machine = ", ".join(f"{k} {v}" for k, v in _flat({k: prov[k] for k in ("versions", "python", "machine")
                                                       if k in prov}).items() if v is not None)
    missing = [f"{m['name']}/seed-{s}" for m in meta["methods"] for s in meta["seeds"]
               if not (out / m["name"] / f"seed-{s}" / "compare_run.json").exists()]
    th, tr = task_table(summaries)
    dh, dr = task_table(summaries, "domain")
    gci = gci_table(summaries)
    images = [(p, alt) for p, alt in ((pareto, "domain change against general change"),
                                      (tasks_png, "change per general task")) if p is not None]
    md = [f"# {title}", ""]
    if meta.get("description"):
        md += [meta["description"], ""]
    md += [setting, "", *_md_table(MAIN_HEADER, main_rows(summaries)), "", NOTES, ""]
    if gci:
        md += ["## GCI: group × view (domain / general / integrated)", "", GCI_NOTE, "", *_md_table(*gci), ""]
    md += ["## Likelihood of the gold answers", "", LOGLIK_NOTE, "", *_md_table(LOGLIK_HEADER, loglik_rows(summaries)), ""]
    md += ["## Domain tasks", "", *_md_table(dh, dr), ""]
    md += ["## General tasks", "", *_md_table(th, tr), ""]
    md += ["## Cost (per seed)", "", *_md_table(COST_HEADER, cost_rows(summaries, methods)), ""]
    md += ["## Per seed", "", *_md_table(SEED_HEADER, seed_rows(summaries)), ""]
    md += [f"![{alt}](plots/{p.name})" for p, alt in images]
    if missing:
        md += ["", f"Not finished yet: {', '.join(missing)}."]
    if machine:
        md += ["", f"Machine and versions: {machine}."]
    write_text_atomic(out / "compare.md", "\n".join(md) + "\n")
    imgs = "".join(f'<figure><img src="plots/{p.name}" alt="{html.escape(alt)}"><figcaption>{html.escape(alt)}'
                   "</figcaption></figure>" for p, alt in images)
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>" + html.escape(title.replace("`", "")) + "</title>"
        "<style>body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:4px 8px;font-size:13px}th{background:#f3f3f3}"
        "img{max-width:100%;border:1px solid #eee}p{max-width:70em}</style></head><body>"
        f"<h1>{html.escape(title.replace('`', ''))}</h1>"
        + (f"<p>{html.escape(meta['description'])}</p>" if meta.get("description") else "")
        + f"<p>{html.escape(setting)}</p>{_html_table(MAIN_HEADER, main_rows(summaries))}<p>{html.escape(NOTES)}</p>"
        + (f"<h2>GCI: group × view</h2><p>{html.escape(GCI_NOTE)}</p>{_html_table(*gci)}" if gci else "")
        + f"<h2>Likelihood of the gold answers</h2><p>{html.escape(LOGLIK_NOTE)}</p>"
        + _html_table(LOGLIK_HEADER, loglik_rows(summaries))
        + f"<h2>Domain tasks</h2>{_html_table(dh, dr)}"
        + f"<h2>General tasks</h2>{_html_table(th, tr)}"
        + f"<h2>Cost (per seed)</h2>{_html_table(COST_HEADER, cost_rows(summaries, methods))}"
        + f"<h2>Per seed</h2>{_html_table(SEED_HEADER, seed_rows(summaries))}{imgs}"
        + (f"<p>Not finished yet: {html.escape(', '.join(missing))}.</p>" if missing else "")
        + (f"<p>Machine and versions: {html.escape(machine)}.</p>" if machine else "")
        + "</body></html>\n"
    )
    write_text_atomic(out / "compare.html", page)
    write_json_atomic(out / "compare-results.json",
                      {"name": meta["name"], "seeds": meta["seeds"], "methods": [s.to_dict() for s in summaries],
                       "missing": missing, "provenance": prov})
    log.info("compare report written to %s", out / "compare.md")
    return out / "compare.md"


def _method_rows(meta: dict[str, Any], out: Path) -> list[dict[str, Any]]:
    """Adapter kind and train settings per method, read from its first run's manifest."""
    rows = []
    for m in meta["methods"]:
        manifests = sorted((out / m["name"]).glob("seed-*/manifest.json"))
        cfg = read_json(manifests[0])["config"] if manifests else {}
        rows.append({"name": m["name"], "adapter": cfg.get("adapter", {}).get("kind", "–") if m["kind"] != "base" else "none",
                     "train": cfg.get("train", {}) if m["kind"] != "base" else {}})
    return rows


def _short(task: str) -> str:
    """A data-file task by its file name; bundled names as they are."""
    return Path(task).name if "/" in task or "\\" in task else task


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
