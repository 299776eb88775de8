"""Summed log-probabilities of response tokens, from one forward pass over a left-padded Batch.

Only the last ``K + 1`` positions go through the LM head (``logits_to_keep``), which transformers
causal LMs accept; a model that does not is called without it and sliced afterwards. The
log-softmax runs in fp32 even under bf16 autocast, so summed log-probs stay accurate.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from aptune.modeling import innermost
from aptune.packing import model_mask
from aptune.train.batching import Batch

log = logging.getLogger(__name__)


def response_logps(model: Any, batch: Batch, use_logits_to_keep: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probs of each sequence's response tokens and their counts, both (M,).

    M is one per row, or for a packed pair batch 2 per row (chosen sums, then rejected sums).
    The logit at position t predicts token t+1, so the K response tokens at the end of the
    row are predicted by the K positions before the last one; a packed batch's ``predictors``
    name the exceptions (the first rejected token is predicted by the prompt's end).
    """
    k = batch.response_len
    mask_4d = batch.attention_mask.dim() == 4
    kwargs: dict[str, Any] = {
        "input_ids": batch.input_ids,
        "attention_mask": (
            model_mask(batch.attention_mask, getattr(innermost(model), "config", None)) if mask_4d else batch.attention_mask
        ),
        "position_ids": batch.position_ids,
        "use_cache": False,
    }
    if use_logits_to_keep:
        kwargs["logits_to_keep"] = k + 1
    logits = model(**kwargs).logits[:, -(k + 1) :, :]
    if batch.predictors is None:
        logits = logits[:, :-1, :]
    else:
        logits = torch.take_along_dim(logits, batch.predictors[..., None], dim=1)
    selected = torch.gather(logits, 2, batch.labels.unsqueeze(-1)).squeeze(-1).float()
    per_token = selected - torch.logsumexp(logits.float(), dim=-1)
    mask = batch.response_mask
    # where (not multiply): a NaN at a padded position must not leak into the sum or its gradient
    per_token = torch.where(mask, per_token, 0.0)
    if batch.owners is None:
        return per_token.sum(dim=1), mask.sum(dim=1)
    owners = batch.owners.flatten()
    sums = per_token.new_zeros(batch.n_sequences).index_add(0, owners, per_token.flatten())
    counts = torch.zeros(batch.n_sequences, dtype=torch.long, device=mask.device).index_add(0, owners, mask.flatten().long())
    return sums, counts
