"""Weakness case acquisition: the model answers the domain pool; the judge finds its mistakes.

The answers come from the same code that evaluation uses (``aptune.evaluate.runner.answer``),
so an item is a weakness case exactly when evaluation would score it wrong. Every answer row
carries the item itself, so later stages (and ``aptune pairs`` run alone) need only files.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from aptune.data.example import Example
from aptune.evaluate.runner import EvalSettings, ItemResult, answer
from aptune.io import read_jsonl, write_jsonl_atomic

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
    round_dir: Path,
    *,
    judge: Any = None,
    progress: bool = True,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Answer ``pool``, write ``answers.jsonl`` then ``weakness.jsonl``; return both row lists."""
    if not pool:
        raise ValueError("the domain pool is empty: nothing to mine")
    results = answer(model, tokenizer, pool, settings, dtype, judge=judge, progress=progress, desc="mining")
    rows = [answer_row(r) for r in results]
    weakness = [row for row in rows if not row["correct"]]
    write_jsonl_atomic(round_dir / "answers.jsonl", rows)
    write_jsonl_atomic(round_dir / "weakness.jsonl", weakness)  # written last: marks the stage done
    log.info("mining: %d of %d pool items wrong (%.1f%%)", len(weakness), len(rows), 100 * len(weakness) / len(rows))
    return rows, weakness


def load_answers(round_dir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The mining stage's outputs, read back for the next stages."""
    return read_jsonl(round_dir / "answers.jsonl"), read_jsonl(round_dir / "weakness.jsonl")
