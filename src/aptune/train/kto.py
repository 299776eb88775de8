"""KTO's data: unpaired desirable and undesirable examples, each with a mismatched completion.

KTO (Ethayarajh et al. 2024) learns from single answers labelled desirable or undesirable,
not from pairs. In APT a round's rows become examples as follows: every gold answer is a
desirable example; every rejected side that is something the model said or would say (its own
wrong answer, its most likely wrong option, a wrong sampled answer, a user's rejected answer) is
an undesirable one. A rejected side that is another item's gold (``other_gold``, the fallback
when the model offered nothing wrong) is not the model's behaviour, and KTO, unlike DPO, does
not need it: that case gives its desirable example alone.

KTO's reference point is the KL divergence between policy and reference, estimated from
*mismatched* prompt/completion pairs (a prompt with another example's completion), detached
and clamped at zero. TRL rotates completions by one within each batch and so needs sequential
sampling; here the rotation is fixed once over a seeded order of the examples (each prompt
takes the next example's completion whose prompt differs), so the mismatched completion is part
of the data: the trainer's pair machinery scores it in the same forward pass as the
completion (one shared prompt when packed), its reference log-prob is computed once with the
others, and batches can be length-grouped and shuffled. The estimate is the same quantity,
E over prompts and other completions of log pi/pi_ref, averaged over the batch's examples.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aptune.train.pairs import PreferencePair

#: rejected sides that are not the model's own behaviour, so not undesirable examples for KTO
NOT_THE_MODELS = frozenset({"other_gold"})


@dataclass(frozen=True)
class KTOExample:
    """One answer to one prompt, labelled desirable (the gold) or undesirable (a wrong answer)."""

    id: str
    prompt: str
    completion: str
    desirable: bool


def examples_from_pair_rows(rows: Sequence[Mapping[str, Any]]) -> list[KTOExample]:
    """KTO examples from ``pairs.jsonl`` rows (module docstring): ``<id>+`` for the gold,
    ``<id>-`` for the rejected side where it is the model's own. A user's unpaired row has one
    side only (the other null) and gives that one example."""
    out: list[KTOExample] = []
    for row in rows:
        if row.get("chosen") is not None:
            out.append(KTOExample(f"{row['id']}+", row["prompt"], row["chosen"], True))
        if row.get("rejected") is not None and row.get("negative") not in NOT_THE_MODELS:
            out.append(KTOExample(f"{row['id']}-", row["prompt"], row["rejected"], False))
    return out


def with_kl_completions(examples: Sequence[KTOExample], seed: int) -> tuple[list[PreferencePair], dict[str, bool]]:
    """Each example as a pair (chosen = its completion, rejected = a mismatched completion for
    the KL estimate) and its label by id. Deterministic in ``seed``; needs two distinct prompts."""
    if not examples:
        raise ValueError("no KTO examples to train on")
    ids = [ex.id for ex in examples]
    if len(set(ids)) != len(ids):
        raise ValueError("KTO example ids must be unique")
    if len({ex.prompt for ex in examples}) < 2:
        raise ValueError("KTO needs examples of at least two prompts: the KL estimate pairs each prompt "
                         "with another prompt's completion")
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    pairs, labels = [], {}
    for pos, k in enumerate(order):
        ex = examples[k]
        step = 1
        while examples[order[(pos + step) % len(order)]].prompt == ex.prompt:
            step += 1
        mismatched = examples[order[(pos + step) % len(order)]].completion
        pairs.append(PreferencePair(ex.id, ex.prompt, ex.completion, mismatched))
        labels[ex.id] = ex.desirable
    return pairs, labels
