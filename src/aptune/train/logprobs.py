"""Summed log-probabilities of response tokens, from one forward pass over a left-padded Batch.

Only the last ``K + 1`` positions go through the LM head (``logits_to_keep``), which transformers
causal LMs accept; a model that does not is called without it and sliced afterwards. The
log-softmax runs in fp32 even under bf16 autocast, so summed log-probs stay accurate.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

import torch

from aptune.train.batching import Batch

log = logging.getLogger(__name__)


def _innermost(model: Any) -> Any:
    """The transformers model under DDP/accelerate and PEFT wrappers."""
    inner = getattr(model, "module", model)
    get_base = getattr(inner, "get_base_model", None)
    return get_base() if callable(get_base) else inner


def accepts_logits_to_keep(model: Any) -> bool:
    """Whether the underlying causal LM's forward takes ``logits_to_keep``."""
    forward = getattr(_innermost(model), "forward", None)
    try:
        return forward is not None and "logits_to_keep" in inspect.signature(forward).parameters
    except (TypeError, ValueError):
        return False


def response_logps(model: Any, batch: Batch, use_logits_to_keep: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(N,) summed log-probs of each row's response tokens and (N,) response token counts.

    The logit at position t predicts token t+1, so the K response tokens at the end of the
    row are predicted by the K positions before the last one.
    """
    k = batch.response_len
    kwargs: dict[str, Any] = {
        "input_ids": batch.input_ids,
        "attention_mask": batch.attention_mask,
        "position_ids": batch.position_ids,
        "use_cache": False,
    }
    if use_logits_to_keep:
        kwargs["logits_to_keep"] = k + 1
    logits = model(**kwargs).logits
    logits = logits[:, -(k + 1) : -1, :]
    selected = torch.gather(logits, 2, batch.labels.unsqueeze(-1)).squeeze(-1).float()
    per_token = selected - torch.logsumexp(logits.float(), dim=-1)
    mask = batch.response_mask
    # where (not multiply): a NaN at a padded position must not leak into the sum or its gradient
    return torch.where(mask, per_token, 0.0).sum(dim=1), mask.sum(dim=1)
