"""lm-evaluation-harness tasks on the model aptune already holds: the general yardstick users trust.

``run_lm_eval`` wraps the loaded model (adapters applied, on its device) in lm-eval's ``HFLM``
and runs ``simple_evaluate`` in-process on the task names given (lm-eval's registry) or on task
YAMLs from ``include_path`` (a folder: tasks whose data are local files work offline). It
returns lm-eval's own metrics per task, each with lm-eval's standard error, and a primary metric
per task (``acc_norm`` where the task reports it, else ``acc``, else ``exact_match``, else its
first higher-is-better metric) that runs report beside aptune's figures and the
general-capability gate can read.

lm-eval is an optional extra (``pip install 'aptune[lm-eval]'``); asking for its tasks without
it is a one-line error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from aptune.models import autocast

#: the metrics tried, in order, as a task's primary metric
PRIMARY_ORDER = ("acc_norm", "acc", "exact_match", "f1", "mcc")


@dataclass
class LmEvalConfig:
    """The ``lm_eval`` section of a run config (and ``aptune eval --lm-eval``)."""

    tasks: list[str] = field(default_factory=list)  # lm-eval task or group names; [] = off
    include_path: str | None = None  # a folder of task YAMLs (relative to the config file)
    limit: int | None = None  # items per task (lm-eval's limit: its first items)
    num_fewshot: int | None = None  # None: each task's own default
    batch_size: int = 8
    gate: bool = True  # the general-capability gate also reads the mean primary metric

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"lm_eval.limit must be >= 1, not {self.limit}")
        if self.batch_size < 1:
            raise ValueError(f"lm_eval.batch_size must be >= 1, not {self.batch_size}")


def _primary(metrics: dict[str, Any], higher: dict[str, bool]) -> str | None:
    names = {key.split(",", 1)[0]: key for key, value in metrics.items()
             if isinstance(value, (int, float)) and "_stderr" not in key and key != "alias"}
    for wanted in PRIMARY_ORDER:
        if wanted in names:
            return wanted
    return next((n for n in names if higher.get(n, False)), None)


def run_lm_eval(model: torch.nn.Module, tokenizer: Any, cfg: LmEvalConfig, dtype: torch.dtype,
                seed: int = 0) -> dict[str, Any]:
    """lm-eval's results on ``model``: per task its metrics (value and stderr), its primary
    metric, and ``mean`` = the mean of the primary metrics (what the gate reads)."""
    try:
        import lm_eval
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise ValueError("lm_eval tasks need lm-evaluation-harness: pip install 'aptune[lm-eval]'") from None
    manager = TaskManager(include_path=cfg.include_path) if cfg.include_path else TaskManager()
    unknown = [t for t in cfg.tasks if t not in manager.all_tasks]
    if unknown:
        where = f" or in {cfg.include_path}" if cfg.include_path else ""
        raise ValueError(f"lm_eval: unknown task {unknown[0]!r} (not in lm-eval's registry{where})")
    padding_side = tokenizer.padding_side
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=cfg.batch_size)
        with autocast(dtype, device):
            out = lm_eval.simple_evaluate(model=lm, tasks=list(cfg.tasks), task_manager=manager, limit=cfg.limit,
                                          num_fewshot=cfg.num_fewshot, bootstrap_iters=1000, log_samples=False,
                                          random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed,
                                          fewshot_random_seed=seed)
    finally:
        tokenizer.padding_side = padding_side
        model.train(was_training)
    tasks: dict[str, Any] = {}
    for name, metrics in (out or {}).get("results", {}).items():
        primary = _primary(metrics, out.get("higher_is_better", {}).get(name, {}))
        values = {key.split(",", 1)[0]: float(v) for key, v in metrics.items()
                  if isinstance(v, (int, float)) and "_stderr" not in key}
        stderrs = {key.split(",", 1)[0].removesuffix("_stderr"): float(v) for key, v in metrics.items()
                   if "_stderr" in key and isinstance(v, (int, float))}
        n = (out.get("n-samples", {}).get(name) or {}).get("effective")
        tasks[name] = {"metrics": values, "stderr": stderrs, "primary": primary, "n": n}
    asked = [tasks[t] for t in cfg.tasks if t in tasks] or list(tasks.values())  # a group: its own row
    primaries = [t["metrics"][t["primary"]] for t in asked if t["primary"]]
    return {"tasks": tasks, "mean": sum(primaries) / len(primaries) if primaries else None,
            "version": getattr(lm_eval, "__version__", "?"), "limit": cfg.limit, "num_fewshot": cfg.num_fewshot}
