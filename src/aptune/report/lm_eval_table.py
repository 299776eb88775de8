"""The lm-evaluation-harness figures of a run, round by round, as lm-eval reports them.

Each round's ``eval/metrics.json`` holds lm-eval's results when the run config names
``lm_eval`` tasks (``evaluate/lm_eval_bridge.py``). lm-eval gives each metric with its standard
error over items; the change against round 0 is shown as a plain difference (lm-eval does not
pair items), so it is read against those standard errors, not as a paired interval.
"""

from __future__ import annotations

from typing import Any

from aptune.run.run_dir import RunDir

HEADER = ["round", "lm-eval task", "n", "metric", "value % ± stderr", "Δ vs round 0, points"]
NOTE = ("lm-evaluation-harness run in-process on each round's model (its own prompts, metrics and standard errors "
        "over items); the primary metric per task is acc_norm, else acc, else exact_match. Δ is unpaired: compare "
        "it with the standard errors. The general-capability gate reads the mean primary metric when lm_eval.gate "
        "is on.")


def lm_eval_results(run: RunDir, round_index: int) -> dict[str, Any] | None:
    if not run.is_done(round_index, "eval"):
        return None
    return run.read_output(round_index, "eval").get("lm_eval")


def rows(run: RunDir, rounds: list[int]) -> list[list[str]]:
    """One row per (round, task): the primary metric with its standard error and its change."""
    base = lm_eval_results(run, 0) if 0 in rounds else None
    out = []
    for r in rounds:
        results = lm_eval_results(run, r)
        if not results:
            continue
        for name, task in results["tasks"].items():
            metric = task.get("primary")
            if not metric:
                continue
            value = task["metrics"][metric]
            err = task["stderr"].get(metric)
            cell = f"{100 * value:.1f}" + (f" ± {100 * err:.1f}" if err is not None else "")
            before = (base or {}).get("tasks", {}).get(name, {}).get("metrics", {}).get(metric)
            delta = f"{100 * (value - before):+.1f}" if before is not None and r > 0 else "–"
            out.append([str(r), name, str(task.get("n") or "–"), metric, cell, delta])
    return out
