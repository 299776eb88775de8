"""Facts about a loaded causal LM that both evaluation and training need.

Scoring, generation and the trainer all hold a model that may be wrapped (DDP or accelerate
put it under ``.module``; PEFT under ``get_base_model()``), and all ask the same questions of
it: which object is the transformers model, does its forward take ``logits_to_keep``, and how
long a prompt fits its context. The answers live here, below both ``aptune.evaluate`` and
``aptune.train``, so neither has to import the other.
"""

from __future__ import annotations

import inspect
from typing import Any


def unwrap(model: Any) -> Any:
    """The model under a DDP / accelerate wrapper (``.module``), else the model itself.

    A PEFT wrapper is kept: this is the object whose adapters are switched, saved and set to
    train or eval mode."""
    return getattr(model, "module", model)


def innermost(model: Any) -> Any:
    """The transformers model under DDP/accelerate and PEFT wrappers (its config, its forward)."""
    inner = unwrap(model)
    get_base = getattr(inner, "get_base_model", None)
    return get_base() if callable(get_base) else inner


def accepts_logits_to_keep(model: Any) -> bool:
    """Whether the underlying causal LM's forward takes ``logits_to_keep`` (transformers causal
    LMs do): then only the positions that are scored go through the LM head."""
    forward = getattr(innermost(model), "forward", None)
    try:
        return forward is not None and "logits_to_keep" in inspect.signature(forward).parameters
    except (TypeError, ValueError):
        return False


def context_length(model: Any) -> int | None:
    """The model's context window (``max_position_embeddings``), when its config states one."""
    value = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    return int(value) if isinstance(value, int) and value > 0 else None


def prompt_budget(model: Any, max_new_tokens: int) -> int | None:
    """Prompt tokens that leave room for ``max_new_tokens`` in the model's context (None: unbounded)."""
    limit = context_length(model)
    return None if limit is None else max(limit - max_new_tokens, 1)
