"""Reference log-probabilities: one no-grad pass over the pairs with the adapter disabled.

DPO compares the policy to a frozen reference. With an adapter the reference is the base
model, reached by switching the adapter off (``aptune.adapters.disabled_adapter``), so no second
copy of the weights is kept. The reference never changes during a training call, so it is
computed once per call (not per step or epoch, as TRL does by default), and callers that
already have the numbers (APT's mining pass scores the same prompts) pass them in by pair id.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any, ContextManager

import torch

from aptune.modeling import accepts_logits_to_keep, innermost, unwrap
from aptune.models import autocast
from aptune.train.batching import length_grouped_batches, pair_collator
from aptune.train.logprobs import response_logps
from aptune.train.pairs import TokenizedPair

log = logging.getLogger(__name__)

#: Returns a context manager under which ``model`` computes the reference distribution.
ReferenceContext = Callable[[Any], ContextManager[Any]]
#: Summed (chosen, rejected) reference log-probs, keyed by pair id.
ReferenceLogps = dict[str, tuple[float, float]]


def adapter_disabled(model: Any) -> ContextManager[Any]:
    """Default reference: the model with its newest adapter switched off (LoRA or ALoRA)."""
    from aptune.adapters import disabled_adapter

    return disabled_adapter(unwrap(model))


@torch.no_grad()
def compute_reference_logps(
    model: Any,
    pairs: list[TokenizedPair],
    pad_id: int,
    batch_size: int,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    reference_context: ReferenceContext | None = None,
    packed: bool = True,
) -> ReferenceLogps:
    """Summed response log-probs of chosen and rejected under the reference, by pair id
    (``packed``: both sides behind one prompt where exact, see ``aptune.train.batching``)."""
    context = reference_context or adapter_disabled
    use_ltk = accepts_logits_to_keep(model)
    was_training = unwrap(model).training
    unwrap(model).eval()
    out: ReferenceLogps = {}
    collate = pair_collator(innermost(model), pad_id, packed)
    try:
        with context(unwrap(model)) if pairs else contextlib.nullcontext():  # DDP: the inner model
            for idx in length_grouped_batches([p.length for p in pairs], batch_size):
                batch = collate([pairs[i] for i in idx]).to(device)
                with autocast(dtype, device):
                    logps, _ = response_logps(unwrap(model), batch, use_ltk)
                n = len(batch.ids)
                for j, pair_id in enumerate(batch.ids):
                    out[pair_id] = (float(logps[j]), float(logps[n + j]))
    finally:
        unwrap(model).train(was_training)
    return out
