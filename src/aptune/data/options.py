"""Shuffling a multiple-choice item's options, for training sets built in letter format.

In letter format a small model learns which letter tends to be right long before it learns
the domain (it answers "A" to most items untrained); training on items whose options are
shuffled (seeded, per item) leaves no position to learn. Cloze format shows no options.
"""

from __future__ import annotations

import random
from dataclasses import replace

from aptune.data.example import Example


def shuffle_options(example: Example, rng: random.Random) -> tuple[Example, list[int]]:
    """The item with its options in a random order, gold following its text; and the order
    (``order[new] = old``), so a caller can move another index the same way
    (``order.index(old)``)."""
    if example.gold is None:
        raise ValueError(f"{example.task}/{example.id}: only a multiple-choice item with a gold option can be shuffled")
    order = list(range(len(example.choices)))
    rng.shuffle(order)
    shuffled = replace(example, choices=tuple(example.choices[i] for i in order), gold=order.index(example.gold))
    return shuffled, order
