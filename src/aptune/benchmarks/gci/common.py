"""Shared pieces of the constructed GCI generators: seeded randomness, answer formatting, MC assembly.

Every constructed item is a pure function of (generator seed, task, split family, item index):
each item gets its own ``random.Random`` seeded with a string (CPython seeds str via SHA-512,
so the items are identical on every machine and process, whatever ``PYTHONHASHSEED``), and item
``i`` does not depend on how many items are generated. The gold position cycles through the
choice slots, so the majority-position baseline of a constructed task is exactly 1/n.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from aptune.data.example import Example

#: The seed the registered tasks are built with. Changing it changes every constructed item.
GCI_SEED = 0

#: Split → the template family it is written from. Dev is drawn from the train family (other
#: items than train), test from its own family: other wording, names and key parameters.
FAMILY: dict[str, str] = {"train": "train", "dev": "train", "test": "test"}

#: Items per split of each constructed task.
SIZES: dict[str, int] = {"train": 1200, "dev": 150, "test": 600}

CENT = Decimal("0.01")


def item_rng(seed: int, task: str, split: str, index: int) -> random.Random:
    """The item's own generator (see the module docstring)."""
    return random.Random(f"aptune-gci:{seed}:{task}:{split}:{index}")


@dataclass(frozen=True)
class Slot:
    """One constructed item's place: its index, split, template family, kind, gold position and
    its own generator. Builders read everything they need from here and nothing else."""

    task: str
    split: str
    index: int
    kind: str
    gold_position: int
    rng: random.Random

    @property
    def family(self) -> str:
        return FAMILY[self.split]

    def item_id(self, prefix: str) -> str:
        return f"{prefix}-{self.split}-{self.index:05d}"


def generate_cycled(task: str, split: str, n: int, seed: int, kinds: Sequence[str],
                    build: Callable[[Slot], Example]) -> list[Example]:
    """``n`` items of ``split``: item ``i`` has kind ``kinds[i % len(kinds)]`` and gold position
    ``i // len(kinds)``, so kinds alternate and, within a kind, the gold cycles over the slots."""
    return [build(Slot(task, split, i, kinds[i % len(kinds)], i // len(kinds), item_rng(seed, task, split, i)))
            for i in range(n)]


def cents(value: Decimal | float | str) -> Decimal:
    """Round half up to cents, the way a court order states a sum."""
    return Decimal(str(value)).quantize(CENT, rounding=ROUND_HALF_UP)


def money(value: Decimal) -> str:
    """$1,234.50 (always two decimals)."""
    return f"${cents(value):,.2f}"


def plain_number(value: Decimal) -> str:
    """The numeric reference for a generative view: no $ or thousands commas ("1234.50")."""
    return f"{cents(value):.2f}" if cents(value) != value.to_integral_value() else f"{int(value)}"


def long_date(day: dt.date) -> str:
    """March 3, 2021."""
    return f"{day.strftime('%B')} {day.day}, {day.year}"


def random_date(rng: random.Random, years: Sequence[int]) -> dt.date:
    """A date in one of ``years``; day ≤ 28 so that adding months/years never needs clamping."""
    return dt.date(rng.choice(list(years)), rng.randint(1, 12), rng.randint(1, 28))


def add_years(day: dt.date, years: int) -> dt.date:
    return day.replace(year=day.year + years)


def assemble(
    *, item_id: str, task: str, domain: str, question: str, gold_text: str, distractors: Sequence[str],
    gold_position: int, split: str, context: str | None = None, meta: dict[str, Any] | None = None,
    n_choices: int = 4,
) -> Example:
    """An MC Example: gold at ``gold_position``, the first ``n_choices - 1`` distinct distractors
    around it (in their given order). Raises if there are too few distinct distractors."""
    others: list[str] = []
    for text in distractors:
        if text != gold_text and text not in others:
            others.append(text)
    if len(others) < n_choices - 1:
        raise ValueError(f"{item_id}: only {len(others)} distinct distractors for {gold_text!r}")
    choices = others[: n_choices - 1]
    pos = gold_position % n_choices
    choices.insert(pos, gold_text)
    full_meta = {"split": split, "constructed": True, **(meta or {})}
    return Example(item_id, task, domain, question, tuple(choices), pos, context=context, meta=full_meta)


def numeric_fallbacks(gold: Decimal, rng: random.Random, money_like: bool = True) -> list[Decimal]:
    """Extra wrong values near the gold (used only when the modelled mistakes coincide with it)."""
    out = []
    for factor in ("1.1", "0.9", "1.25", "0.8", "1.5", "0.5", "2"):
        value = gold * Decimal(factor)
        out.append(cents(value) if money_like else value.to_integral_value())
    rng.shuffle(out)
    return [v for v in out if v > 0]
