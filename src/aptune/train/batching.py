"""Length-grouped batch order and left-padded collation for pairs and SFT items.

Sequences are padded on the **left**, so every response ends at the last position of the batch.
The model then only has to project the last ``K + 1`` hidden states through the LM head
(``logits_to_keep``), where ``K`` is the longest response in the batch: prompts are long and
answers short, so this skips most of the vocabulary projection and its memory (49k-way logits
for SmolLM2). Explicit ``position_ids`` make left padding numerically equivalent to right
padding.

A pair batch scores both sides in one forward pass, in one of two layouts:

- **packed** (``collate_packed_pairs``, the default wherever it is exact, see
  ``aptune.packing``): one row per pair, ``[pad | prompt | chosen | rejected]``, under a 4-D
  mask in which the rejected tokens see the prompt but not the chosen ones, and position ids
  that restart the rejected side where the prompt ends. The prompt is computed once instead of
  twice, which is most of the work when prompts are long and answers short (legal GCI items:
  ~300-token prompts, answers of a few tokens).
- **separate rows** (``collate_pairs``): the B chosen sequences, then the B rejected ones.

Either way ``response_logps`` returns the chosen sums then the rejected sums.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from aptune.packing import packing_is_exact
from aptune.shapes import bucketed
from aptune.train.pairs import TokenizedItem, TokenizedPair


@dataclass
class Batch:
    """Left-padded token ids; ``labels``/``response_mask`` cover only the last K positions.

    The logits of the last K + 1 positions are kept; by default label slot j is predicted by
    kept position j (the one before it) and belongs to the sequence of its row. A packed batch
    says otherwise with ``predictors`` and ``owners``.
    """

    input_ids: torch.Tensor  # (N, T) long
    attention_mask: torch.Tensor  # (N, T) long, or (N, 1, T, T) bool (packed: True = may attend)
    position_ids: torch.Tensor  # (N, T) long
    labels: torch.Tensor  # (N, K) long: the last K tokens of each row
    response_mask: torch.Tensor  # (N, K) bool: which of them are response tokens
    ids: list[str]  # one per pair (pair batches) or per item (SFT batches)
    n_tokens: int  # tokens of the (prompt, response) sequences it stands for, padding excluded
    predictors: torch.Tensor | None = None  # (N, K) long: kept position whose logits predict each slot
    owners: torch.Tensor | None = None  # (N, K) long: the output sequence each slot is summed into
    n_sequences: int = 0  # outputs of response_logps (0: one per row)

    @property
    def response_len(self) -> int:
        return int(self.labels.shape[1])

    @property
    def packed(self) -> bool:
        return self.owners is not None

    def to(self, device: torch.device | str) -> "Batch":
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)

        return Batch(
            self.input_ids.to(device),
            self.attention_mask.to(device),
            self.position_ids.to(device),
            self.labels.to(device),
            self.response_mask.to(device),
            self.ids,
            self.n_tokens,
            move(self.predictors),
            move(self.owners),
            self.n_sequences,
        )


def collate(sequences: Sequence[tuple[Sequence[int], Sequence[int]]], pad_id: int, ids: list[str]) -> Batch:
    """Left-pad (prompt_ids, response_ids) rows into one Batch."""
    k = bucketed(max(len(r) for _, r in sequences), 8)
    total = bucketed(max(max(len(p) + len(r) for p, r in sequences), k + 1))
    n = len(sequences)
    input_ids = torch.full((n, total), pad_id, dtype=torch.long)
    attention = torch.zeros((n, total), dtype=torch.long)
    response_mask = torch.zeros((n, k), dtype=torch.bool)
    for row, (prompt, response) in enumerate(sequences):
        seq = list(prompt) + list(response)
        input_ids[row, total - len(seq) :] = torch.tensor(seq, dtype=torch.long)
        attention[row, total - len(seq) :] = 1
        response_mask[row, k - len(response) :] = True  # padding inside the last k is masked
    position_ids = (attention.cumsum(dim=1) - 1).clamp(min=0)
    labels = input_ids[:, total - k :].clone()
    return Batch(input_ids, attention, position_ids, labels, response_mask, ids, int(attention.sum()))


def collate_pairs(pairs: Sequence[TokenizedPair], pad_id: int) -> Batch:
    """Chosen rows first, then rejected rows, one forward pass for both."""
    rows = [(p.prompt_ids, p.chosen_ids) for p in pairs] + [(p.prompt_ids, p.rejected_ids) for p in pairs]
    return collate(rows, pad_id, [p.id for p in pairs])


# segment ids of a packed row's positions
_PAD, _PROMPT, _CHOSEN, _REJECTED = 0, 1, 2, 3


def collate_packed_pairs(pairs: Sequence[TokenizedPair], pad_id: int) -> Batch:
    """One left-padded row per pair, ``[pad | prompt | chosen | rejected]``, with a 4-D mask.

    Chosen and rejected each see the prompt and (causally) themselves; padding sees only
    itself, so no row of the mask is empty (an all-masked softmax row is NaN). Position ids
    restart the rejected side at the prompt's length, so both sides get the positions of their
    own unpacked row. The first rejected token is predicted by the prompt's last position, not
    by the chosen side's last one: ``predictors`` says so for that slot.
    """
    n = len(pairs)
    k = bucketed(max(len(p.chosen_ids) + len(p.rejected_ids) for p in pairs), 8)
    total = bucketed(max(max(len(p.prompt_ids) + len(p.chosen_ids) + len(p.rejected_ids) for p in pairs), k + 1))
    input_ids = torch.full((n, total), pad_id, dtype=torch.long)
    segment = torch.full((n, total), _PAD, dtype=torch.long)
    position_ids = torch.zeros((n, total), dtype=torch.long)
    response_mask = torch.zeros((n, k), dtype=torch.bool)
    predictors = torch.arange(k).repeat(n, 1)
    owners = torch.zeros((n, k), dtype=torch.long)
    for row, pair in enumerate(pairs):
        n_p, n_c, n_r = len(pair.prompt_ids), len(pair.chosen_ids), len(pair.rejected_ids)
        start = total - (n_p + n_c + n_r)
        input_ids[row, start:] = torch.tensor(pair.prompt_ids + pair.chosen_ids + pair.rejected_ids)
        segment[row, start : start + n_p] = _PROMPT
        segment[row, start + n_p : start + n_p + n_c] = _CHOSEN
        segment[row, total - n_r :] = _REJECTED
        position_ids[row, start : total - n_r] = torch.arange(n_p + n_c)
        position_ids[row, total - n_r :] = torch.arange(n_p, n_p + n_r)
        response_mask[row, k - n_c - n_r :] = True
        owners[row, k - n_c - n_r : k - n_r] = row
        owners[row, k - n_r :] = n + row
        predictors[row, k - n_r] = k - n_c - n_r  # kept index of the prompt's last position
    causal = torch.tril(torch.ones(total, total, dtype=torch.bool))
    query, key = segment[:, :, None], segment[:, None, :]
    allowed = causal & (key != _PAD) & ((key == query) | (key == _PROMPT))
    allowed |= torch.eye(total, dtype=torch.bool)  # padding attends to itself only
    n_tokens = sum(2 * len(p.prompt_ids) + len(p.chosen_ids) + len(p.rejected_ids) for p in pairs)
    labels = input_ids[:, total - k :].clone()
    return Batch(
        input_ids, allowed[:, None], position_ids, labels, response_mask, [p.id for p in pairs],
        n_tokens, predictors, owners, 2 * n,
    )


def pair_collator(model: torch.nn.Module, pad_id: int, packed: bool = True) -> Callable[[Sequence[TokenizedPair]], Batch]:
    """Collate pair batches for ``model`` (the transformers model, unwrapped): with ``packed``,
    packed wherever that gives exactly the logits of separate rows
    (``aptune.packing.packing_is_exact``); as separate rows otherwise (flash attention, a pair
    longer than a sliding window, or ``packed=False``)."""

    def collate_for_model(pairs: Sequence[TokenizedPair]) -> Batch:
        if packed and packing_is_exact(model, max(p.length for p in pairs)):
            return collate_packed_pairs(pairs, pad_id)
        return collate_pairs(pairs, pad_id)

    return collate_for_model


def collate_items(items: Sequence[TokenizedItem], pad_id: int) -> Batch:
    return collate([(i.prompt_ids, i.response_ids) for i in items], pad_id, [i.id for i in items])


def length_grouped_batches(
    lengths: Sequence[int],
    batch_size: int,
    generator: torch.Generator | None = None,
    window: int = 16,
) -> list[list[int]]:
    """Indices split into batches of similar length.

    Without a generator: sorted by length, longest first (for no-grad scoring passes). With one:
    a random permutation is cut into windows of ``batch_size * window`` items, each window is
    sorted by length and cut into batches, and the batch order is shuffled; so batches are
    random across epochs but carry little padding. Deterministic for a seeded generator.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, not {batch_size}")
    n = len(lengths)
    if generator is None:
        order = sorted(range(n), key=lambda i: -lengths[i])
        return [order[i : i + batch_size] for i in range(0, n, batch_size)]
    perm = torch.randperm(n, generator=generator).tolist()
    span = batch_size * window
    batches: list[list[int]] = []
    for start in range(0, n, span):
        chunk = sorted(perm[start : start + span], key=lambda i: -lengths[i])
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    order = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in order]
