"""Find the modules an adapter wraps, by name (never by model class).

Same vocabulary as PEFT's ``target_modules`` so a config means the same for both kinds:
``"all-linear"`` = every ``nn.Linear`` except the output head; a list = module names whose
last components match; a string other than ``all-linear`` = a regex over full module names.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from torch import nn


def _output_head(model: nn.Module) -> nn.Module | None:
    getter = getattr(model, "get_output_embeddings", None)
    return getter() if callable(getter) else None


def _matches(name: str, targets: str | Sequence[str]) -> bool:
    if isinstance(targets, str):
        return re.fullmatch(targets, name) is not None
    return any(name == t or name.endswith("." + t) for t in targets)


def find_target_modules(
    model: nn.Module, targets: str | Sequence[str], wrapper_types: tuple[type, ...] = ()
) -> list[str]:
    """Full names of the ``nn.Linear`` modules to adapt, in model order.

    A module of one of ``wrapper_types`` (an adapter layer already wrapping a linear) counts
    as a linear layer at its own name, and its insides are skipped: that is how a new adapter
    stacks on top of a previous one. Raises ValueError when nothing matches, since a silent
    no-op adapter trains nothing.
    """
    head = _output_head(model)
    names: list[str] = []
    wrapped: list[str] = []
    for name, module in model.named_modules():
        if any(name.startswith(p + ".") for p in wrapped):
            continue
        if wrapper_types and isinstance(module, wrapper_types):
            wrapped.append(name)
        elif not isinstance(module, nn.Linear) or module is head:
            continue
        if targets == "all-linear" or _matches(name, targets):
            names.append(name)
    if not names:
        raise ValueError(f"adapter.target_modules={targets!r} matches no linear layer of {type(model).__name__}")
    return names
