"""Length-grouped batch order and left-padded collation for pairs and SFT items.

Sequences are padded on the **left**, so every response ends at the last position of the batch.
The model then only has to project the last ``K + 1`` hidden states through the LM head
(``logits_to_keep``), where ``K`` is the longest response in the batch: prompts are long and
answers short, so this skips most of the vocabulary projection and its memory (49k-way logits
for SmolLM2). Explicit ``position_ids`` make left padding numerically equivalent to right
padding.

A pair batch holds the B chosen sequences followed by the B rejected ones, so one forward
pass scores both sides.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from aptune.shapes import bucketed
from aptune.train.pairs import TokenizedItem, TokenizedPair


@dataclass
class Batch:
    """Left-padded token ids; ``labels``/``response_mask`` cover only the last K positions."""

    input_ids: torch.Tensor  # (N, T) long
    attention_mask: torch.Tensor  # (N, T) long
    position_ids: torch.Tensor  # (N, T) long
    labels: torch.Tensor  # (N, K) long: the last K tokens of each row
    response_mask: torch.Tensor  # (N, K) bool: which of them are response tokens
    ids: list[str]  # one per pair (pair batches) or per item (SFT batches)

    @property
    def response_len(self) -> int:
        return int(self.labels.shape[1])

    @property
    def n_tokens(self) -> int:
        """Non-padding tokens in the batch (prompt and response)."""
        return int(self.attention_mask.sum())

    def to(self, device: torch.device | str) -> "Batch":
        return Batch(
            self.input_ids.to(device),
            self.attention_mask.to(device),
            self.position_ids.to(device),
            self.labels.to(device),
            self.response_mask.to(device),
            self.ids,
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
    return Batch(input_ids, attention, position_ids, input_ids[:, total - k :].clone(), response_mask, ids)


def collate_pairs(pairs: Sequence[TokenizedPair], pad_id: int) -> Batch:
    """Chosen rows first, then rejected rows, one forward pass for both."""
    rows = [(p.prompt_ids, p.chosen_ids) for p in pairs] + [(p.prompt_ids, p.rejected_ids) for p in pairs]
    return collate(rows, pad_id, [p.id for p in pairs])


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
