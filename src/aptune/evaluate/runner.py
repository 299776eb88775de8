"""Evaluate a model on named tasks: per-item predictions, per-task metrics with intervals.

Multiple-choice tasks are scored by log-likelihood (``scoring.py``); generative tasks are
answered greedily (``generation.py``) and graded by a judge. The same functions produce the
per-item correctness that APT's mining stage turns into weakness cases, so "wrong" means the
same thing in evaluation and in training.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from aptune.data.example import Example
from aptune.evaluate.judges import UNPARSABLE, Judge, get_judge
from aptune.evaluate.metrics import TaskMetrics, bootstrap_mean, position_stats
from aptune.evaluate.scoring import score_choices
from aptune.io import write_json_atomic, write_jsonl_atomic
from aptune.modeling import context_length, prompt_budget
from aptune.prompts import PromptFormat, encode_prompt, render_prompt, stop_strings

log = logging.getLogger(__name__)

MCMetric = Literal["acc", "acc_norm"]
#: the answer budget of an item whose task names none, when the settings name none either
DEFAULT_MAX_NEW_TOKENS = 64


@dataclass(frozen=True)
class EvalSettings:
    """How answers are produced and graded; shared by ``aptune eval`` and APT mining."""

    prompt: PromptFormat = field(default_factory=PromptFormat)
    mc_metric: MCMetric = "acc"  # which MC prediction counts as "the model's answer"
    max_new_tokens: int | None = None  # None: each task's own budget (``meta["max_new_tokens"]``), else 64
    max_tokens_per_batch: int = 4096
    generation_batch_size: int = 16
    bootstrap_resamples: int = 1000
    seed: int = 0
    judge: str | None = None  # None: choice for MC, final_number / short_answer / exact_match for generative
    generation_backend: str = "transformers"  # see aptune.evaluate.backends
    too_long: Literal["truncate", "error", "skip"] = "truncate"  # prompts beyond the model's context


@dataclass
class ItemResult:
    """One item's outcome: the answer the model gave and whether it is right."""

    example: Example
    correct: bool
    prediction: int | str  # choice index (MC) or generated text
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def answer_text(self) -> str:
        """The model's answer as text (the rejected side of a preference pair when wrong)."""
        if isinstance(self.prediction, int):
            return self.example.choices[self.prediction]
        return self.prediction

    def to_row(self) -> dict[str, Any]:
        ex = self.example
        row: dict[str, Any] = {"id": ex.id, "task": ex.task, "domain": ex.domain}
        if ex.is_multiple_choice:
            row.update(gold=ex.gold, prediction=self.prediction)
        else:
            row.update(reference=ex.answer, prediction=self.prediction)
        row["correct"] = self.correct
        row.update(self.extra)
        return row


def answer_multiple_choice(
    model: torch.nn.Module,
    tokenizer: Any,
    examples: Sequence[Example],
    settings: EvalSettings,
    dtype: torch.dtype,
    *,
    progress: bool = True,
    desc: str = "scoring",
) -> list[ItemResult]:
    """Score MC items; the prediction follows ``settings.mc_metric``."""
    scores = score_choices(
        model,
        tokenizer,
        examples,
        settings.prompt,
        dtype=dtype,
        max_tokens=settings.max_tokens_per_batch,
        progress=progress,
        desc=desc,
        max_length=context_length(model),
        too_long=settings.too_long,
    )
    results = []
    for ex, sc in zip(examples, scores):
        pred = sc.prediction_norm if settings.mc_metric == "acc_norm" else sc.prediction
        extra = {
            "pred_acc": sc.prediction,
            "pred_acc_norm": sc.prediction_norm,
            "correct_acc": sc.prediction == ex.gold,
            "correct_acc_norm": sc.prediction_norm == ex.gold,
            "logprobs": [round(x, 5) for x in sc.logprobs],
        }
        results.append(ItemResult(ex, pred == ex.gold, pred, extra))
    return results


def max_new_tokens(example: Example, settings: EvalSettings) -> int:
    """An item's answer budget: the settings' where they name one, else its task's own
    (``meta["max_new_tokens"]``: GSM8K's worked solutions need more room than a short answer)."""
    if settings.max_new_tokens is not None:
        return settings.max_new_tokens
    return int(example.meta.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS))


def generation_groups(examples: Sequence[Example], tokenizer: Any,
                      settings: EvalSettings) -> dict[tuple[int, tuple[str, ...]], list[int]]:
    """Item indices by (answer budget, stop strings): the items that generate together (a task's
    items all share one group). Evaluation and sampled negatives group the same way."""
    groups: dict[tuple[int, tuple[str, ...]], list[int]] = {}
    for i, ex in enumerate(examples):
        groups.setdefault((max_new_tokens(ex, settings), stop_strings(ex, tokenizer, settings.prompt)), []).append(i)
    return groups


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """``text`` up to its first stop string (whichever backend generated it, and however far)."""
    cut = min((i for s in stop if (i := text.find(s)) >= 0), default=len(text))
    return text[:cut].strip()


def answer_generative(
    model: torch.nn.Module,
    tokenizer: Any,
    examples: Sequence[Example],
    settings: EvalSettings,
    dtype: torch.dtype,
    *,
    judge: Judge | None = None,
    progress: bool = True,
    desc: str = "generating",
) -> list[ItemResult]:
    """Generate greedy answers and grade them in one batch with ``judge``.

    ``judge`` defaults to ``get_judge(settings.judge or "auto")``: the exact check that fits
    each item. An ``llm`` judge needs a generate function, so callers build it and pass it in.
    """
    from aptune.evaluate.backends import get_backend

    judge = judge if judge is not None else get_judge(settings.judge or "auto")
    prompts = [render_prompt(ex, tokenizer, settings.prompt) for ex in examples]
    outputs: list[str] = [""] * len(examples)
    for (budget, stop), rows in generation_groups(examples, tokenizer, settings).items():
        limit = prompt_budget(model, budget)
        if limit is not None:
            for i in rows:
                ids = encode_prompt(tokenizer, prompts[i])  # with the BOS the model will see
                if len(ids) <= limit:
                    continue
                where = f"task {examples[i].task!r} item {examples[i].id!r}"
                if settings.too_long == "error":
                    raise ValueError(f"{where}: prompt is {len(ids)} tokens, more than the model's context minus "
                                     f"max_new_tokens ({limit}) (prompt.too_long: truncate cuts it from the left)")
                log.warning("%s: prompt is %d tokens, more than the model's context minus max_new_tokens (%d); "
                            "cut from the left", where, len(ids), limit)
        backend = get_backend(settings.generation_backend, model, tokenizer, dtype=dtype,
                              batch_size=settings.generation_batch_size, max_prompt_tokens=limit, progress=progress,
                              desc=desc)
        texts = backend.generate([prompts[i] for i in rows], budget, stop=stop) if stop else \
            backend.generate([prompts[i] for i in rows], budget)
        for i, text in zip(rows, texts):
            outputs[i] = cut_at_stop(text, stop)
    results = []
    for ex, text, verdict in zip(examples, outputs, judge.judge_many(examples, outputs)):
        extra: dict[str, Any] = {"judge": verdict.judge or judge.name, "judge_detail": verdict.detail}
        if verdict.score is not None:
            extra["judge_score"] = verdict.score
        if verdict.f1 is not None:
            extra["f1"] = verdict.f1
        results.append(ItemResult(ex, verdict.correct, text, extra))
    return results


def answer(
    model: torch.nn.Module,
    tokenizer: Any,
    examples: Sequence[Example],
    settings: EvalSettings,
    dtype: torch.dtype,
    *,
    judge: Judge | None = None,
    progress: bool = True,
    desc: str = "answering",
) -> list[ItemResult]:
    """Answer a mixed list of items, input order kept; under ``accelerate launch`` each process
    answers a slice and every process gets all results (``aptune.distributed.map_sharded``)."""
    from aptune.distributed import is_main, map_sharded

    return map_sharded(lambda part: _answer_local(model, tokenizer, part, settings, dtype, judge=judge,
                                                  progress=progress and is_main(), desc=desc), examples)


def _answer_local(
    model: torch.nn.Module,
    tokenizer: Any,
    examples: Sequence[Example],
    settings: EvalSettings,
    dtype: torch.dtype,
    *,
    judge: Judge | None = None,
    progress: bool = True,
    desc: str = "answering",
) -> list[ItemResult]:
    """Answer a mixed list of items (MC by scoring, the rest by generation), input order kept."""
    mc = [i for i, ex in enumerate(examples) if ex.is_multiple_choice]
    gen = [i for i, ex in enumerate(examples) if not ex.is_multiple_choice]
    out: list[ItemResult | None] = [None] * len(examples)
    if mc:
        for i, r in zip(mc, answer_multiple_choice(
            model, tokenizer, [examples[i] for i in mc], settings, dtype, progress=progress, desc=desc
        )):
            out[i] = r
    if gen:
        for i, r in zip(gen, answer_generative(
            model, tokenizer, [examples[i] for i in gen], settings, dtype, judge=judge, progress=progress, desc=desc
        )):
            out[i] = r
    return [r for r in out if r is not None]


def summarize(task: str, results: Sequence[ItemResult], settings: EvalSettings) -> TaskMetrics:
    """Accuracy (and acc_norm for MC) with bootstrap intervals and position statistics."""
    domain = results[0].example.domain if results else ""
    tm = TaskMetrics(task=task, domain=domain, n=len(results))
    boot = {"resamples": settings.bootstrap_resamples, "seed": settings.seed}
    tm.metrics["accuracy"] = bootstrap_mean([r.correct for r in results], **boot)
    mc = [r for r in results if r.example.is_multiple_choice]
    if mc and len(mc) == len(results):
        tm.metrics["acc"] = bootstrap_mean([r.extra["correct_acc"] for r in mc], **boot)
        tm.metrics["acc_norm"] = bootstrap_mean([r.extra["correct_acc_norm"] for r in mc], **boot)
        tm.positions = position_stats(
            [int(r.example.gold or 0) for r in mc], [int(r.prediction) for r in mc]
        )
    f1s = [float(r.extra["f1"]) for r in results if "f1" in r.extra]
    if f1s:  # the second metric of worded answers, set by their judges (Verdict.f1)
        tm.metrics["f1"] = bootstrap_mean(f1s, **boot)
    tm.judge_unparsable = sum(str(r.extra.get("judge_detail", "")).startswith(UNPARSABLE) for r in results)
    return tm


@dataclass
class EvalReport:
    """Results of one evaluation: per task, the item results and the summary metrics."""

    items: dict[str, list[ItemResult]]
    metrics: dict[str, TaskMetrics]

    def write(self, out_dir: str | Path, extra: Mapping[str, Any] | None = None) -> Path:
        """Write ``predictions.jsonl`` and ``metrics.json`` (atomically) into ``out_dir``."""
        out = Path(out_dir)
        # "task" is the name the item was evaluated under (e.g. "dev/sciq" in an APT round)
        rows = [{**r.to_row(), "task": name} for name, results in self.items.items() for r in results]
        write_jsonl_atomic(out / "predictions.jsonl", rows)
        payload = {"tasks": {t: m.to_dict() for t, m in self.metrics.items()}}
        if extra:
            payload.update(extra)
        write_json_atomic(out / "metrics.json", payload)
        return out


def too_long(model: torch.nn.Module, tokenizer: Any, examples: Sequence[Example],
             settings: EvalSettings) -> list[tuple[Example, int, int]]:
    """The items whose input does not fit the model's context, with (item, tokens, limit): a
    multiple-choice prompt with its longest choice, or a prompt with its answer budget."""
    from aptune.prompts import choice_continuations, encode_continuation

    length = context_length(model)
    if length is None:
        return []
    out = []
    for ex in examples:
        prompt = render_prompt(ex, tokenizer, settings.prompt)
        if ex.is_multiple_choice:
            need = max(sum(map(len, encode_continuation(tokenizer, prompt, c)))
                       for c in choice_continuations(ex, tokenizer, settings.prompt))
            limit = length
        else:
            need, limit = len(encode_prompt(tokenizer, prompt)), prompt_budget(model, max_new_tokens(ex, settings))
        if limit is not None and need > limit:
            out.append((ex, need, limit))
    return out


def skip_too_long(model: torch.nn.Module, tokenizer: Any, examples: Sequence[Example], settings: EvalSettings,
                  what: str) -> tuple[list[Example], list[str]]:
    """With ``too_long: skip``, the items that fit and the ids of those left out (each named in
    the log); otherwise every item and no ids."""
    if settings.too_long != "skip":
        return list(examples), []
    over = too_long(model, tokenizer, examples, settings)
    if not over:
        return list(examples), []
    dropped = {id(ex) for ex, _, _ in over}
    for ex, need, limit in over:
        log.warning("%s: task %r item %r skipped: %d tokens, more than the %d that fit (prompt.too_long: skip)",
                    what, ex.task, ex.id, need, limit)
    return [ex for ex in examples if id(ex) not in dropped], [ex.id for ex, _, _ in over]


def evaluate(
    model: torch.nn.Module,
    tokenizer: Any,
    tasks: Mapping[str, Sequence[Example]],
    settings: EvalSettings,
    dtype: torch.dtype,
    *,
    judge: Judge | None = None,
    progress: bool = True,
) -> EvalReport:
    """Evaluate every task; an empty task is reported and skipped, never a crash."""
    items: dict[str, list[ItemResult]] = {}
    metrics: dict[str, TaskMetrics] = {}
    for name, examples in tasks.items():
        examples, skipped = skip_too_long(model, tokenizer, examples, settings, name)
        if not examples:
            log.warning("task %s has no items%s; skipped", name, " that fit the context" if skipped else "")
            continue
        results = answer(model, tokenizer, examples, settings, dtype, judge=judge, progress=progress, desc=name)
        items[name] = results
        metrics[name] = summarize(name, results, settings)
        metrics[name].skipped_too_long = skipped
    return EvalReport(items, metrics)
