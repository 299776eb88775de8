"""Batched log-likelihood scoring of multiple-choice items.

Each item's prompt is run once and all its choices are scored in the same forward pass: the
prompt tokens and every choice's tokens are packed into one sequence, with a 4D attention
mask that lets each choice see the prompt and itself but not the other choices, and position
ids that restart each choice where the prompt ends. A 4-way ARC item thus costs
``prompt + sum(choices)`` tokens instead of ``4 × (prompt + choice)``; items are sorted by
packed length. Short items then share a row as well (first-fit into rows of ``row_tokens``,
each item masked off from the others, its positions starting at 0), so the padding that rounding
every row up to a bucketed length would cost is spent on other items instead: on the first 100
ARC-Easy items one item per row computed twice the real tokens. The model inputs are exactly
lm-eval's (same token split, see
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
from aptune.packing import fits_window, honours_custom_mask, model_mask, sliding_window
from aptune.shapes import bucketed
from aptune.prompts import LETTERS, PromptFormat, choice_continuations, encode_continuation, keep_last, render_prompt

log = logging.getLogger(__name__)

#: Tokens per packed row that several short items share. Longer rows cost attention over masked
#: pairs (quadratic in the row) to save padding; 256 keeps that below a tenth of a small model's
#: forward while filling the rows of short items such as ARC's.
ROW_TOKENS = 256


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


def _place(enc: _Encoded, start: int, ids: torch.Tensor, positions: torch.Tensor,
           allowed: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Write one item (prompt, then each choice behind it) into a row from ``start``; return
    each choice's (predictor positions, target tokens). The item sees only itself: its prompt is
    causal, each choice sees the prompt and its own earlier tokens, positions start at 0."""
    n_ctx = len(enc.context)
    ctx = slice(start, start + n_ctx)
    ids[ctx] = torch.tensor(enc.context)
    positions[ctx] = torch.arange(n_ctx)
    allowed[ctx, ctx] = torch.tril(torch.ones(n_ctx, n_ctx, dtype=torch.bool))
    at = start + n_ctx
    slices = []
    for cont in enc.continuations:
        n = len(cont)
        own = slice(at, at + n)
        ids[own] = torch.tensor(cont)
        positions[own] = torch.arange(n_ctx, n_ctx + n)
        allowed[own, ctx] = True
        allowed[own, own] = torch.tril(torch.ones(n, n, dtype=torch.bool))
        # token k of the choice is predicted by the logits one step before it: the last
        # prompt token for k = 0, the choice's own previous token afterwards.
        predictor = torch.cat([torch.tensor([start + n_ctx - 1]), torch.arange(at, at + n - 1)])
        slices.append((predictor, torch.tensor(cont)))
        at += n
    return slices


def _packed_batch(rows: Sequence[Sequence[_Encoded]], pad_id: int, config: Any):
    """Inputs for a batch of packed rows, each holding one or more items: ids, 4D mask (as
    ``config``'s attention takes it), position ids, and each row's items with their choices'
    score slices."""
    length = bucketed(max(_row_length(row) for row in rows))
    ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    positions = torch.zeros((len(rows), length), dtype=torch.long)
    allowed = torch.zeros((len(rows), length, length), dtype=torch.bool)
    placed: list[list[tuple[_Encoded, list[tuple[torch.Tensor, torch.Tensor]]]]] = []
    for r, row in enumerate(rows):
        start, row_items = 0, []
        for enc in row:
            row_items.append((enc, _place(enc, start, ids[r], positions[r], allowed[r])))
            start += enc.packed_length
        # padding attends to itself only, so no query is fully masked (NaN-free)
        pad = torch.arange(start, length)
        allowed[r, pad, pad] = True
        placed.append(row_items)
    return ids, model_mask(allowed[:, None], config), positions, placed


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


def _row_length(row: Sequence[_Encoded]) -> int:
    return sum(e.packed_length for e in row)


def _rows(encoded: Sequence[_Encoded], capacity: int, max_items: int) -> list[list[_Encoded]]:
    """Items packed into rows of at most ``capacity`` tokens and ``max_items`` items, longest
    first, each into the first row with room (first-fit decreasing); an item longer than
    ``capacity`` gets a row of its own."""
    ordered = sorted(encoded, key=lambda e: -e.packed_length)
    shortest = ordered[-1].packed_length if ordered else 0
    rows: list[list[_Encoded]] = []
    open_rows: list[list[_Encoded]] = []  # the rows that can still take an item, and their room
    room: list[int] = []
    for enc in ordered:
        need = enc.packed_length
        k = next((k for k, free in enumerate(room) if free >= need), None)
        if k is None:
            rows.append([])
            open_rows.append(rows[-1])
            room.append(capacity)
            k = len(room) - 1
        open_rows[k].append(enc)
        room[k] -= need
        # a row no remaining item fits (or that holds max_items) is closed, so the search runs
        # over the few open rows, not every row, even for tens of thousands of items
        if room[k] < shortest or len(open_rows[k]) >= max_items:
            del open_rows[k], room[k]
    return rows


def _batches(rows: list[list[_Encoded]], max_tokens: int, max_items: int) -> list[list[list[_Encoded]]]:
    """Greedy length-sorted batches of rows bounded by padded tokens and item count."""
    ordered = sorted(rows, key=lambda row: -_row_length(row))
    batches: list[list[list[_Encoded]]] = []
    current: list[list[_Encoded]] = []
    items = 0
    for row in ordered:
        width = _row_length(current[0]) if current else _row_length(row)
        if current and ((len(current) + 1) * width > max_tokens or items + len(row) > max_items):
            batches.append(current)
            current, items = [], 0
        current.append(row)
        items += len(row)
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
    row_tokens: int = ROW_TOKENS,
    packed: bool | None = None,
    progress: bool = True,
    desc: str = "scoring",
    max_length: int | None = None,
    too_long: str = "truncate",
) -> list[ChoiceScores]:
    """Score every choice of every multiple-choice example; results in input order.

    A forward pass takes at most ``max_items`` items and ``max_tokens`` padded tokens; packed
    items share rows of up to ``row_tokens`` (one item per row where ``row_tokens`` is 0 or the
    model has a sliding window). ``max_length`` (the model's context) bounds prompt + longest
    choice: longer items have their prompt cut from the left with a warning
    (``too_long="truncate"``) or raise (``"error"``)."""
    for ex in examples:
        if not ex.is_multiple_choice:
            raise ValueError(f"example {ex.id!r} of task {ex.task!r} is not multiple choice")
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    use_keep = accepts_logits_to_keep(model)
    encoded = [_encode(ex, tokenizer, fmt, i, max_length, too_long) for i, ex in enumerate(examples)]

    # packing is exact where the model honours the mask and the item fits its window (asking for
    # packing cannot override the window); the mask check walks the model once, not per item
    maskable = honours_custom_mask(model) if packed is None else packed
    packs = [maskable and fits_window(model.config, e.unpacked_length) for e in encoded]
    # a sliding-window model keeps one item per row: its positions restart per item, but the
    # row as a whole would be longer than the window the model was built for
    shared = row_tokens if maskable and sliding_window(model.config) is None else 0
    packed_rows = _rows([e for e, p in zip(encoded, packs) if p], shared, max_items)
    single_rows = [[e] for e, p in zip(encoded, packs) if not p]
    work = ([(True, b) for b in _batches(packed_rows, max_tokens, max_items)]
            + [(False, b) for b in _batches(single_rows, max_tokens, max_items)])

    results: list[ChoiceScores | None] = [None] * len(examples)
    was_training = model.training
    model.eval()
    bar = tqdm(total=len(examples), desc=desc, unit="item", disable=not progress, leave=False)
    for pack, rows in work:
        with autocast(dtype, device):
            if pack:
                ids, mask, positions, placed = _packed_batch(rows, pad_id, model.config)
                keep, offsets = _keep_positions([[p for _, item in row for p, _ in item] for row in placed])
                logits, use_keep = _kept_logits(model, keep, use_keep, input_ids=ids.to(device),
                                                attention_mask=mask.to(device),
                                                position_ids=positions.to(device), use_cache=False)
                scored: list[tuple[_Encoded, list[float]]] = []
                for r, row in enumerate(placed):
                    row_offsets = iter(offsets[r])
                    for enc, item in row:
                        scored.append((enc, [_sum_logprobs(logits[r], t.to(device), next(row_offsets).to(device))
                                             for _, t in item]))
            else:
                batch = [row[0] for row in rows]
                ids, attn, flat = _separate_batch(batch, pad_id)
                keep, offsets = _keep_positions([[p] for p, _ in flat])
                logits, use_keep = _kept_logits(model, keep, use_keep, input_ids=ids.to(device),
                                                attention_mask=attn.to(device), use_cache=False)
                scores = [_sum_logprobs(logits[r], t.to(device), offsets[r][0].to(device))
                          for r, (_, t) in enumerate(flat)]
                scored, k = [], 0
                for enc in batch:
                    scored.append((enc, scores[k : k + len(enc.continuations)]))
                    k += len(enc.continuations)
        for enc, lps in scored:
            ex = examples[enc.index]
            lengths = (tuple(len(LETTERS[i]) for i in range(len(ex.choices))) if fmt.mc_format == "letter"
                       else tuple(len(c) for c in ex.choices))
            results[enc.index] = ChoiceScores(
                tuple(lps), lengths, tuple(len(c) for c in enc.continuations)
            )
        bar.update(len(scored))
    bar.close()
    model.train(was_training)
    return [r for r in results if r is not None]
