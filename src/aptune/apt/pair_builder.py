"""Preference pairs from weakness cases and their similar cases (SPEC-APT step 5).

- weakness case: chosen = gold answer, rejected = the model's own wrong answer;
- similar case the model gets wrong: the same;
- similar case the model gets right: chosen = gold, rejected by ``similar_negative``:
  ``model_wrong`` — for multiple choice, the wrong option the model itself finds most likely
  (a hard negative: what it would say if it slipped); for generative items, which have no
  such option, it falls back to ``other_gold``;
  ``other_gold`` — the gold answer of another retrieved item (what the released code does).

Prompts and answers are rendered by ``aptune.prompts`` — the format the model answered in.
In letter format each pair's options are shuffled (seeded) before rendering, so that a gain
cannot come from learning which letter tends to be right (../shared/FINDINGS.md); in cloze
format no options are shown and there is no position to learn.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from aptune.data.example import Example
from aptune.prompts import PromptFormat, render_answer, render_prompt
from aptune.train.pairs import PreferencePair

log = logging.getLogger(__name__)


def _most_likely_wrong(row: dict[str, Any], example: Example, use_norm: bool) -> int | None:
    """Index of the highest-scoring wrong option under the metric the model answered with."""
    logprobs = row.get("logprobs")
    if not logprobs:
        return None
    scores = [
        lp / max(len(choice), 1) if use_norm else lp
        for lp, choice in zip(logprobs, example.choices)
    ]
    wrong = [i for i in range(len(scores)) if i != example.gold]
    return max(wrong, key=lambda i: scores[i]) if wrong else None


def _permuted(example: Example, rejected: int, rng: random.Random) -> tuple[Example, int]:
    """The example with its options shuffled; gold and the rejected index follow their text."""
    order = list(range(len(example.choices)))
    rng.shuffle(order)
    choices = tuple(example.choices[i] for i in order)
    assert example.gold is not None
    return replace(example, choices=choices, gold=order.index(example.gold)), order.index(rejected)


def build_pairs(
    weakness_rows: Sequence[dict[str, Any]],
    similar_rows: Sequence[dict[str, Any]],
    tokenizer: Any,
    fmt: PromptFormat,
    *,
    similar_negative: str = "model_wrong",
    permute_options: bool = True,
    mc_metric: str = "acc",
    seed: int = 0,
) -> list[tuple[PreferencePair, str]]:
    """Pairs with their source ("weakness" or "similar"), in a deterministic order.

    ``*_rows`` are mining answer rows (``apt.mining.answer_row``). A similar case with no
    usable negative is skipped and logged, never paired with a copy of its own gold.
    """
    rng = random.Random(seed)
    use_norm = mc_metric == "acc_norm"
    golds = [Example.from_dict(r["example"]).reference for r in similar_rows]
    out: list[tuple[PreferencePair, str]] = []
    skipped = 0
    for source, rows in (("weakness", weakness_rows), ("similar", similar_rows)):
        for row in rows:
            ex = Example.from_dict(row["example"])
            rejected: int | str | None
            if not row["correct"]:
                rejected = row["prediction"]
            elif ex.is_multiple_choice and similar_negative == "model_wrong":
                rejected = _most_likely_wrong(row, ex, use_norm)
            else:
                others = [g for g in golds if g.strip() != ex.reference.strip()]
                rejected = rng.choice(others) if others else None
            if rejected is None or rejected == ex.gold:
                skipped += 1
                continue
            if isinstance(rejected, int) and ex.is_multiple_choice and permute_options and fmt.mc_format == "letter":
                ex, rejected = _permuted(ex, rejected, rng)
            assert ex.gold is not None or not ex.is_multiple_choice
            chosen = render_answer(ex, ex.gold if ex.is_multiple_choice else ex.reference, tokenizer, fmt)
            pair = PreferencePair(
                id=ex.id,
                prompt=render_prompt(ex, tokenizer, fmt),
                chosen=chosen,
                rejected=render_answer(ex, rejected, tokenizer, fmt),
            )
            if pair.chosen == pair.rejected:
                skipped += 1
                continue
            out.append((pair, source))
    if skipped:
        log.info("pairs: skipped %d cases with no usable negative", skipped)
    return out
