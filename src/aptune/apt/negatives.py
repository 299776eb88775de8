"""Sampled negatives: a wrong answer the model itself might give, for items it answers right.

A similar case the model already answers correctly has no wrong answer of its own to push
away from. For multiple choice its most likely wrong option is one (``pair_builder``); a
generative item has no options, so ``pairs.similar_negative: model_sample`` draws
``pairs.samples`` answers from the round's model at ``pairs.temperature`` and keeps the first one
the mining judge scores wrong — a negative from the model's own distribution, graded by the
same rule that found the weakness cases. Items where every sample is right get none (the pair
builder then falls back to another item's gold answer and counts it).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch

from aptune.data.example import Example
from aptune.evaluate.generation import Sampling, generate_samples
from aptune.evaluate.judges import Judge, normalize_answer
from aptune.evaluate.runner import EvalSettings, cut_at_stop, generation_groups
from aptune.modeling import prompt_budget
from aptune.prompts import render_prompt

log = logging.getLogger(__name__)


def sample_negatives(
    model: torch.nn.Module,
    tokenizer: Any,
    rows: Sequence[dict[str, Any]],
    settings: EvalSettings,
    judge: Judge,
    sampling: Sampling,
    *,
    dtype: torch.dtype = torch.float32,
    progress: bool = True,
) -> dict[str, str]:
    """Item id → the first sampled answer ``judge`` scores wrong, for the answer ``rows`` given
    (mining rows of generative items); items with no wrong sample are left out."""
    examples = [Example.from_dict(row["example"]) for row in rows]
    if not examples:
        return {}
    prompts = [render_prompt(ex, tokenizer, settings.prompt) for ex in examples]
    samples: list[list[str]] = [[] for _ in examples]
    for (budget, stop), members in generation_groups(examples, tokenizer, settings).items():
        drawn = generate_samples(model, tokenizer, [prompts[i] for i in members], sampling, max_new_tokens=budget,
                                 dtype=dtype, progress=progress, max_prompt_tokens=prompt_budget(model, budget), stop=stop)
        for i, texts in zip(members, drawn):
            samples[i] = [cut_at_stop(t, stop) for t in texts]
    flat = [(ex, text) for ex, texts in zip(examples, samples) for text in texts]
    verdicts = judge.judge_many([ex for ex, _ in flat], [text for _, text in flat])
    negatives: dict[str, str] = {}
    for (ex, text), verdict in zip(flat, verdicts):
        if ex.id in negatives or verdict.correct or not text.strip():
            continue
        if normalize_answer(text) != normalize_answer(ex.reference):
            negatives[ex.id] = text
    log.info("sampled negatives: %d of %d items got a wrong sample (%d samples each)",
             len(negatives), len(examples), sampling.n)
    return negatives
