"""The model card of an export, drawn from the run's own files (never typed by hand).

Base model, method and settings, the data the rounds trained on, which rounds were accepted,
and the measured domain and general changes against the starting model with their intervals,
with the commands that reproduce them.
"""

from __future__ import annotations

from pathlib import Path

from aptune.io import read_json
from aptune.run.evaluation import paired_change
from aptune.run.run_dir import RunDir


def method_of(run_dir: RunDir) -> str:
    """The method that made the run: the compare label where compare ran it, else read off the
    stages it recorded."""
    record = run_dir.root / "compare_run.json"
    if record.exists():
        return str(read_json(record).get("method", "unknown"))
    stages = {name.split("/", 1)[-1] for name in run_dir.manifest().get("stages", {})}
    for stage, method in (("retrieve", "APT"), ("select", "dpo-all"), ("sft_items", "SFT"), ("pairs", "dpo-pairs")):
        if stage in stages:
            return method
    return "base (untrained)"


def _round_line(run_dir: RunDir, r: int) -> str:
    stages = run_dir.manifest().get("stages", {})
    decision = stages.get(f"round-{r}/decide", {})
    pairs, train = stages.get(f"round-{r}/pairs", {}), stages.get(f"round-{r}/train", {})
    mine = stages.get(f"round-{r}/mine", {})
    parts = []
    if mine:
        parts.append(f"{mine.get('weakness', '?')} weakness cases of {mine.get('pool', '?')} pool items")
    if pairs:
        parts.append(f"{pairs.get('pairs', '?')} pairs")
    if train:
        parts.append(f"{train.get('steps', '?')} steps, {train.get('tokens', '?')} tokens")
    verdict = "accepted" if decision.get("accepted") else "rolled back"
    return f"- round {r}: {', '.join(parts) or 'trained'} — **{verdict}** ({decision.get('reason', '')})"


def _results(run_dir: RunDir, upto: int, seed: int) -> list[str]:
    if not (run_dir.eval_dir(upto) / "metrics.json").exists() or upto == 0:
        return ["No trained round was evaluated: the exported model is the starting model."]
    before = read_json(run_dir.eval_dir(0) / "metrics.json")["summary"]
    after = read_json(run_dir.eval_dir(upto) / "metrics.json")["summary"]
    change = paired_change(run_dir, upto, seed)
    lines = ["| view | items | starting model % | exported model % | change, points [95% CI] |", "|---|---|---|---|---|"]
    for view, label in (("domain", "domain (held-out)"), ("general", "general"), ("general_dev", "general dev (gate)")):
        if view in after and view in before and view in change:
            delta = change[view]
            lines.append(f"| {label} | {after[view]['n']} | {100 * before[view]['accuracy']:.1f} | "
                         f"{100 * after[view]['accuracy']:.1f} | {delta.format(signed=True)} |")
    from aptune.report import lm_eval_table

    lm_rows = [r for r in lm_eval_table.rows(run_dir, [0, upto]) if r[0] == str(upto)]
    if lm_rows:
        lines += ["", "lm-evaluation-harness on the exported model (its metrics and standard errors; Δ unpaired):", "",
                  "| task | n | metric | value % ± stderr | Δ vs starting model |", "|---|---|---|---|---|",
                  *[f"| {r[1]} | {r[2]} | {r[3]} | {r[4]} | {r[5]} |" for r in lm_rows]]
    lines.append("")
    lines.append("Changes are paired item by item against the starting model on the same items, with a 95% "
                 "percentile bootstrap over items (one training seed: the interval does not carry run-to-run "
                 "variation).")
    return lines


def model_card(run_root: Path, *, accepted: list[int], upto: int, form: str, command: str) -> str:
    """The README.md of an export of ``run_root`` with ``accepted`` rounds (those up to ``upto``)."""
    run_dir = RunDir(run_root)
    manifest = run_dir.manifest()
    cfg = manifest["config"]
    runtime = manifest.get("runtime", {})
    model = cfg["model"]["name"] if isinstance(cfg["model"], dict) else cfg["model"]
    adapter, train, rounds = cfg["adapter"], cfg["train"], cfg["rounds"]
    tasks = lambda ts: ", ".join(ts.get("tasks") or []) or "–"  # noqa: E731
    out = [
        "---",
        "library_name: transformers" if form == "merged" else ("library_name: peft" if form == "peft" else
                                                              "library_name: aptune"),
        "tags: [aptune]",
        "---",
        f"# {cfg.get('name', 'aptune run')}: {model} tuned with {method_of(run_dir)}",
        "",
        f"Exported by aptune from the run directory `{run_root.name}` as **{form}**. Every figure below is "
        "read from that run's files.",
        "",
        "## What it is",
        "",
        f"- Base model: `{model}` (weights {runtime.get('weights', 'fp32')}, computed in "
        f"{runtime.get('precision', '?')} on {runtime.get('device_name', runtime.get('device', '?'))})",
        f"- Method: {method_of(run_dir)}; adapter {adapter['kind']} r={adapter['r']} alpha={adapter['alpha']} on "
        f"{adapter.get('target_modules', '?')}; loss {train.get('loss', '?')} (beta {train.get('beta', '?')}, NLL weight "
        f"{train.get('nll_weight', '?')}), lr {train.get('lr')}, {train.get('epochs')} epoch(s) per round, "
        f"rounds {rounds.get('between')} (reference {rounds.get('reference')}), seed {cfg.get('seed')}",
        f"- Data: training pool {tasks(cfg['pool'])} ({cfg['pool'].get('split')} split); held-out domain "
        f"{tasks(cfg['domain_eval'])} ({cfg['domain_eval'].get('split')} split); general {tasks(cfg['general_eval'])}",
        f"- Rounds accepted: {', '.join(map(str, accepted)) or 'none'} (of the rounds up to {upto})",
        "",
        *[_round_line(run_dir, r) for r in range(1, upto + 1) if run_dir.is_done(r, "decide")],
        "",
        "## Measured",
        "",
        *_results(run_dir, accepted[-1] if accepted else 0, int(cfg.get("seed", 0))),
        "",
        "## How to reproduce",
        "",
        "```bash",
        f"aptune run {run_root}/config.yaml --out {run_root}   # the run (resumes where its files exist)",
        f"{command}",
        "```",
        "",
    ]
    if form == "merged":
        out += ["## Use", "", "```python", "from transformers import AutoModelForCausalLM, AutoTokenizer",
                "model = AutoModelForCausalLM.from_pretrained(\"PATH\")",
                "tokenizer = AutoTokenizer.from_pretrained(\"PATH\")", "```", ""]
    elif form == "peft":
        out += ["## Use", "", "```python", "from peft import PeftModel",
                "from transformers import AutoModelForCausalLM",
                f"base = AutoModelForCausalLM.from_pretrained(\"{model}\")  # the base model above",
                "model = PeftModel.from_pretrained(base, \"PATH\")", "```", "",
                "The accepted rounds were merged into the weights one after another; their low-rank updates "
                "add, so this single adapter (rank = the sum of the rounds' ranks) equals them exactly.", ""]
    else:
        out += ["## Use", "", "ALoRA (attention LoRA) lets each position's low-rank path attend to the "
                "preceding tokens, so no weight matrix can absorb it: it cannot be merged, and no other "
                "library reads it. Load it with aptune installed:", "", "```python",
                "from load_alora import load_model   # the file beside this card",
                "model, tokenizer = load_model()", "```", ""]
    return "\n".join(out)
