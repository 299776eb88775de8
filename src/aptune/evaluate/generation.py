"""Batched greedy generation with the KV cache and left padding.

This is the default generation backend (transformers' ``generate``). Prompts are rendered by
``aptune.prompts`` so that what the model generates in evaluation is what mining judges and
what training later treats as the model's own answer.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from aptune.models import autocast
from aptune.prompts import encode_prompt, end_of_turn_id, keep_last

log = logging.getLogger(__name__)


def _stop_token_ids(tokenizer: Any) -> list[int]:
    """EOS plus the chat template's end-of-turn token where it differs (e.g. <|im_end|>).

    The end-of-turn token is read off the template itself (``prompts.end_of_turn_id``), the same
    token training appends to every chat response, so generation stops where training ends."""
    ids = {tokenizer.eos_token_id, end_of_turn_id(tokenizer)} - {None}
    return sorted(ids)


@dataclass(frozen=True)
class Sampling:
    """Ancestral sampling settings: ``n`` completions per prompt, reproducible from ``seed``."""

    n: int = 4
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"samples must be >= 1, not {self.n}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, not {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], not {self.top_p}")


def generate_greedy(
    model: torch.nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = 64,
    batch_size: int = 16,
    max_prompt_tokens: int | None = None,
    dtype: torch.dtype = torch.float32,
    progress: bool = True,
    desc: str = "generating",
    stop: Sequence[str] = (),
) -> list[str]:
    """Greedy completions of ``prompts`` (already rendered), in input order.

    Prompts are encoded by ``prompts.encode_prompt`` (BOS in front where the tokenizer adds one),
    sorted by length so each batch pads little, left-padded so every row's last token is real
    (the BOS sits after the padding, at the row's first real position), and cut from the left to
    ``max_prompt_tokens`` when given (the question's end and the assistant header matter most;
    a leading BOS is kept). A row also stops early at any of ``stop`` (its text still holds the
    stop string: callers cut it, ``runner.cut_at_stop``).
    """
    outputs = _generate(model, tokenizer, prompts, None, max_new_tokens=max_new_tokens, batch_size=batch_size,
                        max_prompt_tokens=max_prompt_tokens, dtype=dtype, progress=progress, desc=desc, stop=stop)
    return [texts[0] for texts in outputs]


def generate_samples(
    model: torch.nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    sampling: Sampling,
    *,
    max_new_tokens: int = 64,
    batch_size: int = 8,
    max_prompt_tokens: int | None = None,
    dtype: torch.dtype = torch.float32,
    progress: bool = True,
    desc: str = "sampling",
    stop: Sequence[str] = (),
) -> list[list[str]]:
    """``sampling.n`` sampled completions per prompt, in input order; batched like greedy.

    Each batch draws from its own generator state (seeded from ``sampling.seed`` and the batch),
    inside a forked RNG, so the same call gives the same samples and the process RNG is untouched."""
    return _generate(model, tokenizer, prompts, sampling, max_new_tokens=max_new_tokens, batch_size=batch_size,
                     max_prompt_tokens=max_prompt_tokens, dtype=dtype, progress=progress, desc=desc, stop=stop)


@torch.no_grad()
def _generate(
    model: torch.nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    sampling: Sampling | None,
    *,
    max_new_tokens: int,
    batch_size: int,
    max_prompt_tokens: int | None,
    dtype: torch.dtype,
    progress: bool,
    desc: str,
    stop: Sequence[str] = (),
) -> list[list[str]]:
    device = next(model.parameters()).device
    encoded = [encode_prompt(tokenizer, p) for p in prompts]
    if max_prompt_tokens is not None:
        for i, ids in enumerate(encoded):
            if len(ids) > max_prompt_tokens:
                log.warning("prompt %d has %d tokens; keeping the last %d", i, len(ids), max_prompt_tokens)
                encoded[i] = keep_last(tokenizer, ids, max_prompt_tokens)
    order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    stops = _stop_token_ids(tokenizer)
    n = 1 if sampling is None else sampling.n
    decoding: dict[str, Any] = {"do_sample": False} if sampling is None else {
        "do_sample": True, "temperature": sampling.temperature, "top_p": sampling.top_p, "top_k": 0,
        "num_return_sequences": n}
    if stop:  # transformers stops a row once its text ends in a stop string
        decoding.update(stop_strings=list(stop), tokenizer=tokenizer)
    outputs: list[list[str]] = [[] for _ in prompts]
    was_training = model.training
    model.eval()
    bar = tqdm(total=len(prompts), desc=desc, unit="prompt", disable=not progress, leave=False)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        width = max(len(encoded[i]) for i in rows)
        ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, i in enumerate(rows):
            seq = encoded[i]
            ids[r, width - len(seq) :] = torch.tensor(seq)
            mask[r, width - len(seq) :] = 1
        # sampling draws from a forked, seeded RNG; greedy decoding needs no RNG at all
        rng = (torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])
               if sampling is not None else contextlib.nullcontext())
        with autocast(dtype, device), rng:
            if sampling is not None:
                torch.manual_seed(sampling.seed * 1_000_003 + start)
            out = model.generate(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                max_new_tokens=max_new_tokens,
                num_beams=1,
                eos_token_id=stops,
                pad_token_id=pad_id,
                use_cache=True,
                **decoding,
            )
        for r, i in enumerate(rows):
            outputs[i] = [tokenizer.decode(out[r * n + j, width:], skip_special_tokens=True).strip() for j in range(n)]
        bar.update(len(rows))
    bar.close()
    model.train(was_training)
    return outputs


def make_generate_fn(
    model: torch.nn.Module,
    tokenizer: Any,
    *,
    max_new_tokens: int = 256,
    batch_size: int = 8,
    dtype: torch.dtype = torch.float32,
    chat: bool = True,
):  # noqa: ANN201  (Callable[[list[str]], list[str]])
    """A ``generate(prompts) -> completions`` function over a local model, for the LLM judge.

    Each raw prompt becomes a user turn of the model's chat template when it has one.
    """

    def generate(prompts: list[str]) -> list[str]:
        rendered = [
            tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
            if chat and getattr(tokenizer, "chat_template", None) else p
            for p in prompts
        ]
        return generate_greedy(model, tokenizer, rendered, max_new_tokens=max_new_tokens, batch_size=batch_size,
                               dtype=dtype, progress=False)

    return generate
