"""The ``aptune compare`` report: methods side by side, each against the untrained model.

Read back entirely from the compare folder (``aptune.compare`` lays it out), so it can
be redrawn at any time, also while runs are missing. ``compare_runs`` reads each run,
``compare_stats`` pools them per method (how intervals, paired changes and baselines are
computed is documented there), ``compare_versus`` sets pairs of methods against each other,
``compare_plots`` draws the figures; this module lays out the tables and writes
``compare.md``, ``compare.html`` and ``compare-results.json``.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aptune.data.registry import TaskGroups, all_task_groups
from aptune.evaluate.metrics import Interval
from aptune.io import write_json_atomic, write_text_atomic
from aptune.model_config import model_label
from aptune.compare.compare_dir import CompareDir
from aptune.compare.selection import check_pairs, parse_pair
from aptune.report.compare_plots import plot_general_tasks, plot_pareto
from aptune.report.compare_runs import VIEWS, SeedRun
from aptune.report.compare_stats import (
    COLLAPSE_SHARE,
    NAN,
    Collapse,
    MethodSummary,
    collapsed_tasks,
    collect,
    without_tasks,
)
from aptune.report.compare_versus import (
    PRIMARY_HEADER,
    PRIMARY_NOTE,
    VERSUS_HEADER,
    VERSUS_NOTE,
    primary_rows,
    report_pairs,
    versus,
    versus_rows,
)
from aptune.train.config import LOSS_ROSE_MARGIN

log = logging.getLogger(__name__)


def _pct(x: float | None) -> str:
    return "–" if x is None or np.isnan(x) else f"{100 * x:.1f}"


def _spct(x: float | None) -> str:
    return "–" if x is None or np.isnan(x) else f"{100 * x:+.1f}"


MAIN_HEADER = ["method", "seeds", "domain acc % [95% CI]", "domain majority-pos %", "Δ domain vs base [95% CI]",
               "general acc % [95% CI]", "general majority-pos %", "Δ general vs base [95% CI]",
               "general macro avg %", "Δ macro", "domain predicted positions"]
COST_HEADER = ["method", "kind", "adapter", "lr", "epochs/round", "batch", "rounds trained", "train set (pairs or items)",
               "examples processed", "train tokens", "optimizer steps", "train s", "of which reference s",
               "peak train RSS GB", "run wall s"]


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
        rows.append(["distinct items (first row's seeds)"] + [str(per[first.method][t][0].n) if t in per[first.method] else "–"
                                          for t in tasks])
    return header, rows


def group_table(summaries: list[MethodSummary], groups: TaskGroups) -> tuple[list[str], list[list[str]]] | None:
    """A suite's task-group table (e.g. GCI: group × view): accuracy % [95% CI] and paired Δ per
    (group, view) cell, one row per method; None when no method evaluated any of its tasks."""
    cells = [(g, v) for g, v, _ in groups.cells() if any((g, v) in s.groups.get(groups.suite, {}) for s in summaries)]
    if not cells:
        return None
    header = ["method"] + [f"{g} / {v} acc % [95% CI] (Δ)" for g, v in cells]
    rows = []
    for s in summaries:
        row = [s.method]
        for cell in cells:
            acc, d = s.groups.get(groups.suite, {}).get(cell, (NAN, NAN))
            row.append("–" if not acc.n else f"{acc.pct()} ({d.format(signed=True)})")
        rows.append(row)
    first = summaries[0]
    got, majority = first.groups.get(groups.suite, {}), first.group_majority.get(groups.suite, {})
    rows.append(["majority-position baseline"] + [_pct(majority.get(c)) for c in cells])
    rows.append(["distinct items (first row's seeds)"] + [str(got[c][0].n) if c in got else "–" for c in cells])
    return header, rows


def group_tables(summaries: list[MethodSummary]) -> list[tuple[TaskGroups, list[str], list[list[str]]]]:
    """Every task-group table the registry's suites declare and the summaries have cells for."""
    return [(decl, *table) for decl in all_task_groups().values() if (table := group_table(summaries, decl))]


LOGLIK_HEADER = ["method", "Δ domain acc [95% CI]", "Δ domain gold log-lik, nats/item [95% CI]",
                 "Δ general acc [95% CI]", "Δ general gold log-lik, nats/item [95% CI]", "items (domain / general)"]


def loglik_rows(summaries: list[MethodSummary]) -> list[list[str]]:
    return [[s.method, s.domain_delta.pct(True), s.domain_loglik_delta.nats(), s.general_delta.pct(True),
             s.general_loglik_delta.nats(), f"{s.domain_loglik_delta.n} / {s.general_loglik_delta.n}"]
            for s in summaries]


INTERFERENCE_HEADER = ["method", "domain lost % [95% CI]", "domain gained % [95% CI]", "general lost % [95% CI]",
                       "general gained % [95% CI]", "items lost / gained per seed (domain; general)"]
INTERFERENCE_NOTE = (
    "Items the untrained model answered right that the final model answers wrong (lost) and the reverse (gained), "
    "as a share of the items, each item's share averaged over seeds, 95% bootstrap over items. Forgetting item by "
    "item: an average that rises can still lose items, and a method that trades many items for a few more shows "
    "here, not in the accuracy change."
)


def interference_rows(summaries: list[MethodSummary]) -> list[list[str]]:
    rows = []
    for s in summaries:
        cells = [s.method]
        counts = []
        for view in ("domain", "general"):
            lost, gained, lost_n, gained_n = s.interference.get(view, (NAN, NAN, float("nan"),
                                                                       float("nan")))
            cells += [lost.pct(), gained.pct()]
            counts.append(f"{lost_n:.1f} / {gained_n:.1f}" if lost.n else "–")
        rows.append(cells + ["; ".join(counts)])
    return rows


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
            st = lambda d, signed=False: Interval.from_dict(d).pct(signed)  # noqa: E731
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
                    f"{t.get('steps', 0):.0f}", f"{t.get('train_s', 0):.0f}", f"{t.get('reference_s', 0):.0f}",
                    f"{t['peak_rss_mb'] / 1024:.1f}" if t.get("peak_rss_mb") else "–", _wall(s.wall_s, s.wall_partial)])
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
    "on the same items, averaged over seeds; its 95% interval resamples the seeds and then each drawn seed's items "
    "(hierarchical percentile bootstrap; with one seed, a bootstrap over items). "
    "Majority-pos = accuracy of always answering the most common gold position of those items. "
    "Cost columns are per seed (mean over seeds), summed over the rounds that trained (rolled-back rounds included); "
    "examples/tokens count every epoch and, for preference methods, both sides of each pair; "
    "the reference s are part of the train s (zero for reference-free losses); peak train RSS is the largest "
    "training call's resident memory, sampled while it ran. "
    "Run wall time sums the run's own stages (a shared round-0 evaluation is charged to the run that did it); "
    "≥ marks a run resumed before stages were timed, whose figure covers only its last invocation."
)


def seed_coverage_note(summaries: list[MethodSummary]) -> str | None:
    """A warning when methods cover different seeds (a config run a seed at a time): every Δ is
    paired within its own seeds and stays comparable, but rows' accuracies pool different items."""
    coverage = {s.method: tuple(s.seeds) for s in summaries}
    if len(set(coverage.values())) <= 1:
        return None
    listed = "; ".join(f"{m}: {', '.join(map(str, seeds)) or 'none'}" for m, seeds in coverage.items())
    return (f"Methods cover different seeds ({listed}). Each Δ is paired against the untrained model on its own "
            "seeds' items, so Δ columns compare across rows; accuracy columns pool different items per row.")


def loss_rose_note(flagged: list[tuple[str, int, int]]) -> str | None:
    """A warning naming every trained (method, seed, round) whose loss ended above where it
    started: such a run diverged and settled (a learning rate past the stable range), so its Δ
    measures breakage."""
    if not flagged:
        return None
    named = ", ".join(f"{method}/seed-{seed} round {k}" for method, seed, k in flagged)
    return ("Training loss ended above where it started (the mean over the last tenth of the steps more than "
            f"{LOSS_ROSE_MARGIN:g}x that over the first steps) in {named}: the learning rate is likely past the "
            "stable range, and those changes measure a diverged run rather than the method.")


def collapse_note(collapses: Sequence[Collapse]) -> str | None:
    """A warning naming every (method, task) whose final model answers one option almost always:
    its accuracy there is the share of gold answers at that position, so a pooled change can
    come from the collapse alone (up on a task whose gold is mostly that option, down otherwise)."""
    if not collapses:
        return None
    named = "; ".join(c.describe() for c in collapses)
    return (f"Predictions collapsed onto one option (at least {100 * COLLAPSE_SHARE:.0f}% of a task's items): "
            f"{named}. Accuracy on those tasks measures a position prior, not the skill, and moves the pooled "
            "figures with it; compare the per-task rows with their majority-position baselines.")


def collapse_free_table(summaries: list[MethodSummary], runs: list[SeedRun],
                        collapses: Sequence[Collapse]) -> tuple[list[str], list[list[str]], dict[str, Any]] | None:
    """Each method's pooled accuracy and Δ per view without the tasks on which any method's
    final model collapsed onto one option (the same tasks left out for every row), as a table
    and as JSON; None when nothing collapsed."""
    left_out = {view: tasks for view in VIEWS if (tasks := collapsed_tasks(collapses, view))}
    if not left_out:
        return None
    figures = {s.method: {view: without_tasks([r for r in runs if r.method == s.method], view, tasks)
                          for view, tasks in left_out.items()} for s in summaries}
    header = ["method"]
    for view, tasks in left_out.items():
        named = ", ".join(_short(t.split("/", 1)[1]) for t in tasks)
        header += [f"{view} acc % without {named} [95% CI]", f"Δ {view} vs base [95% CI]", f"{view} items"]
    rows = [[method] + [cell for acc, delta in per_view.values() for cell in (acc.pct(), delta.pct(True), str(acc.n))]
            for method, per_view in figures.items()]
    data = {"left_out": left_out,
            "methods": {method: {view: {"acc": acc.to_dict(), "delta": delta.to_dict()}
                                 for view, (acc, delta) in per_view.items()} for method, per_view in figures.items()}}
    return header, rows, data


COLLAPSE_FREE_NOTE = (
    "The main table's pooled figures again, leaving out every task on which some method's final model answered "
    "one option on most items (named above) — the same tasks for every row, so the rows stay comparable. "
    "Δ is paired against the untrained model on the kept items, 95% bootstrap over seeds and items."
)


def write_compare_report(out: str | Path, dest: str | Path | None = None, *, seeds: Collection[int] | None = None,
                         methods: Collection[str] | None = None, versus_pairs: Sequence[str] = ()) -> Path:
    """Write ``compare.md``, ``compare.html``, ``compare-results.json`` and ``plots/*.png`` for the
    compare folder ``out`` into ``dest`` (default: ``out``); ``seeds`` / ``methods`` report only
    those (e.g. one seed alone, or the seeds every method has finished); ``versus_pairs``
    (``A:B``) adds head-to-head rows to the config's own (``compare_versus``)."""
    out = Path(out)
    folder = CompareDir(out)
    target = CompareDir(Path(dest) if dest is not None else out)
    dest = target.root
    meta, summaries, runs = collect(out, seeds, methods)
    reported = [s.method for s in summaries]
    check_pairs(versus_pairs, reported, f"this report of {out}")
    primary_pair = parse_pair(meta["primary"]) if meta.get("primary") else None
    primary = (versus(*primary_pair, runs) if primary_pair and set(primary_pair) <= set(reported) else None)
    head_to_head = [versus(a, b, runs) for a, b in report_pairs(reported, [*meta.get("versus", []), *versus_pairs])
                    if (a, b) != primary_pair]
    dest.mkdir(parents=True, exist_ok=True)
    method_rows = _method_rows(meta, out)
    base = meta["base"]
    pareto = plot_pareto(summaries, target.plots_dir / "pareto.png")
    tasks_png = plot_general_tasks(summaries, target.plots_dir / "general_tasks.png")
    prov = next((r.provenance for r in runs if r.provenance), {})
    title = f"aptune compare `{meta['name']}` — {model_label(base['model'])}" + (" (quick profile)" if meta.get("quick") else "")
    setting = (
        f"Domain pool: {_data_spec(base['pool'])}; domain held-out: {_data_spec(base['domain_eval'])}; "
        f"general: {_data_spec(base['general_eval'])}. Seeds {', '.join(map(str, meta['seeds']))}. Prompt "
        f"{base['prompt']['template']}/{base['prompt']['mc_format']}, answer rule {base['mining']['mc_metric']}."
    )
    machine = ", ".join(f"{k} {v}" for k, v in _flat({k: prov[k] for k in ("versions", "python", "machine")
                                                       if k in prov}).items() if v is not None)
    missing = [f"{m['name']}/seed-{s}" for m in meta["methods"] for s in meta["seeds"]
               if not folder.finished_marker(folder.run_dir(m["name"], s)).exists()]
    th, tr = task_table(summaries)
    dh, dr = task_table(summaries, "domain")
    grouped = group_tables(summaries)
    images = [(p, alt) for p, alt in ((pareto, "domain change against general change"),
                                      (tasks_png, "change per general task")) if p is not None]
    md = [f"# {title}", ""]
    if meta.get("description"):
        md += [meta["description"], ""]
    coverage = seed_coverage_note(summaries)
    flagged = [(r.method, r.seed, k) for r in runs for k in r.loss_rose_rounds]
    rose = loss_rose_note(flagged)
    collapses = [c for summary in summaries for c in summary.collapses]
    collapsed = collapse_note(collapses)
    collapse_free = collapse_free_table(summaries, runs, collapses)
    if primary is not None:
        md += [setting, "", "## Primary comparison", "", PRIMARY_NOTE, "", *_md_table(PRIMARY_HEADER, primary_rows(primary)),
               "", "## All methods against the untrained model (exploratory)", ""]
    elif meta.get("primary"):
        md += [setting, "", f"**Primary comparison {meta['primary']}: not in this report (a method is missing).**", ""]
    else:
        md += [setting, ""]
    md += [*_md_table(MAIN_HEADER, main_rows(summaries)), "", NOTES, ""]
    for note in (coverage, rose, collapsed):
        if note:
            md += [f"**{note}**", ""]
    if collapse_free:
        md += ["## Without the collapsed tasks", "", COLLAPSE_FREE_NOTE, "", *_md_table(*collapse_free[:2]), ""]
    for decl, header, rows in grouped:
        md += [f"## {decl.title} ({' / '.join(decl.views)})", "", decl.note, "", *_md_table(header, rows), ""]
    if head_to_head:
        md += ["## Head to head (paired, same items)" + (", exploratory" if primary is not None else ""), "",
               VERSUS_NOTE, "",
               *_md_table(VERSUS_HEADER, versus_rows(head_to_head)), ""]
    md += ["## Items lost and gained", "", INTERFERENCE_NOTE, "",
           *_md_table(INTERFERENCE_HEADER, interference_rows(summaries)), ""]
    md += ["## Likelihood of the gold answers", "", LOGLIK_NOTE, "", *_md_table(LOGLIK_HEADER, loglik_rows(summaries)), ""]
    md += ["## Domain tasks", "", *_md_table(dh, dr), ""]
    md += ["## General tasks", "", *_md_table(th, tr), ""]
    md += ["## Cost (per seed)", "", *_md_table(COST_HEADER, cost_rows(summaries, method_rows)), ""]
    md += ["## Per seed", "", *_md_table(SEED_HEADER, seed_rows(summaries)), ""]
    md += [f"![{alt}](plots/{p.name})" for p, alt in images]
    if missing:
        md += ["", f"Not finished yet: {', '.join(missing)}."]
    if machine:
        md += ["", f"Machine and versions: {machine}."]
    write_text_atomic(target.report_path, "\n".join(md) + "\n")
    imgs = "".join(f'<figure><img src="plots/{p.name}" alt="{html.escape(alt)}"><figcaption>{html.escape(alt)}'
                   "</figcaption></figure>" for p, alt in images)
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>" + html.escape(title.replace("`", "")) + "</title>"
        "<style>body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:4px 8px;font-size:13px}th{background:#f3f3f3}"
        "img{max-width:100%;border:1px solid #eee}p{max-width:70em}</style></head><body>"
        f"<h1>{html.escape(title.replace('`', ''))}</h1>"
        + (f"<p>{html.escape(meta['description'])}</p>" if meta.get("description") else "")
        + f"<p>{html.escape(setting)}</p>"
        + (f"<h2>Primary comparison</h2><p>{html.escape(PRIMARY_NOTE)}</p>"
           f"{_html_table(PRIMARY_HEADER, primary_rows(primary))}"
           "<h2>All methods against the untrained model (exploratory)</h2>" if primary is not None else "")
        + f"{_html_table(MAIN_HEADER, main_rows(summaries))}<p>{html.escape(NOTES)}</p>"
        + "".join(f"<p><strong>{html.escape(note)}</strong></p>" for note in (coverage, rose, collapsed) if note)
        + (f"<h2>Without the collapsed tasks</h2><p>{html.escape(COLLAPSE_FREE_NOTE)}</p>"
           f"{_html_table(*collapse_free[:2])}" if collapse_free else "")
        + "".join(f"<h2>{html.escape(decl.title)}</h2><p>{html.escape(decl.note)}</p>{_html_table(header, rows)}"
                  for decl, header, rows in grouped)
        + (f"<h2>Head to head (paired, same items)</h2><p>{html.escape(VERSUS_NOTE)}</p>"
           f"{_html_table(VERSUS_HEADER, versus_rows(head_to_head))}" if head_to_head else "")
        + f"<h2>Items lost and gained</h2><p>{html.escape(INTERFERENCE_NOTE)}</p>"
        + _html_table(INTERFERENCE_HEADER, interference_rows(summaries))
        + f"<h2>Likelihood of the gold answers</h2><p>{html.escape(LOGLIK_NOTE)}</p>"
        + _html_table(LOGLIK_HEADER, loglik_rows(summaries))
        + f"<h2>Domain tasks</h2>{_html_table(dh, dr)}"
        + f"<h2>General tasks</h2>{_html_table(th, tr)}"
        + f"<h2>Cost (per seed)</h2>{_html_table(COST_HEADER, cost_rows(summaries, method_rows))}"
        + f"<h2>Per seed</h2>{_html_table(SEED_HEADER, seed_rows(summaries))}{imgs}"
        + (f"<p>Not finished yet: {html.escape(', '.join(missing))}.</p>" if missing else "")
        + (f"<p>Machine and versions: {html.escape(machine)}.</p>" if machine else "")
        + "</body></html>\n"
    )
    write_text_atomic(target.report_html, page)
    write_json_atomic(target.results_json,
                      {"name": meta["name"], "seeds": meta["seeds"], "methods": [s.to_dict() for s in summaries],
                       "primary": primary.to_dict() if primary is not None else None,
                       "versus": [v.to_dict() for v in head_to_head],
                       "missing": missing, "loss_rose": [f"{m}/seed-{s}/round-{k}" for m, s, k in flagged],
                       "position_collapses": [vars(c) for c in collapses],
                       "without_collapsed": collapse_free[2] if collapse_free else None,
                       "provenance": prov})
    log.info("compare report written to %s", target.report_path)
    return target.report_path


def _method_rows(meta: dict[str, Any], out: Path) -> list[dict[str, Any]]:
    """Adapter kind and train settings per method, read from its first run's manifest."""
    rows = []
    for m in meta["methods"]:
        started = [r for r in CompareDir(out).seed_runs(m["name"]) if r.manifest_path.exists()]
        cfg = started[0].config() if started else {}
        rows.append({"name": m["name"], "adapter": cfg.get("adapter", {}).get("kind", "–") if m["kind"] != "base" else "none",
                     "train": cfg.get("train", {}) if m["kind"] != "base" else {}})
    return rows


def _data_spec(data: dict[str, Any]) -> str:
    """One data section of the run config as the setting line says it:
    ``sciq, arc_easy (test, limit 100/task)``, or ``(test, every item)`` without a limit."""
    limit = "every item" if data["limit"] is None else f"limit {data['limit']}/task"
    return f"{', '.join(_short(t) for t in data['tasks'])} ({data['split']}, {limit})"


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
