"""Deterministic train/dev/test assignment for sources that ship a single split.

An item's split is a pure function of (task, item id): a SHA-256 hash mapped to [0, 1) and cut
at 60% / 70%. It does not depend on the run seed, on ``limit``, or on which other items exist,
so adding items never moves old ones, every run and seed sees the same held-out set, and
training never sees a test item. Within a split, items are ordered by a second hash salted
with the seed, and ``limit`` takes a prefix of that order: a smaller sample is always a
subset of a larger one, spread over the whole source rather than its first rows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from aptune.data.example import Example

SPLITS: tuple[str, ...] = ("train", "dev", "test")
FRACTIONS: dict[str, float] = {"train": 0.6, "dev": 0.1, "test": 0.3}
SALT = "aptune-split-v1"


def _unit(text: str) -> float:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2**64


def assign_split(task: str, item_id: str) -> str:
    u = _unit(f"{SALT}:{task}:{item_id}")
    if u < FRACTIONS["train"]:
        return "train"
    if u < FRACTIONS["train"] + FRACTIONS["dev"]:
        return "dev"
    return "test"


def select(examples: Sequence[Example], split: str, limit: int | None = None, seed: int = 0) -> list[Example]:
    """Items of ``split`` ("source" = all, in source order), seeded order, first ``limit``."""
    if split == "source":
        chosen = list(examples)
    elif split in SPLITS:
        chosen = [ex for ex in examples if ex.meta.get("split", assign_split(ex.task, ex.id)) == split]
        chosen.sort(key=lambda ex: _unit(f"{seed}:{ex.task}:{ex.id}"))
    else:
        raise ValueError(f"split must be one of train, dev, test, source; not {split!r}")
    return chosen if limit is None else chosen[:limit]
