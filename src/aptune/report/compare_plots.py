"""The compare report's figures: domain change against general change, and change per general task."""

from __future__ import annotations

from pathlib import Path

from aptune.io import write_figure_atomic
from aptune.report.compare_stats import MethodSummary


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
    return write_figure_atomic(path, fig)


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
    return write_figure_atomic(path, fig)
