"""Batched log-likelihood scoring of multiple-choice items.

Each item's prompt is run once and all its choices are scored in the same forward pass: the
prompt tokens and every choice's tokens are packed into one sequence, with a 4D attention
mask that lets each choice see the prompt and itself but not the other choices, and position
ids that restart each choice where the prompt ends. A 4-way ARC item thus costs
``prompt + sum(choices)`` tokens instead of ``4 × (prompt + choice)``; items are sorted by
packed length and batched. The model inputs are exactly lm-eval's (same token split, see
``aptune.prompts.encode_continuation``, BOS in front of the prompt where the tokenizer adds one),
so accuracies match it item by item.

``packed=False`` scores each (prompt, choice) as its own right-padded row instead: the
reference path used by the tests, and the fallback wherever packing would not be exact
(``aptune.packing.packing_is_exact``): modules that cannot take a custom 4D mask, attention
kernels that ignore one (flash attention), and sliding-window models (Gemma 3, Mistral) for
items longer than the window.

Only the positions that predict a choice token reach the LM head (``logits_to_keep`` with one
row of positions per sequence): a long prompt's logits are never built, which matters most for
large vocabularies (Gemma 3: 262k entries, 1 MB of fp32 logits per position).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from aptune.data.example import Example
from aptune.modeling import accepts_logits_to_keep
from aptune.models import autocast
from aptune.packing import fits_window, model_mask, packing_is_exact
from aptune.shapes import bucketed
from aptune.prompts import LETTERS, PromptFormat, choice_continuations, encode_continuation, keep_last, render_prompt

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChoiceScores:
    """Summed log-probabilities of each choice's continuation, in choice order."""

    logprobs: tuple[float, ...]
    # acc_norm divides by the scored continuation's characters, as lm-eval does: the option text
    # in cloze format, the letter in letter format (so there acc_norm equals acc)
    char_lengths: tuple[int, ...]
    token_counts: tuple[int, ...]

    @property
    def prediction(self) -> int:
        return max(range(len(self.logprobs)), key=lambda i: self.logprobs[i])

    @property
    def prediction_norm(self) -> int:
        normed = [lp / max(n, 1) for lp, n in zip(self.logprobs, self.char_lengths)]
        return max(range(len(normed)), key=lambda i: normed[i])


@dataclass(frozen=True)
class _Encoded:
    index: int
    context: list[int]
    continuations: list[list[int]]

    @property
    def packed_length(self) -> int:
        return len(self.context) + sum(len(c) for c in self.continuations)

    @property
    def unpacked_length(self) -> int:
        """The longest (prompt, choice) sequence: what one unpacked row holds."""
        return len(self.context) + max(len(c) for c in self.continuations)


def _encode(example: Example, tokenizer: Any, fmt: PromptFormat, index: int,
            max_length: int | None = None, too_long: str = "truncate") -> _Encoded:
    prompt = render_prompt(example, tokenizer, fmt)
    conts = []
    context: list[int] = []
    for text in choice_continuations(example, tokenizer, fmt):
        context, cont = encode_continuation(tokenizer, prompt, text)
        if not cont:
            raise ValueError(f"example {example.id!r}: a choice encodes to zero tokens")
        conts.append(cont)
    if not context:  # lm-eval conditions an empty context on the end-of-text token
        context = [tokenizer.eos_token_id]
    need = len(context) + max(len(c) for c in conts)
    if max_length is not None and need > max_length:
        where = f"task {example.task!r} item {example.id!r}"
        if too_long != "truncate" or max(len(c) for c in conts) >= max_length:
            raise ValueError(f"{where}: prompt + longest choice is {need} tokens, more than the model's context "
                             f"of {max_length} (prompt.too_long: truncate cuts the prompt from the left)")
        log.warning("%s: %d tokens exceed the model's context of %d; prompt cut from the left", where, need, max_length)
        context = keep_last(tokenizer, context, len(context) - (need - max_length))
    return _Encoded(index, context, conts)


def _sum_logprobs(logits: torch.Tensor, targets: torch.Tensor, positions: torch.Tensor) -> float:
    """Sum of log p(targets[i] | logits at positions[i]) for one continuation."""
    picked = logits[positions].float().log_softmax(-1)
    return picked.gather(-1, targets[:, None]).sum().item()


def _keep_positions(rows: Sequence[Sequence[torch.Tensor]]) -> tuple[torch.Tensor, list[list[torch.Tensor]]]:
    """One (rows, K) index of every position whose logits a row needs, and where each
    continuation's predictors sit in it. Short rows are padded with position 0 (never read)."""
    width = max(sum(len(p) for p in row) for row in rows)
    keep = torch.zeros((len(rows), width), dtype=torch.long)
    offsets: list[list[torch.Tensor]] = []
    for r, row in enumerate(rows):
        start, row_offsets = 0, []
        for predictors in row:
            keep[r, start : start + len(predictors)] = predictors
            row_offsets.append(torch.arange(start, start + len(predictors)))
            start += len(predictors)
        offsets.append(row_offsets)
    return keep, offsets


def _kept_logits(model: torch.nn.Module, keep: torch.Tensor, use_keep: bool,
                 **inputs: Any) -> tuple[torch.Tensor, bool]:
    """(rows, K, vocab) logits at the ``keep`` positions of each row, and whether the model took
    ``logits_to_keep`` (so the caller stops offering it after the first refusal).

    With ``use_keep`` the LM head sees only those positions; a model whose forward slices
    ``logits_to_keep`` some other way (the shape says so) is run again and gathered here."""
    keep = keep.to(next(model.parameters()).device)
    if use_keep:
        logits = model(**inputs, logits_to_keep=keep).logits
        if logits.dim() == 3 and logits.shape[:2] == keep.shape:
            return logits, True
        log.warning("%s does not take per-row logits_to_keep; scoring from full logits", type(model).__name__)
    logits = model(**inputs).logits
    return torch.take_along_dim(logits, keep[..., None], dim=1), False


def _packed_batch(batch: Sequence[_Encoded], pad_id: int, config: Any):
    """Inputs for a batch of packed items: ids, 4D mask (as ``config``'s attention takes it),
    position ids, and score slices."""
    length = bucketed(max(e.packed_length for e in batch))
    ids = torch.full((len(batch), length), pad_id, dtype=torch.long)
    positions = torch.zeros((len(batch), length), dtype=torch.long)
    allowed = torch.zeros((len(batch), length, length), dtype=torch.bool)
    slices: list[list[tuple[torch.Tensor, torch.Tensor]]] = []
    for row, enc in enumerate(batch):
        n_ctx = len(enc.context)
        ids[row, :n_ctx] = torch.tensor(enc.context)
        positions[row, :n_ctx] = torch.arange(n_ctx)
        allowed[row, :n_ctx, :n_ctx] = torch.tril(torch.ones(n_ctx, n_ctx, dtype=torch.bool))
        start = n_ctx
        item_slices = []
        for cont in enc.continuations:
            n = len(cont)
            end = start + n
            ids[row, start:end] = torch.tensor(cont)
            positions[row, start:end] = torch.arange(n_ctx, n_ctx + n)
            allowed[row, start:end, :n_ctx] = True
            allowed[row, start:end, start:end] = torch.tril(torch.ones(n, n, dtype=torch.bool))
            # token k of the choice is predicted by the logits one step before it: the last
            # prompt token for k = 0, the choice's own previous token afterwards.
            predictor = torch.cat([torch.tensor([n_ctx - 1]), torch.arange(start, end - 1)])
            item_slices.append((predictor, torch.tensor(cont)))
            start = end
        # padding rows attend to themselves only, so no row is fully masked (NaN-free)
        pad = torch.arange(start, length)
        allowed[row, pad, pad] = True
        slices.append(item_slices)
    return ids, model_mask(allowed[:, None], config), positions, slices


def _separate_batch(batch: Sequence[_Encoded], pad_id: int):
    """Inputs for scoring each (prompt, choice) as its own right-padded row."""
    rows = [(e, c) for e in batch for c in e.continuations]
    length = bucketed(max(len(e.context) + len(c) for e, c in rows))
    ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    attn = torch.zeros((len(rows), length), dtype=torch.long)
    slices = []
    for r, (enc, cont) in enumerate(rows):
        seq = enc.context + cont
        ids[r, : len(seq)] = torch.tensor(seq)
        attn[r, : len(seq)] = 1
        n_ctx = len(enc.context)
        slices.append((torch.arange(n_ctx - 1, n_ctx - 1 + len(cont)), torch.tensor(cont)))
    return ids, attn, slices


def _batches(encoded: list[_Encoded], max_tokens: int, max_items: int) -> list[list[_Encoded]]:
    """Greedy length-sorted batches bounded by padded tokens and item count."""
    ordered = sorted(encoded, key=lambda e: -e.packed_length)
    batches: list[list[_Encoded]] = []
    current: list[_Encoded] = []
    for enc in ordered:
        width = current[0].packed_length if current else enc.packed_length
        if current and ((len(current) + 1) * width > max_tokens or len(current) >= max_items):
            batches.append(current)
            current = []
        current.append(enc)
    if current:
        batches.append(current)
    return batches


@torch.no_grad()
def score_choices(
    model: torch.nn.Module,
    tokenizer: Any,
    examples: Sequence[Example],
    fmt: PromptFormat,
    *,
    dtype: torch.dtype = torch.float32,
    max_tokens: int = 4096,
    max_items: int = 32,
    packed: bool | None = None,
    progress: bool = True,
    desc: str = "scoring",
    max_length: int | None = None,
    too_long: str = "truncate",
) -> list[ChoiceScores]:
    """Score every choice of every multiple-choice example; results in input order.

    ``max_length`` (the model's context) bounds prompt + longest choice: longer items have their
    prompt cut from the left with a warning (``too_long="truncate"``) or raise (``"error"``)."""
    for ex in examples:
        if not ex.is_multiple_choice:
            raise ValueError(f"example {ex.id!r} of task {ex.task!r} is not multiple choice")
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    use_keep = accepts_logits_to_keep(model)
    encoded = [_encode(ex, tokenizer, fmt, i, max_length, too_long) for i, ex in enumerate(examples)]
    results: list[ChoiceScores | None] = [None] * len(examples)
    was_training = model.training
    model.eval()
    bar = tqdm(total=len(examples), desc=desc, unit="item", disable=not progress, leave=False)
    for batch in _batches(encoded, max_tokens, max_items):
        longest = max(e.unpacked_length for e in batch)
        pack = packing_is_exact(model, longest) if packed is None else packed and fits_window(model.config, longest)
        with autocast(dtype, device):
            if pack:
                ids, mask, positions, slices = _packed_batch(batch, pad_id, model.config)
                keep, offsets = _keep_positions([[p for p, _ in item] for item in slices])
                logits, use_keep = _kept_logits(model, keep, use_keep, input_ids=ids.to(device),
                                                attention_mask=mask.to(device),
                                                position_ids=positions.to(device), use_cache=False)
                per_item = [
                    [_sum_logprobs(logits[r], t.to(device), o.to(device)) for (_, t), o in zip(item, offsets[r])]
                    for r, item in enumerate(slices)
                ]
            else:
                ids, attn, flat = _separate_batch(batch, pad_id)
                keep, offsets = _keep_positions([[p] for p, _ in flat])
                logits, use_keep = _kept_logits(model, keep, use_keep, input_ids=ids.to(device),
                                                attention_mask=attn.to(device), use_cache=False)
                scores = [_sum_logprobs(logits[r], t.to(device), offsets[r][0].to(device))
                          for r, (_, t) in enumerate(flat)]
                per_item, k = [], 0
                for enc in batch:
                    per_item.append(scores[k : k + len(enc.continuations)])
                    k += len(enc.continuations)
        for enc, lps in zip(batch, per_item):
            ex = examples[enc.index]
            lengths = (tuple(len(LETTERS[i]) for i in range(len(ex.choices))) if fmt.mc_format == "letter"
                       else tuple(len(c) for c in ex.choices))
            results[enc.index] = ChoiceScores(
                tuple(lps), lengths, tuple(len(c) for c in enc.continuations)
            )
        bar.update(len(batch))
    bar.close()
    model.train(was_training)
    return [r for r in results if r is not None]
