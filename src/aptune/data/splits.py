"""Deterministic train/dev/test assignment, and which items a ``split`` argument selects.

An item's split is a pure function of (task, item id): SHA-256 of "aptune-split-v1:<task>:<id>"
mapped to [0, 1) and cut at 0.6 and 0.7, so about 60% train, 10% dev, 30% test. It does not
depend on the seed, on ``limit``, or on which other items exist: adding items never moves old
ones, and a model trained with any seed has never seen any seed's test items. A user file's
``split`` column, where given, overrides the hash for that row.

The seed only orders the items within a split (a second hash, salted with the seed), and
``limit`` takes a prefix of that order: a smaller sample is a subset of a larger one, spread
over the whole source rather than its first rows.

Split names: ``train``, ``dev``, ``test``; ``source`` = every item in source order (for parity
with lm-eval, whose ``limit`` takes the first rows); ``source:<name>`` = the items of one
source split (e.g. MMLU's ``source:test``) in source order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from aptune.data.example import Example

SPLITS: tuple[str, ...] = ("train", "dev", "test")
FRACTIONS: dict[str, float] = {"train": 0.6, "dev": 0.1, "test": 0.3}
SALT = "aptune-split-v1"


def _unit(text: str) -> float:
    """A uniform number in [0, 1) from a string, identical on every machine and process."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2**64


def assign_split(task: str, item_id: str) -> str:
    """The hash split (train/dev/test) of an item; see the module docstring."""
    u = _unit(f"{SALT}:{task}:{item_id}")
    if u < FRACTIONS["train"]:
        return "train"
    if u < FRACTIONS["train"] + FRACTIONS["dev"]:
        return "dev"
    return "test"


def split_of(example: Example) -> str:
    """The split an item belongs to: its file's ``split`` column, else the hash split."""
    return str(example.meta.get("split") or assign_split(example.task, example.id))


def select(examples: Sequence[Example], split: str, limit: int | None = None, seed: int = 0) -> list[Example]:
    """The items of ``split`` (see the module docstring), first ``limit`` of them."""
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be a non-negative number of items, not {limit}")
    if split == "source":
        chosen = list(examples)
    elif split.startswith("source:"):
        wanted = split.removeprefix("source:")
        chosen = [ex for ex in examples if ex.meta.get("source_split") == wanted]
        if not chosen and examples:
            have = sorted({str(ex.meta.get("source_split")) for ex in examples})
            raise ValueError(f"split {split!r}: no items; this task's source splits are {', '.join(have)}")
    elif split in SPLITS:
        chosen = [ex for ex in examples if split_of(ex) == split]
        chosen.sort(key=lambda ex: _unit(f"{seed}:{ex.task}:{ex.id}"))
    else:
        raise ValueError(f"split must be train, dev, test, source or source:<name>; not {split!r}")
    return chosen if limit is None else chosen[:limit]
