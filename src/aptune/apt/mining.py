"""Weakness case acquisition: the model answers the domain pool; the judge finds its mistakes.

The answers come from the same code that evaluation uses (``aptune.evaluate.runner.answer``),
so an item is a weakness case exactly when evaluation would score it wrong. Every answer row
carries the item itself, so later stages (and ``aptune pairs`` run alone) need only files; the
run directory (``aptune.run.run_dir``) decides where those files go.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch

from aptune.data.example import Example
from aptune.evaluate.judges import Judge
from aptune.evaluate.runner import EvalSettings, ItemResult, answer, skip_too_long

log = logging.getLogger(__name__)


def answer_row(result: ItemResult) -> dict[str, Any]:
    """One pool item as the mining stage records it."""
    row = result.to_row()
    row["answer_text"] = result.answer_text
    row["example"] = result.example.to_dict()
    return row


def mine(
    model: torch.nn.Module,
    tokenizer: Any,
    pool: Sequence[Example],
    settings: EvalSettings,
    dtype: torch.dtype,
    *,
    judge: Judge | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Answer ``pool``; one row per item (``correct`` False marks a weakness case). With
    ``prompt.too_long: skip``, items that do not fit the context are left out, each named in the log."""
    if not pool:
        raise ValueError("the domain pool is empty: nothing to mine")
    pool, _ = skip_too_long(model, tokenizer, pool, settings, "mining")
    if not pool:
        raise ValueError("no pool item fits the model's context (prompt.too_long: skip left out every one)")
    results = answer(model, tokenizer, pool, settings, dtype, judge=judge, progress=progress, desc="mining")
    rows = [answer_row(r) for r in results]
    wrong = sum(not row["correct"] for row in rows)
    log.info("mining: %d of %d pool items wrong (%.1f%%)", wrong, len(rows), 100 * wrong / len(rows))
    return rows
