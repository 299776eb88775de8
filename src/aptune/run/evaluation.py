"""The evaluation step every method's rounds share: the same items, the same grading, the
same summary, so two methods' numbers differ only by what they trained.

A round is evaluated on four views of the run config — ``domain`` (held-out domain items),
``general`` (tasks the domain never touches), ``dev`` (the stopping rule's items) and
``general_dev`` (the general tasks' dev items, which the gate reads) — in one call, its
per-task names prefixed with the view (``domain/sciq``).
"""

from __future__ import annotations

from typing import Any

from aptune.config import RunConfig, TaskSet
from aptune.data import load_task
from aptune.data.example import Example
from aptune.evaluate.judges import Judge
from aptune.evaluate.metrics import bootstrap_mean, paired_bootstrap_delta
from aptune.evaluate.runner import EvalSettings
from aptune.io import read_jsonl
from aptune.prompts import PromptFormat
from aptune.run.run_dir import RunDir

#: evaluation task-name prefixes: one eval call covers all three views of a round
VIEWS = ("domain", "general", "dev", "general_dev")


def load_taskset(ts: TaskSet, seed: int, shots: int = 0) -> dict[str, list[Example]]:
    """Every task of ``ts``, its items carrying ``shots`` exemplars each (``prompt.shots``)."""
    return {name: load_task(name, split=ts.split, limit=ts.limit, seed=seed, shots=shots, format=ts.format,
                            fields=ts.fields) for name in ts.tasks}


def load_judge_model(cfg: RunConfig, default_device: Any) -> tuple[Any, Any]:
    """``mining.judge_model`` and its tokenizer, on ``mining.judge_device`` (default: the run's
    device), its weights in the run's ``model.dtype`` rule."""
    from aptune.devices import resolve_device
    from aptune.model_config import ModelConfig
    from aptune.models import load_model, load_tokenizer

    m = cfg.mining
    where = resolve_device(m.judge_device) if m.judge_device else default_device
    options = ModelConfig(name=m.judge_model, dtype=cfg.model.dtype, attn_implementation=cfg.model.attn_implementation)
    return (load_model(m.judge_model, trust_remote_code=cfg.trust_remote_code, device=str(where), options=options),
            load_tokenizer(m.judge_model, trust_remote_code=cfg.trust_remote_code))


def build_judge(cfg: RunConfig, policy: Any, tokenizer: Any, judge_lm: tuple[Any, Any] | None = None) -> Judge:
    """The run's grading judge. ``llm`` generates with ``judge_lm`` (a loaded ``mining.judge_model``
    and its tokenizer) or else the policy itself, in its weights' compute dtype; its rubric,
    scale and threshold come from the ``mining`` section."""
    import torch

    from aptune.evaluate.generation import make_generate_fn
    from aptune.evaluate.judges import get_judge
    from aptune.model_config import compute_dtype

    m = cfg.mining
    if m.judge != "llm":
        return get_judge(m.judge or "auto")
    model, tok = judge_lm if judge_lm is not None else (policy, tokenizer)
    param = next(model.parameters())
    weights = param.dtype if param.is_floating_point() else torch.bfloat16  # quantized: bnb computes in bf16
    generate = make_generate_fn(model, tok, dtype=compute_dtype(cfg.precision, weights, param.device))
    return get_judge("llm", generate=generate, threshold=m.judge_threshold, scale=m.judge_scale, rubric=m.judge_rubric)


def eval_settings(cfg: RunConfig) -> EvalSettings:
    """The run config's ``prompt`` and ``mining`` sections as the evaluator takes them."""
    return EvalSettings(
        prompt=PromptFormat(cfg.prompt.template, cfg.prompt.mc_format, cfg.prompt.system_prompt, cfg.prompt.shots,
                            cfg.prompt.cot),
        mc_metric=cfg.mining.mc_metric,
        max_new_tokens=cfg.mining.max_new_tokens,
        seed=cfg.seed,
        judge=cfg.mining.judge,
        generation_backend=cfg.mining.generation_backend,
        too_long=cfg.prompt.too_long,
    )


def view_sets(cfg: RunConfig) -> dict[str, TaskSet]:
    """Each evaluated view's task set (the gate's ``general_dev`` resolved to its tasks)."""
    return {"domain": cfg.domain_eval, "general": cfg.general_eval, "dev": cfg.dev,
            "general_dev": cfg.general_dev.resolved(cfg.general_eval)}


def view_tasks(cfg: RunConfig) -> dict[str, list[Example]]:
    """Every evaluated item of a round, keyed ``view/task``."""
    tasks: dict[str, list[Example]] = {}
    for view, ts in view_sets(cfg).items():
        for name, examples in load_taskset(ts, cfg.seed, cfg.prompt.shots).items():
            tasks[f"{view}/{name}"] = examples
    return tasks


def summarize_views(items_by_task: dict[str, list[dict[str, Any]]], seed: int) -> dict[str, Any]:
    """Pooled accuracy per view (domain / general / dev) with bootstrap intervals."""
    summary: dict[str, Any] = {}
    for view in VIEWS:
        correct = [row["correct"] for task, rows in items_by_task.items() if task.startswith(view + "/") for row in rows]
        if correct:
            summary[view] = bootstrap_mean(correct, seed=seed).to_summary_dict()
    return summary


def paired_change(run_dir: RunDir, round_index: int, seed: int = 0) -> dict[str, Any]:
    """Per view, round ``round_index`` against round 0 on the same items: the accuracy change
    (fraction) with a 95% paired bootstrap interval. Views without items are left out."""
    before = _correct_by_item(run_dir, 0)
    after = _correct_by_item(run_dir, round_index)
    change: dict[str, Any] = {}
    for view in VIEWS:
        keys = sorted(k for k in after if k[0] == view and k in before)
        if keys:
            change[view] = paired_bootstrap_delta([after[k] for k in keys], [before[k] for k in keys], seed=seed)
    return change


def _correct_by_item(run_dir: RunDir, round_index: int) -> dict[tuple[str, str, str], float]:
    rows = read_jsonl(run_dir.predictions(round_index))
    return {(row["task"].split("/", 1)[0], row["task"], str(row["id"])): float(row["correct"]) for row in rows}
