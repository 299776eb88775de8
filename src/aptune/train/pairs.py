"""Training items and how they become token ids: preference pairs and SFT items.

A prompt is text already rendered by ``aptune.prompts.render_prompt``; a response is a
continuation from ``render_answer``. Both are split into ids with
``aptune.prompts.encode_continuation`` so training sees exactly the tokens evaluation scores.

End of turn: when a prompt ends with the tokenizer's chat generation prompt (e.g.
``<|im_start|>assistant\\n``), the chat template would close the assistant turn after the
answer, so the template's end-of-turn token (``<|im_end|>`` for SmolLM2) is appended to every
response as an id, and is trained on. Plain prompts ("Question: ..\\nAnswer:") get nothing: they
are scored as bare continuations, with no end marker, and an appended EOS would make the
chosen and rejected responses share a token that teaches nothing about the answer.

BOS: ``encode_continuation`` puts the BOS token in front of the prompt where the tokenizer adds
one by default (``aptune.prompts.bos_prefix``, never a second one after a template's own), so it
is part of ``prompt_ids``, never a response token: it is neither trained on nor scored.

Truncation keeps the end of the prompt (the question is nearest the answer) and the whole
response, and a leading BOS (``prompts.keep_last``); only when a response alone exceeds the
budget is it cut at the right.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

from aptune.prompts import encode_continuation, end_of_turn_id, keep_last

log = logging.getLogger(__name__)

EosMode = Literal["auto", "always", "never"]


@dataclass(frozen=True)
class PreferencePair:
    """One DPO pair: a rendered prompt, the preferred and the dispreferred continuation."""

    id: str
    prompt: str
    chosen: str
    rejected: str


@dataclass(frozen=True)
class SFTItem:
    """One supervised example: a rendered prompt and the continuation to learn."""

    prompt: str
    response: str
    id: str = ""


@dataclass(frozen=True)
class TokenizedPair:
    """Token ids of a pair after end-of-turn and truncation; responses exclude the prompt."""

    id: str
    prompt_ids: tuple[int, ...]
    chosen_ids: tuple[int, ...]
    rejected_ids: tuple[int, ...]

    @property
    def length(self) -> int:
        """Longest of the two sequences, what padding has to fit."""
        return len(self.prompt_ids) + max(len(self.chosen_ids), len(self.rejected_ids))


@dataclass(frozen=True)
class TokenizedItem:
    """Token ids of an SFT item after end-of-turn and truncation."""

    id: str
    prompt_ids: tuple[int, ...]
    response_ids: tuple[int, ...]

    @property
    def length(self) -> int:
        return len(self.prompt_ids) + len(self.response_ids)


def _chat_generation_suffix(tokenizer: Any) -> str | None:
    """Text the chat template appends for ``add_generation_prompt`` (None without a template)."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    messages = [{"role": "user", "content": "x"}]
    with_prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    without = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    if not with_prompt.startswith(without) or with_prompt == without:
        return None
    return with_prompt[len(without) :]


def _wants_eos(tokenizer: Any, prompt: str, mode: EosMode) -> bool:
    if mode == "always":
        return True
    if mode == "never":
        return False
    suffix = getattr(tokenizer, "_aptune_gen_suffix", "unset")
    if suffix == "unset":
        suffix = _chat_generation_suffix(tokenizer)
        try:
            tokenizer._aptune_gen_suffix = suffix
        except AttributeError:  # pragma: no cover
            pass
    return bool(suffix) and prompt.endswith(suffix)


def _encode(
    tokenizer: Any, prompt: str, response: str, eos: int | None, name: str
) -> tuple[list[int], list[int]]:
    prompt_ids, response_ids = encode_continuation(tokenizer, prompt, response)
    if not prompt_ids:
        raise ValueError(f"{name}: prompt must be non-empty (the first response token is predicted from it)")
    if eos is not None:
        response_ids = [*response_ids, eos]
    return prompt_ids, response_ids


def _truncate(
    tokenizer: Any, prompt_ids: list[int], responses: list[list[int]], max_length: int
) -> tuple[list[int], list[list[int]], bool]:
    """Cut the prompt from the left (keeping a leading BOS), then (rarely) responses from the
    right, to fit max_length.

    At least one prompt token is kept: the first response token is predicted from it.
    """
    if max_length < 2:
        raise ValueError(f"max_length must be >= 2, not {max_length}")
    longest = max(len(r) for r in responses)
    if len(prompt_ids) + longest <= max_length:
        return prompt_ids, responses, False
    keep_response = min(longest, max_length - 1)
    responses = [r[:keep_response] for r in responses]
    keep_prompt = max_length - max(len(r) for r in responses)
    return keep_last(tokenizer, prompt_ids, keep_prompt), responses, True


def tokenize_pairs(
    tokenizer: Any, pairs: list[PreferencePair], max_length: int, eos: EosMode = "auto"
) -> list[TokenizedPair]:
    """Tokenise pairs; raises ValueError naming the pair when a response is empty."""
    eot = end_of_turn_id(tokenizer)
    out: list[TokenizedPair] = []
    truncated: list[str] = []
    seen: set[str] = set()
    for pair in pairs:
        if pair.id in seen:
            raise ValueError(f"pair id {pair.id!r} appears twice; ids key reference log-probs")
        seen.add(pair.id)
        append = eot if _wants_eos(tokenizer, pair.prompt, eos) else None
        prompt_ids, chosen = _encode(tokenizer, pair.prompt, pair.chosen, append, f"pair {pair.id!r}")
        _, rejected = _encode(tokenizer, pair.prompt, pair.rejected, append, f"pair {pair.id!r}")
        if not chosen or not rejected:
            raise ValueError(f"pair {pair.id!r}: chosen and rejected must both be non-empty")
        prompt_ids, (chosen, rejected), cut = _truncate(tokenizer, prompt_ids, [chosen, rejected], max_length)
        if cut:
            truncated.append(pair.id)
        out.append(TokenizedPair(pair.id, tuple(prompt_ids), tuple(chosen), tuple(rejected)))
    _warn_truncated("pairs", truncated, len(pairs), max_length)
    return out


def _warn_truncated(what: str, ids: list[str], total: int, max_length: int) -> None:
    """Name the examples cut to ``max_length`` (the first ten, then a count): none silently."""
    if ids:
        shown = ", ".join(repr(i) for i in ids[:10]) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
        log.warning("%d of %d %s exceeded train.max_length=%d; prompts cut from the left: %s", len(ids), total, what,
                    max_length, shown)


def tokenize_items(
    tokenizer: Any, items: list[SFTItem], max_length: int, eos: EosMode = "auto"
) -> list[TokenizedItem]:
    """Tokenise SFT items; raises ValueError naming the item when a response is empty."""
    eot = end_of_turn_id(tokenizer)
    out: list[TokenizedItem] = []
    truncated: list[str] = []
    for index, item in enumerate(items):
        name = item.id or str(index)
        append = eot if _wants_eos(tokenizer, item.prompt, eos) else None
        prompt_ids, response = _encode(tokenizer, item.prompt, item.response, append, f"SFT item {name!r}")
        if not response:
            raise ValueError(f"SFT item {name!r}: response must be non-empty")
        prompt_ids, (response,), cut = _truncate(tokenizer, prompt_ids, [response], max_length)
        if cut:
            truncated.append(name)
        out.append(TokenizedItem(name, tuple(prompt_ids), tuple(response)))
    _warn_truncated("SFT items", truncated, len(items), max_length)
    return out
