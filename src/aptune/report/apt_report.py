"""The run report: a one-sentence verdict, per-round tables (Markdown + HTML) and the paired-change plot (PNG).

Everything is read back from the run directory, so ``aptune report RUN`` can redraw the
report of any run, finished or not; the run itself never writes it (the command line calls
``write_report`` after the run). Each accuracy carries its 95% bootstrap interval; each change
is paired against round 0 on the same items; each multiple-choice view carries the
majority-position baseline and the predicted-position histogram, so a letter/position prior
cannot pass for a gain.

Run directories of every age read: the SFT training set is the ``sft_items`` stage (``items``,
``domain_items``, ``replay_items``) or, in older runs, a ``pairs`` stage that reused the pair
counts (``kind: "sft items"``); dpo-all's training pool is the ``select`` stage (``selected``)
or, in older runs, ``retrieve`` (``retrieved``). Precision, device and machine come from the
manifest's ``runtime`` entry, "not recorded" for runs from before it existed.
"""

from __future__ import annotations

import html
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aptune.evaluate.metrics import Interference, Interval, format_positions, interference, paired_bootstrap_delta
from aptune.io import read_jsonl, write_figure_atomic, write_text_atomic
from aptune.model_config import model_label
from aptune.report import lm_eval_table, mined_cases, retrieval_table
from aptune.run.run_dir import RunDir

log = logging.getLogger(__name__)

#: The views a run evaluates and the report compares against round 0.
VIEWS = ("domain", "general")
NOT_RECORDED = "not recorded"


@dataclass
class RoundRow:
    round: int
    summary: dict[str, Any]
    correct: dict[str, dict[str, bool]] = field(default_factory=dict)  # view -> "task/id" -> correct
    positions: dict[str, Any] = field(default_factory=dict)
    stages: dict[str, Any] = field(default_factory=dict)
    decision: dict[str, Any] | None = None
    # view -> paired change against round 0 on the same items (None: round 0, or no shared items)
    deltas: dict[str, Interval | None] = field(default_factory=dict)

    @property
    def accepted(self) -> bool:
        return bool(self.decision and self.decision.get("accepted"))


def _positions(metrics: dict[str, Any], view: str) -> dict[str, Any]:
    """Pooled gold/predicted position histograms over a view's MC tasks."""
    gold: Counter[int] = Counter()
    pred: Counter[int] = Counter()
    for task, tm in metrics.get("tasks", {}).items():
        if task.startswith(view + "/") and tm.get("positions"):
            gold.update({int(k): v for k, v in tm["positions"]["gold_histogram"].items()})
            pred.update({int(k): v for k, v in tm["positions"]["predicted_histogram"].items()})
    if not gold:
        return {}
    total = sum(gold.values())
    return {"majority_baseline": max(gold.values()) / total, "predicted": dict(sorted(pred.items())), "n": total}


def paired_delta(before: dict[str, bool], after: dict[str, bool]) -> Interval | None:
    """Mean change in correctness on the items both evaluated, 95% paired bootstrap; None if none."""
    keys = sorted(before.keys() & after.keys())
    if not keys:
        return None
    return paired_bootstrap_delta([after[k] for k in keys], [before[k] for k in keys])


def item_interference(before: dict[str, bool], after: dict[str, bool]) -> Interference | None:
    """Lost and gained items between round 0 and a round, on the items both evaluated."""
    keys = sorted(before.keys() & after.keys())
    if not keys:
        return None
    return interference([before[k] for k in keys], [after[k] for k in keys])


INTERFERENCE_HEADER = ["round", "view", "items", "lost: right → wrong, % [95% CI]", "gained: wrong → right, % [95% CI]"]
INTERFERENCE_LEGEND = [
    ("lost", "items round 0 answered right that this round answers wrong: forgetting item by item, which a "
     "rising average can hide"),
    ("gained", "items round 0 answered wrong that this round answers right"),
]


def interference_rows(rows: list[RoundRow]) -> list[list[str]]:
    """One row per later round and view: its lost and gained items against round 0."""
    if not rows or rows[0].round != 0:
        return []
    out = []
    for row in rows[1:]:
        for view in ("domain", "general"):
            change = item_interference(rows[0].correct.get(view, {}), row.correct.get(view, {}))
            if change is None:
                continue
            out.append([str(row.round), view, str(change.n), f"{change.lost_count} ({change.lost.format()})",
                        f"{change.gained_count} ({change.gained.format()})"])
    return out


def collect(root: Path) -> list[RoundRow]:
    """Every evaluated or started round of the run directory, with its paired changes against round 0."""
    run = RunDir(root)
    if not run.manifest_path.exists():
        run.config()  # the one-line "not a run directory" error
    rows = []
    for r in run.rounds_on_disk():
        metrics = run.read_output(r, "eval") if run.is_done(r, "eval") else {}
        predictions = run.predictions(r)
        correct: dict[str, dict[str, bool]] = {}
        if predictions.exists():
            for item in read_jsonl(predictions):
                view = item["task"].split("/", 1)[0]
                correct.setdefault(view, {})[f"{item['task']}/{item['id']}"] = bool(item["correct"])
        rows.append(RoundRow(
            round=r,
            summary=metrics.get("summary", {}),
            correct=correct,
            positions={v: _positions(metrics, v) for v in VIEWS},
            stages=run.stage_records(r),
            decision=run.read_output(r, "decide") if run.is_done(r, "decide") else None,
        ))
    if rows and rows[0].round == 0:
        for row in rows[1:]:
            row.deltas = {v: paired_delta(rows[0].correct.get(v, {}), row.correct.get(v, {})) for v in VIEWS}
    return rows


# --- the verdict -------------------------------------------------------------------------------

def describe_change(view: str, delta: Interval) -> str:
    """``domain gained +9.0 [+3.5, +14.5] points``, ``... lost ...``, or ``general within noise
    (-0.8 [-3.1, +1.5])`` when the 95% interval contains zero."""
    if delta.contains(0.0):
        return f"{view} within noise ({delta.pct(signed=True)})"
    return f"{view} {'gained' if delta.value > 0 else 'lost'} {delta.pct(signed=True)} points"


def final_round(rows: list[RoundRow]) -> RoundRow | None:
    """The last accepted round that was evaluated (None: no round was accepted)."""
    accepted = [r for r in rows if r.round > 0 and r.accepted and r.correct]
    return accepted[-1] if accepted else None


def verdict(rows: list[RoundRow]) -> str:
    """One sentence: the final model's paired change against round 0, per view."""
    if not rows or rows[0].round != 0 or not rows[0].correct:
        return "Verdict: round 0 (the starting model) has not been evaluated yet."
    final = final_round(rows)
    if final is None:
        tried = [r.round for r in rows if r.round > 0 and r.decision]
        if not tried:
            return "Verdict: only the starting model (round 0) is evaluated; no trained round to compare yet."
        return (f"Verdict: no round was accepted (rolled back: {', '.join(map(str, tried))}); the final model is the "
                "starting model (round 0).")
    parts = [describe_change(v, d) for v in VIEWS if (d := final.deltas.get(v)) is not None]
    return (f"Verdict (round {final.round}, the last accepted, against round 0; paired 95% CI): "
            + "; ".join(parts) + ".")


# --- tables --------------------------------------------------------------------------------------

def _acc(summary: dict[str, Any], view: str) -> str:
    s = summary.get(view)
    return Interval.from_dict(s).pct() if s else "–"


def _delta(row: RoundRow, view: str) -> str:
    d = row.deltas.get(view)
    return d.pct(signed=True) if d is not None else "–"


def _decision(row: RoundRow) -> str:
    if row.round == 0:
        return "start"
    if not row.decision:
        return "in progress"
    return ("accepted" if row.decision["accepted"] else "rolled back") + f": {row.decision['reason']}"


ACCURACY_HEADER = ["round", "domain acc % [95% CI]", "Δ domain (paired 95% CI)", "general acc % [95% CI]",
                   "Δ general (paired 95% CI)", "domain majority-pos %", "domain predicted positions", "decision"]
ACCURACY_LEGEND = [
    ("round", "0 is the starting model; each later round trains on the model the last accepted round left"),
    ("domain / general acc % [95% CI]", "accuracy on every item of the held-out domain set / the general set, "
     "with a 95% percentile bootstrap interval over items"),
    ("Δ domain / Δ general", "change in accuracy against round 0, in points, paired item by item on the same items "
     "(95% bootstrap over items); an interval that contains 0 is within noise"),
    ("domain majority-pos %", "accuracy of always answering the most common gold position of the domain items: "
     "a model that learned only a position prior scores this"),
    ("domain predicted positions", "share of the domain answers on each option (A, B, ...): one option on most "
     "items means the model answers by position, not content"),
    ("decision", "whether the round was kept or rolled back by the general-capability gate, and why"),
]


def accuracy_rows(rows: list[RoundRow]) -> list[list[str]]:
    out = []
    for row in rows:
        pos = row.positions.get("domain", {})
        out.append([
            str(row.round),
            _acc(row.summary, "domain"), _delta(row, "domain"),
            _acc(row.summary, "general"), _delta(row, "general"),
            f"{100 * pos['majority_baseline']:.1f}" if pos else "–",
            format_positions(pos.get("predicted", {})),
            _decision(row),
        ])
    return out


def _train_set(stages: dict[str, Any]) -> str:
    """The round's training set: preference pairs (weakness + similar) or SFT items (domain + replay)."""
    items = stages.get("sft_items") or (stages["pairs"] if "items" in stages.get("pairs", {}) else None)
    if items is not None:
        return f"{items['items']} items ({items['domain_items']}+{items['replay_items']})"
    pairs = stages.get("pairs")
    if not pairs:
        return "–"
    if pairs.get("kind") == "sft items":  # runs from before the sft_items stage
        return (f"{pairs['pairs']} items ({pairs.get('domain_items', pairs['weakness_pairs'])}"
                f"+{pairs.get('replay_items', pairs['similar_pairs'])})")
    if "weakness_pairs" not in pairs:  # the user's own pairs (dpo-pairs)
        return f"{pairs['pairs']} pairs (the user's)"
    user = f"+{pairs['user_pairs']} user" if pairs.get("user_pairs") else ""
    return f"{pairs['pairs']} pairs ({pairs['weakness_pairs']}+{pairs['similar_pairs']}{user})"


def _pool_extra(stages: dict[str, Any]) -> str:
    """Items taken from the pool besides the mistakes: similar cases (APT) or every item (dpo-all)."""
    if "select" in stages:
        return f"{stages['select']['selected']} selected"
    if "retrieve" in stages:
        return f"{stages['retrieve']['retrieved']} retrieved"
    return "–"


def _seconds(record: dict[str, Any], key: str) -> str:
    return f"{record[key]:.1f}" if record.get(key) is not None else "–"


TRAINING_HEADER = ["round", "weakness cases", "from the pool", "train set", "train examples", "train tokens",
                   "mean loss", "mean margin", "train stage s"]
TIMED_HEADER = ["reference pass s", "training loop s"]
TRAINING_LEGEND = [
    ("weakness cases", "domain-pool items the round's starting model got wrong, of all pool items it answered"),
    ("from the pool", "pool items taken besides the mistakes: similar cases retrieved for them (APT), or every "
     "item the model answered correctly (dpo-all)"),
    ("train set", "preference pairs (from mistakes + from the other pool items) or, for SFT, items "
     "(domain + general replay)"),
    ("train examples / train tokens", "examples and tokens processed, every epoch counted (for a pair, both sides)"),
    ("mean loss", "mean training loss over the round's optimizer steps"),
    ("mean margin", "preference methods: mean DPO reward margin over the round's pairs, β·[(policy − reference) "
     "log-probability of the chosen answer minus that of the rejected one]; above 0, the model moved towards the "
     "gold answers relative to the reference (– for SFT)"),
    ("train stage s", "wall seconds of the round's training stage"),
]
TIMED_LEGEND = [
    ("reference pass s", "of the stage, seconds spent scoring the pairs under the frozen reference model (DPO)"),
    ("training loop s", "of the stage, seconds of the optimisation loop itself"),
]


def training_table(rows: list[RoundRow]) -> tuple[list[str], list[list[str]], list[tuple[str, str]]]:
    """Header, rows and legend of the training table; the reference-pass and loop timings only
    when some round recorded them."""
    trained = [r for r in rows if r.round > 0]
    timed = any("reference_s" in r.stages.get("train", {}) or "train_s" in r.stages.get("train", {}) for r in trained)
    out = []
    for row in trained:
        st = row.stages
        mine, train = st.get("mine", {}), st.get("train", {})
        cells = [
            str(row.round),
            f"{mine['weakness']}/{mine['pool']}" if mine else "–",
            _pool_extra(st),
            _train_set(st),
            str(train.get("examples", "–")),
            str(train.get("tokens", "–")),
            f"{train['mean_loss']:.3f}" if train.get("mean_loss") is not None else "–",
            f"{train['mean_margin']:.3f}" if train.get("mean_margin") is not None else "–",
            _seconds(train, "seconds"),
        ]
        if timed:
            no_reference = str(train.get("reference", "")).startswith("none")  # SFT: no reference pass
            cells += ["–" if no_reference else _seconds(train, "reference_s"), _seconds(train, "train_s")]
        out.append(cells)
    header = TRAINING_HEADER + (TIMED_HEADER if timed else [])
    return header, out, TRAINING_LEGEND + (TIMED_LEGEND if timed else [])


def data_efficiency(rows: list[RoundRow]) -> str:
    """APT's training examples and tokens against one SFT epoch on the whole pool."""
    trained = [r.stages["train"] for r in rows if "train" in r.stages]
    mined = [r.stages["mine"] for r in rows if "mine" in r.stages]
    if not trained or not mined or "sft_pool_tokens" not in mined[0]:
        return ""
    examples = sum(t["examples"] for t in trained)
    tokens = sum(t["tokens"] for t in trained)
    pool, pool_tokens = mined[0]["pool"], mined[0]["sft_pool_tokens"]
    return (f"Data used: APT trained on {examples} pair-examples ({tokens:,} tokens, both sides of each pair, "
            f"all rounds and epochs); one SFT epoch on the full pool is {pool} examples ({pool_tokens:,} tokens).")


# --- where and how long ------------------------------------------------------------------------

def runtime_line(manifest: dict[str, Any]) -> str:
    """Device, precision, machine (the manifest's ``runtime``) and wall time (its stages' seconds)."""
    rt = manifest.get("runtime") or {}
    device = rt.get("device", NOT_RECORDED)
    if rt.get("device_name"):
        device += f" ({rt['device_name']})"
    stages = manifest.get("stages", {}).values()
    timed = [st["seconds"] for st in stages if "seconds" in st]
    if not timed:
        wall = NOT_RECORDED
    else:
        wall = f"{sum(timed):.0f} s, the sum of the run's stages"
        if len(timed) < len(stages):
            wall = f"≥ {wall} ({len(stages) - len(timed)} stages untimed)"
    return (f"Device: {device}; precision: {rt.get('precision', NOT_RECORDED)}; "
            f"machine: {rt.get('machine', NOT_RECORDED)}; wall time: {wall}.")


# --- the plot ------------------------------------------------------------------------------------

def plot(rows: list[RoundRow], path: Path) -> Path | None:
    """Paired change against round 0 per round, domain and general, with 95% intervals and the
    zero line (hollow markers: rounds rolled back). None when no round after 0 was evaluated."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    later = [r for r in rows if r.round > 0]
    fig, ax = plt.subplots(figsize=(7.6, 4.0), dpi=120)
    drawn = False
    for (view, colour), shift in zip((("domain", "tab:blue"), ("general", "tab:orange")), (-0.06, 0.06)):
        pts = [(r, d) for r in later if (d := r.deltas.get(view)) is not None]
        if not pts:
            continue
        xs = [r.round + shift for r, _ in pts]
        ys = [100 * d.value for _, d in pts]
        err = [[100 * (d.value - d.low) for _, d in pts], [100 * (d.high - d.value) for _, d in pts]]
        ax.errorbar(xs, ys, yerr=err, fmt="-", capsize=4, color=colour, alpha=0.8,
                    label=f"Δ {view} (n={pts[0][1].n})")
        for x, y, (r, _) in zip(xs, ys, pts):
            ax.plot(x, y, "o", color=colour, markerfacecolor=colour if r.accepted else "white")
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.axhline(0, color="#555", lw=0.9)
    ax.set_xlabel("round (filled: accepted; hollow: rolled back)")
    ax.set_ylabel("Δ accuracy vs round 0, points (paired 95% CI)")
    ax.set_xticks([r.round for r in later])
    ax.set_xlim(later[0].round - 0.5, later[-1].round + 0.5)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.tight_layout()
    return write_figure_atomic(path, fig)


# --- writing -------------------------------------------------------------------------------------

def _md_table(header: list[str], rows: list[list[str]], legend: list[tuple[str, str]]) -> list[str]:
    return (["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            + ["| " + " | ".join(cells) + " |" for cells in rows]
            + [""] + [f"- **{name}**: {text}" for name, text in legend])


def _html_table(header: list[str], rows: list[list[str]], legend: list[tuple[str, str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    trs = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>" for cells in rows)
    notes = "".join(f"<li><strong>{html.escape(n)}</strong>: {html.escape(t)}</li>" for n, t in legend)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{trs}</tbody></table><ul class='legend'>{notes}</ul>"


def write_report(root: str | Path) -> Path:
    """Write ``report.md``, ``report.html`` and ``plots/accuracy.png`` (the paired change per
    round) for a run directory; return the path of ``report.md``."""
    run = RunDir(Path(root))
    rows = collect(run.root)
    manifest = run.manifest()
    config = manifest["config"]
    acc_rows = accuracy_rows(rows)
    train_header, train_rows, train_legend = training_table(rows)
    png = plot(rows, run.plots_dir / "accuracy.png")
    title = f"Run `{config.get('name')}` — {model_label(config.get('model'))}"
    sentence = verdict(rows)
    setting = (f"Domain pool: {', '.join(config['pool']['tasks'])} ({config['pool']['split']}); domain held-out: "
               f"{', '.join(config['domain_eval']['tasks'])} ({config['domain_eval']['split']}); general: "
               f"{', '.join(config['general_eval']['tasks'])}. Seed {config['seed']}. Accuracies pool all items of a "
               "view; intervals are 95% percentile bootstrap over items.")
    where = runtime_line(manifest)
    efficiency = data_efficiency(rows)
    md = [f"# {title}", "", f"**{sentence}**", "", setting, "", where, "",
          "## Accuracy per round", "", *_md_table(ACCURACY_HEADER, acc_rows, ACCURACY_LEGEND)]
    lost_rows = interference_rows(rows)
    if lost_rows:
        md += ["", "## Items lost and gained against round 0", "",
               *_md_table(INTERFERENCE_HEADER, lost_rows, INTERFERENCE_LEGEND)]
    lm_rows = lm_eval_table.rows(run, [r.round for r in rows])
    if lm_rows:
        md += ["", "## lm-evaluation-harness", "", *_md_table(lm_eval_table.HEADER, lm_rows, []), "",
               lm_eval_table.NOTE]
    if train_rows:
        md += ["", "## Training per round", "", *_md_table(train_header, train_rows, train_legend)]
    if efficiency:
        md += ["", efficiency]
    retrieval_rows = retrieval_table.rows(run, [r.round for r in rows if r.round > 0])
    if retrieval_rows:
        md += ["", "## What retrieval added", "", *_md_table(retrieval_table.HEADER, retrieval_rows, []), "",
               retrieval_table.NOTE]
    cases = mined_cases.case_rows(run, [r.round for r in rows if r.round > 0])
    judge_notes = mined_cases.notes(manifest)
    if cases or judge_notes:
        md += ["", "## What the judge marked wrong", ""]
        md += [*_md_table(mined_cases.HEADER, cases, [])] if cases else []
        md += ["", *judge_notes] if judge_notes else []
    if png:
        md += ["", f"![paired change against round 0 per round](plots/{png.name})"]
    write_text_atomic(run.report_path, "\n".join(md) + "\n")
    plain_title = html.escape(title.replace("`", ""))
    img = f'<img src="plots/{png.name}" alt="paired change against round 0 per round">' if png else ""
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{plain_title}</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;font-size:13px}th{background:#f3f3f3}"
        ".legend{font-size:13px;color:#444}</style></head><body>"
        f"<h1>{plain_title}</h1><p><strong>{html.escape(sentence)}</strong></p>"
        f"<p>{html.escape(setting)}</p><p>{html.escape(where)}</p>"
        f"<h2>Accuracy per round</h2>{_html_table(ACCURACY_HEADER, acc_rows, ACCURACY_LEGEND)}"
        + (f"<h2>Items lost and gained against round 0</h2>"
           f"{_html_table(INTERFERENCE_HEADER, lost_rows, INTERFERENCE_LEGEND)}" if lost_rows else "")
        + (f"<h2>lm-evaluation-harness</h2>{_html_table(lm_eval_table.HEADER, lm_rows, [])}"
           f"<p>{html.escape(lm_eval_table.NOTE)}</p>" if lm_rows else "")
        + (f"<h2>Training per round</h2>{_html_table(train_header, train_rows, train_legend)}" if train_rows else "")
        + (f"<p>{html.escape(efficiency)}</p>" if efficiency else "")
        + (f"<h2>What retrieval added</h2>{_html_table(retrieval_table.HEADER, retrieval_rows, [])}"
           f"<p>{html.escape(retrieval_table.NOTE)}</p>" if retrieval_rows else "")
        + ("<h2>What the judge marked wrong</h2>" if cases or judge_notes else "")
        + (_html_table(mined_cases.HEADER, cases, []) if cases else "")
        + "".join(f"<p>{html.escape(n)}</p>" for n in judge_notes)
        + f"{img}</body></html>\n"
    )
    write_text_atomic(run.report_html, page)
    log.info("report written to %s", run.report_path)
    return run.report_path
