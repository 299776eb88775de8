"""Several sequences that share a prompt, run as one row under a custom 4-D attention mask.

Multiple-choice scoring (every choice behind one prompt) and preference training (chosen and
rejected behind one prompt) both pack: the prompt is computed once, each continuation sees the
prompt and itself but not its siblings, and its position ids restart where the prompt ends, so
each continuation's logits are those of its own unpacked (prompt, continuation) row. That holds
only where the model honours the mask as given; this module says where that is, and converts a
boolean mask to the form the model's attention takes.
"""

from __future__ import annotations

from typing import Any

import torch

#: Attention implementations that apply an arbitrary 4-D mask. Flash-attention kernels take only
#: padding information and would silently let a continuation see its siblings.
MASKABLE_ATTENTION = ("sdpa", "eager")


def sliding_window(config: Any) -> int | None:
    """The attention window of a model that uses one in any layer, else None."""
    window = getattr(config, "sliding_window", None)
    if not window or getattr(config, "use_sliding_window", True) is False:
        return None
    layer_types = getattr(config, "layer_types", None)
    if layer_types is not None and "sliding_attention" not in layer_types:
        return None
    return int(window)


def attention_implementation(config: Any) -> str:
    """The configured attention implementation (transformers' default, sdpa, when unset)."""
    return getattr(config, "_attn_implementation", None) or "sdpa"


def modules_allow_packing(model: torch.nn.Module) -> bool:
    """False when any module declares ``supports_packed_scoring = False`` (it ignores 4-D masks)."""
    return all(getattr(m, "supports_packed_scoring", True) for m in model.modules())


def packing_is_exact(model: torch.nn.Module, longest_row: int) -> bool:
    """Whether packed rows give ``model`` the same logits as unpacked ones.

    ``longest_row`` is the longest unpacked (prompt, continuation) sequence of the batch: a
    custom 4-D mask replaces the model's own masks in every layer, so a sliding window would be
    lost for any continuation that reaches past it.
    """
    return honours_custom_mask(model) and fits_window(model.config, longest_row)


def honours_custom_mask(model: torch.nn.Module) -> bool:
    """Whether ``model`` applies a custom 4-D mask as given, at any length: a transformers model
    with attention that takes one and no module that ignores it (the length-independent half of
    ``packing_is_exact``, for callers that check many lengths against one model)."""
    config = getattr(model, "config", None)
    if config is None:  # not a transformers model: nothing says how its attention takes a mask
        return False
    return attention_implementation(config) in MASKABLE_ATTENTION and modules_allow_packing(model)


def fits_window(config: Any, longest_row: int) -> bool:
    """Whether every continuation of a packed row, ``longest_row`` tokens with its prompt at
    most, stays inside ``config``'s sliding window (always, for a model without one). A packed
    row past the window is never exact, even where the caller asked for packing."""
    window = sliding_window(config)
    return window is None or longest_row <= window


def model_mask(allowed: torch.Tensor, config: Any) -> torch.Tensor:
    """A boolean (batch, 1, queries, keys) mask, True = may attend, as ``config``'s attention
    takes it: as is for sdpa, additive fp32 (0 or the most negative float) for eager."""
    if attention_implementation(config) != "eager":
        return allowed
    return torch.zeros(allowed.shape, dtype=torch.float32, device=allowed.device).masked_fill(
        ~allowed, torch.finfo(torch.float32).min
    )
