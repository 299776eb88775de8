"""Which methods and seeds of a compare config an invocation or a report covers, and the
``A:B`` head-to-head pairs a report sets against each other; each bad name is a one-line error."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from typing import TypeVar

T = TypeVar("T")


def chosen_methods(names: Sequence[str], wanted: Collection[str] | None, where: object) -> list[str]:
    """``names`` (in their order) restricted to ``wanted`` (``--methods``; None = all of them);
    a name ``where`` does not have is a one-line error."""
    return _restrict(names, wanted, lambda name: (
        f"--methods: {name!r} is not a method of {where} (its methods: {', '.join(names)})"))


def chosen_seeds(seeds: Sequence[int], wanted: Collection[int] | None, where: object) -> list[int]:
    """``seeds`` (in their order) restricted to ``wanted`` (``--seeds``; None = all of them);
    a seed ``where`` does not have is a one-line error."""
    return _restrict(seeds, wanted, lambda seed: f"--seeds: seed {seed} is not in {where}'s seeds {list(seeds)}")


def _restrict(items: Sequence[T], wanted: Collection[T] | None, stray_error: Callable[[T], str]) -> list[T]:
    """``items`` in their order, only those in ``wanted`` (None = all); the first wanted value
    ``items`` lacks (in sorted order) raises ``ValueError(stray_error(value))``."""
    strays = sorted(set(wanted or ()) - set(items))
    if strays:
        raise ValueError(stray_error(strays[0]))
    return [x for x in items if wanted is None or x in wanted]


def parse_pair(text: str) -> tuple[str, str]:
    """``"A:B"`` -> ``("A", "B")``; method names cannot hold ``:`` (they name folders)."""
    parts = [p.strip() for p in text.split(":")]
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"versus: expected METHOD:METHOD (e.g. apt-lora:sft-lora), got {text!r}")
    if parts[0] == parts[1]:
        raise ValueError(f"versus: {text!r} sets a method against itself")
    return parts[0], parts[1]


def check_pairs(pairs: Iterable[str], methods: Sequence[str], where: object) -> None:
    """Every ``A:B`` parses and names two of ``methods``; otherwise a one-line ``ValueError``."""
    for text in pairs:
        for name in parse_pair(text):
            if name not in methods:
                raise ValueError(f"versus: {name!r} (in {text!r}) is not a method of {where} "
                                 f"(its methods: {', '.join(methods)})")
