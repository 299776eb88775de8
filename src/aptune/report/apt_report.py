"""The APT run report: per-round table (Markdown + HTML) and accuracy plot (PNG).

Everything is read back from the run directory, so ``aptune report RUN`` can redraw the
report of any run, finished or not. Each accuracy carries its 95% bootstrap interval; each
multiple-choice view carries the majority-position baseline and the predicted-position
histogram, so a letter/position prior cannot pass for a gain.
"""

from __future__ import annotations

import html
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aptune.evaluate.metrics import paired_bootstrap_delta
from aptune.io import read_json, read_jsonl, write_figure_atomic, write_text_atomic

log = logging.getLogger(__name__)


@dataclass
class RoundRow:
    round: int
    summary: dict[str, Any]
    correct: dict[str, dict[str, bool]] = field(default_factory=dict)  # view -> "task/id" -> correct
    positions: dict[str, Any] = field(default_factory=dict)
    stages: dict[str, Any] = field(default_factory=dict)
    decision: dict[str, Any] | None = None


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


def collect(root: Path) -> list[RoundRow]:
    manifest = read_json(root / "manifest.json")
    stages = manifest.get("stages", {})
    rows = []
    numbers = sorted(int(p.name.split("-", 1)[1]) for p in root.glob("round-*") if p.name.split("-", 1)[1].isdigit())
    for r in numbers:
        rd = root / f"round-{r}"
        metrics_path = rd / "eval" / "metrics.json"
        metrics = read_json(metrics_path) if metrics_path.exists() else {}
        predictions = rd / "eval" / "predictions.jsonl"
        correct: dict[str, dict[str, bool]] = {}
        if predictions.exists():
            for item in read_jsonl(predictions):
                view = item["task"].split("/", 1)[0]
                correct.setdefault(view, {})[f"{item['task']}/{item['id']}"] = bool(item["correct"])
        row = RoundRow(
            round=r,
            summary=metrics.get("summary", {}),
            correct=correct,
            positions={v: _positions(metrics, v) for v in ("domain", "general")},
            stages={k.split("/", 1)[1]: v for k, v in stages.items() if k.startswith(f"round-{r}/")},
            decision=read_json(rd / "decision.json") if (rd / "decision.json").exists() else None,
        )
        rows.append(row)
    return rows


def _acc(summary: dict[str, Any], view: str) -> str:
    s = summary.get(view)
    if not s:
        return "–"
    return f"{100 * s['accuracy']:.1f} [{100 * s['low']:.1f}, {100 * s['high']:.1f}]"


def _hist(pos: dict[str, Any]) -> str:
    if not pos:
        return "–"
    total = sum(pos["predicted"].values()) or 1
    return " ".join(f"{chr(65 + k)}:{100 * v / total:.0f}%" for k, v in pos["predicted"].items())


HEADER = ["round", "weakness cases", "pairs (weak+similar)", "train examples", "train tokens",
          "mean loss", "mean margin", "domain acc % [95% CI]", "Δ domain (paired 95% CI)", "general acc % [95% CI]",
          "Δ general (paired 95% CI)", "domain majority-pos %", "domain predicted positions", "decision"]


def table_rows(rows: list[RoundRow]) -> list[list[str]]:
    out = []
    for row in rows:
        st = row.stages
        mine, pairs, train = st.get("mine", {}), st.get("pairs", {}), st.get("train", {})

        def delta(view: str) -> str:
            """Change against round 0 with a paired bootstrap interval over the same items."""
            if row.round == 0 or not rows or rows[0].round != 0:
                return "–"
            before, after = rows[0].correct.get(view, {}), row.correct.get(view, {})
            keys = sorted(before.keys() & after.keys())
            if not keys:
                return "–"
            iv = paired_bootstrap_delta([after[k] for k in keys], [before[k] for k in keys])
            return f"{100 * iv.value:+.1f} [{100 * iv.low:+.1f}, {100 * iv.high:+.1f}]"

        pos = row.positions.get("domain", {})
        decision = "start" if row.round == 0 else (
            ("accepted" if row.decision["accepted"] else "rolled back") + f": {row.decision['reason']}"
            if row.decision else "in progress")
        out.append([
            str(row.round),
            f"{mine['weakness']}/{mine['pool']}" if mine else "–",
            f"{pairs['pairs']} ({pairs['weakness_pairs']}+{pairs['similar_pairs']})" if pairs else "–",
            str(train.get("examples", "–")),
            str(train.get("tokens", "–")),
            f"{train['mean_loss']:.3f}" if train.get("mean_loss") is not None else "–",
            f"{train['mean_margin']:.3f}" if train.get("mean_margin") is not None else "–",
            _acc(row.summary, "domain"), delta("domain"),
            _acc(row.summary, "general"), delta("general"),
            f"{100 * pos['majority_baseline']:.1f}" if pos else "–",
            _hist(pos),
            decision,
        ])
    return out


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


def plot(rows: list[RoundRow], path: Path) -> Path | None:
    """Domain and general accuracy per round with 95% intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.6, 4.0), dpi=120)
    drawn = False
    for view, colour in (("domain", "tab:blue"), ("general", "tab:orange"), ("dev", "tab:green")):
        pts = [(r.round, r.summary[view]) for r in rows if view in r.summary]
        if not pts:
            continue
        xs = [p[0] for p in pts]
        ys = [100 * p[1]["accuracy"] for p in pts]
        err = [[100 * (p[1]["accuracy"] - p[1]["low"]) for p in pts], [100 * (p[1]["high"] - p[1]["accuracy"]) for p in pts]]
        ax.errorbar(xs, ys, yerr=err, marker="o", capsize=4, color=colour, label=f"{view} (n={pts[0][1]['n']})")
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("APT round (0 = starting model)")
    ax.set_ylabel("accuracy % (95% bootstrap CI)")
    ax.set_xticks([r.round for r in rows])
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.tight_layout()
    return write_figure_atomic(path, fig)


def write_report(root: str | Path) -> Path:
    """Write ``report.md``, ``report.html`` and ``plots/accuracy.png`` for a run directory."""
    root = Path(root)
    rows = collect(root)
    config = read_json(root / "manifest.json")["config"]
    body = table_rows(rows)
    png = plot(rows, root / "plots" / "accuracy.png")
    title = f"APT run `{config.get('name')}` — {config.get('model')}"
    md = [f"# {title}", "",
          f"Domain pool: {', '.join(config['pool']['tasks'])} ({config['pool']['split']}); domain held-out: "
          f"{', '.join(config['domain_eval']['tasks'])} ({config['domain_eval']['split']}); general: "
          f"{', '.join(config['general_eval']['tasks'])}. Seed {config['seed']}. Accuracies pool all items of a "
          "view; intervals are 95% percentile bootstrap over items.", "",
          "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    md += ["| " + " | ".join(cells) + " |" for cells in body]
    efficiency = data_efficiency(rows)
    if efficiency:
        md += ["", efficiency]
    if png:
        md += ["", f"![accuracy per round](plots/{png.name})"]
    write_text_atomic(root / "report.md", "\n".join(md) + "\n")
    head = "".join(f"<th>{html.escape(h)}</th>" for h in HEADER)
    trs = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>" for cells in body)
    img = f'<img src="plots/{png.name}" alt="accuracy per round">' if png else ""
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>" + html.escape(title.replace("`", "")) + "</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;font-size:13px}th{background:#f3f3f3}</style></head><body>"
        f"<h1>{html.escape(title.replace('`', ''))}</h1><p>{html.escape(md[2])}</p>"
        + (f"<p>{html.escape(efficiency)}</p>" if efficiency else "")
        + f"<table><thead><tr>{head}</tr></thead><tbody>{trs}</tbody></table>{img}</body></html>\n"
    )
    write_text_atomic(root / "report.html", page)
    log.info("report written to %s", root / "report.md")
    return root / "report.md"
