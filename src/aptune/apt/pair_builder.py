"""Preference pairs from weakness cases and their similar cases (APT's pair-building step).

- weakness case: chosen = gold answer, rejected = the model's own wrong answer;
- similar case the model gets wrong: the same;
- similar case the model gets right: chosen = gold, rejected by ``similar_negative``:
  ``model_wrong`` — for multiple choice, the wrong option the model itself finds most likely
  (a hard negative: what it would say if it slipped); for generative items, which have no
  such option, it falls back to ``other_gold``;
  ``model_sample`` — the same for multiple choice; for generative items, an answer sampled
  from the model that the judge scores wrong (``apt.negatives``), else ``other_gold``;
  ``other_gold`` — the gold answer of another retrieved item (what the released code does).

Every pair records which rule gave its rejected side (``negative``): ``own_answer``,
``most_likely_wrong``, ``sampled`` or ``other_gold``.

Prompts and answers are rendered by ``aptune.prompts`` — the format the model answered in.
In letter format each pair's options are shuffled (seeded) before rendering, so that a gain
cannot come from learning which letter tends to be right (``aptune.data.options``); in cloze
format no options are shown and there is no position to learn.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aptune.data.example import Example
from aptune.data.options import shuffle_options
from aptune.prompts import PromptFormat, gold_answer, render_answer, render_prompt
from aptune.train.pairs import PreferencePair

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuiltPair:
    """A preference pair with where it came from (``weakness``/``similar``) and how its
    rejected side was chosen."""

    pair: PreferencePair
    source: str
    negative: str


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


def _gold_text(example: Example, fmt: PromptFormat) -> str:
    """An item's gold answer as text (another item's ``other_gold`` negative)."""
    return example.reference if example.is_multiple_choice else str(gold_answer(example, fmt))


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
    sampled_negatives: Mapping[str, str] | None = None,
) -> list[BuiltPair]:
    """Pairs in a deterministic order: the weakness cases, then the similar cases.

    ``*_rows`` are mining answer rows (``apt.mining.answer_row``); ``sampled_negatives`` maps an
    item id to a wrong sampled answer (``apt.negatives.sample_negatives``, for ``model_sample``).
    A case with no usable negative is skipped and logged, never paired with a copy of its own gold.
    """
    rng = random.Random(seed)
    use_norm = mc_metric == "acc_norm"
    sampled = sampled_negatives or {}
    golds = [_gold_text(Example.from_dict(r["example"]), fmt) for r in similar_rows]
    out: list[BuiltPair] = []
    skipped = 0
    for source, rows in (("weakness", weakness_rows), ("similar", similar_rows)):
        for row in rows:
            ex = Example.from_dict(row["example"])
            rejected: int | str | None
            if not row["correct"]:
                rejected, negative = row["prediction"], "own_answer"
            elif ex.is_multiple_choice and similar_negative in ("model_wrong", "model_sample"):
                rejected, negative = _most_likely_wrong(row, ex, use_norm), "most_likely_wrong"
            elif similar_negative == "model_sample" and row["id"] in sampled:
                rejected, negative = sampled[row["id"]], "sampled"
            else:
                others = [g for g in golds if g.strip() != _gold_text(ex, fmt).strip()]
                rejected, negative = (rng.choice(others) if others else None), "other_gold"
            if rejected is None or rejected == ex.gold:
                skipped += 1
                continue
            if isinstance(rejected, int) and ex.is_multiple_choice and permute_options and fmt.mc_format == "letter":
                ex, order = shuffle_options(ex, rng)
                rejected = order.index(rejected)
            assert ex.gold is not None or not ex.is_multiple_choice
            chosen = render_answer(ex, gold_answer(ex, fmt), tokenizer, fmt)
            pair = PreferencePair(
                id=ex.id,
                prompt=render_prompt(ex, tokenizer, fmt),
                chosen=chosen,
                rejected=render_answer(ex, rejected, tokenizer, fmt),
            )
            if pair.chosen == pair.rejected:
                skipped += 1
                continue
            out.append(BuiltPair(pair, source, negative))
    if skipped:
        log.info("pairs: skipped %d cases with no usable negative", skipped)
    kinds = Counter(b.negative for b in out if b.source == "similar")
    if similar_negative == "model_sample" and kinds["other_gold"]:
        log.info("pairs: %d similar cases had no wrong sampled answer; rejected = another item's gold", kinds["other_gold"])
    return out


def pairs_from_preference_items(examples: Sequence[Example], tokenizer: Any, fmt: PromptFormat,
                                source: str = "user") -> list[BuiltPair]:
    """Users' own preference rows (``prompt``/``chosen``/``rejected``, read by ``data/formats.py``)
    as pairs: chosen = the item's reference, rejected = ``meta["rejected"]``, both rendered in the
    run's format. An item without a rejected answer is a one-line error naming it."""
    out = []
    for ex in examples:
        rejected = ex.meta.get("rejected")
        if not isinstance(rejected, str) or not rejected.strip():
            raise ValueError(f"task {ex.task!r} item {ex.id!r}: no rejected answer; preference data needs "
                             "prompt, chosen and rejected")
        pair = PreferencePair(id=ex.id, prompt=render_prompt(ex, tokenizer, fmt),
                              chosen=render_answer(ex, gold_answer(ex, fmt), tokenizer, fmt),
                              rejected=render_answer(ex, rejected, tokenizer, fmt))
        out.append(BuiltPair(pair, source, "user_rejected"))
    return out


def rows_from_unpaired_items(examples: Sequence[Example], tokenizer: Any, fmt: PromptFormat,
                             source: str = "user") -> list[dict[str, Any]]:
    """Users' unpaired rows (``prompt``/``completion``/``label``, TRL's KTO data, read by
    ``data/formats.py``) as one-sided pair rows: the completion, rendered in the run's format, on
    the chosen side when its label is desirable and on the rejected side when not, the other
    side null. Only the KTO loss trains on them (each side is its own example there)."""
    rows = []
    for ex in examples:
        answer = render_answer(ex, ex.reference, tokenizer, fmt)
        good = bool(ex.meta["desirable"])
        rows.append({"id": ex.id, "prompt": render_prompt(ex, tokenizer, fmt), "chosen": answer if good else None,
                     "rejected": None if good else answer, "source": source, "negative": "unpaired"})
    return rows
