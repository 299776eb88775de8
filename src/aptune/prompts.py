"""The prompt format, defined once: evaluation, mining and training all render through here.

A prompt is the text up to where the answer starts; an answer is the continuation the model
is scored on (multiple choice), generates (generative), or is trained on (SFT/DPO). Keeping
both in one module is what guarantees that a DPO pair's prompt is exactly the text the model
saw when it made the mistake being trained away (the released APT code did not do this).

Formats:
- ``template``: ``chat`` wraps the question as a user turn of the tokenizer's chat template;
  ``plain`` uses lm-eval's raw text templates; ``auto`` = chat when the tokenizer has one,
  otherwise plain (the documented fallback for tokenizers without a chat template).
- ``mc_format``: ``cloze`` scores the answer text itself (default: small models measure
  knowledge this way); ``letter`` lists "A. .." options and scores " A"/" B"... (what MMLU-style
  harnesses do; models of this size answer "A" to almost every item in that format, so a letter
  accuracy mostly measures how often A is the gold answer: the evaluation's position statistics
  show it).
- ``shots``: k solved exemplars before the question, drawn from the task's train split by the
  loader (``data/fewshot.py``, carried in ``meta["exemplars"]``); plain prompts join them as
  lm-eval does ("\n\n" between items), chat prompts as earlier user/assistant turns (lm-eval's
  ``fewshot_as_multiturn``). A k-shot answer stops at the next exemplar's opening
  (``stop_strings``).
- ``cot``: chain of thought for items with a worked solution (``meta["final_answer"]``: GSM8K).
  On, exemplars and the training target show the worked solution, and a zero-shot prompt asks
  to reason step by step (k-shot, the plain prompt is then lm-eval's ``gsm8k``); off, they show
  the final answer alone. The judge extracts the final answer either way (``final_number``:
  the last number).

Special tokens: the text brings its own (a chat template writes them), and the only one added
is the BOS token, exactly where the model's tokenizer adds it by default (``bos_prefix``): Gemma,
Llama and Mistral were trained with BOS in front of every document and score near chance
without it; SmolLM2 and GPT-2-style tokenizers add none, so their inputs are the bare text.
A prompt whose rendered text already starts with the BOS token (a chat template that writes
``<bos>``) gets no second one. lm-eval makes the same decision (``add_special_tokens`` left to
the tokenizer, off when the string starts with BOS).
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Any, Literal

from aptune.data.example import EXEMPLARS, Example

Template = Literal["auto", "chat", "plain"]
MCFormat = Literal["cloze", "letter"]
LETTERS = string.ascii_uppercase


@dataclass(frozen=True)
class PromptFormat:
    """How an Example becomes model input. Part of every config; the same object everywhere."""

    template: Template = "auto"
    mc_format: MCFormat = "cloze"
    system_prompt: str | None = None  # None keeps the chat template's own default
    shots: int = 0  # solved exemplars before each question (the loader attaches them)
    cot: bool = False  # worked solutions and a step-by-step request, for items that have them

    def __post_init__(self) -> None:
        if self.shots < 0:
            raise ValueError(f"shots must be >= 0, not {self.shots}")

    def uses_chat(self, tokenizer: Any) -> bool:
        if self.template == "plain":
            return False
        has_template = bool(getattr(tokenizer, "chat_template", None))
        if self.template == "chat" and not has_template:
            raise ValueError(
                "prompt template 'chat' requested but the tokenizer has no chat template; "
                "use template: plain (or auto, which falls back to plain)"
            )
        return has_template


def _question_text(example: Example, fmt: PromptFormat) -> str:
    """The question as shown to the model, with lettered options in letter format."""
    text = example.question
    if example.is_multiple_choice and fmt.mc_format == "letter":
        options = "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(example.choices))
        text = f"{text}\n{options}"
    return text


def letter_header(example: Example) -> str | None:
    """lm-eval's opening line of an MMLU prompt in letter format ("The following are multiple
    choice questions (with answers) about <subject>."), for MMLU items (and items derived from
    them, ``meta["source_task"]``); None for every other item."""
    task = str(example.meta.get("source_task", example.task))
    if not task.startswith("mmlu_"):
        return None
    return f"The following are multiple choice questions (with answers) about {task.removeprefix('mmlu_').replace('_', ' ')}."


#: what a chain-of-thought prompt asks, after the question
COT_REQUEST = "Let's think step by step."


def exemplars(example: Example, fmt: PromptFormat) -> list[Example]:
    """The item's first ``fmt.shots`` exemplars; an item loaded without them cannot be rendered
    k-shot (the loader attaches them: ``load_task(..., shots=k)``)."""
    if fmt.shots == 0:
        return []
    rows = example.meta.get(EXEMPLARS) or []
    if len(rows) < fmt.shots:
        raise ValueError(f"task {example.task!r} item {example.id!r}: {fmt.shots}-shot prompt, but the item was loaded "
                         f"with {len(rows)} exemplar(s) (load it with shots={fmt.shots})")
    return [Example.from_dict(r) for r in rows[: fmt.shots]]


def uses_cot(example: Example, fmt: PromptFormat) -> bool:
    """Chain of thought applies to items with a worked solution (``meta["final_answer"]``)."""
    return fmt.cot and not example.is_multiple_choice and "final_answer" in example.meta


def asks_for_steps(example: Example, fmt: PromptFormat) -> bool:
    """Zero-shot chain of thought asks for it in words (lm-eval's ``gsm8k_cot_zeroshot``); k-shot
    exemplars show their worked solutions instead, and the prompt is lm-eval's ``gsm8k``."""
    return uses_cot(example, fmt) and fmt.shots == 0


def gold_answer(example: Example, fmt: PromptFormat) -> int | str:
    """The gold answer as the format shows it (an exemplar's answer, a training target): the gold
    choice index; the worked solution (chain of thought on) or the final answer alone (off) for
    items that have both; else the reference."""
    if example.is_multiple_choice:
        assert example.gold is not None
        return example.gold
    if "final_answer" in example.meta and not fmt.cot:
        return str(example.meta["final_answer"])
    return example.reference


def _plain_item(example: Example, fmt: PromptFormat, bare: bool = False) -> str:
    """One item in the plain template, up to where its answer starts (``bare``: the question
    without "Question: ", as lm-eval's MMLU writes it)."""
    question = _question_text(example, fmt)
    passage = f"{example.context}\n" if example.context else ""
    if example.style == "completion" and fmt.mc_format == "cloze":
        return passage + question
    opening = "" if bare else "Question: "
    request = f" {COT_REQUEST}" if asks_for_steps(example, fmt) else ""
    return f"{passage}{opening}{question}\nAnswer:{request}"


def _user_turn(example: Example, fmt: PromptFormat) -> str:
    """One item as a chat user turn."""
    question = _question_text(example, fmt)
    header = letter_header(example) if example.is_multiple_choice and fmt.mc_format == "letter" else None
    if example.style == "completion" and fmt.mc_format == "cloze":
        user = f"Continue the text:\n{question}"
    elif example.is_multiple_choice and fmt.mc_format == "letter":
        user = f"{question}\nAnswer with the letter of the correct option."
        if header is not None:
            user = f"{header}\n\n{user}"
    elif asks_for_steps(example, fmt):
        user = f"{question}\n{COT_REQUEST}"
    else:
        user = question
    if example.context:
        user = f"{example.context}\n\n{user}"
    return user


def render_prompt(example: Example, tokenizer: Any, fmt: PromptFormat) -> str:
    """Text up to (not including) the answer, as the model sees it: the exemplars (k-shot), the
    conversation so far (chat data: ``meta["history"]``, under its ``meta["system"]`` message),
    then the item."""
    shots = exemplars(example, fmt)
    history = example.meta.get("history") or []
    system = example.meta.get("system", fmt.system_prompt)
    if not fmt.uses_chat(tokenizer):
        header = letter_header(example) if example.is_multiple_choice and fmt.mc_format == "letter" else None
        bare = header is not None  # lm-eval's MMLU: the opening line, then bare questions
        items = [_plain_item(ex, fmt, bare) + render_answer(ex, gold_answer(ex, fmt), tokenizer, fmt) for ex in shots]
        items += [_plain_turns(user, reply) for user, reply in _turn_pairs(history)]
        body = "".join(f"{item}\n\n" for item in items) + _plain_item(example, fmt, bare)
        if example.meta.get("system"):
            body = f"{example.meta['system']}\n\n{body}"
        return f"{header}\n\n{body}" if bare else body
    messages = []
    if system is not None:
        messages.append({"role": "system", "content": system})
    for ex in shots:
        messages += [{"role": "user", "content": _user_turn(ex, fmt)},
                     {"role": "assistant", "content": render_answer(ex, gold_answer(ex, fmt), tokenizer, fmt)}]
    messages += [{"role": t["role"], "content": t["content"]} for t in history]
    messages.append({"role": "user", "content": _user_turn(example, fmt)})
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def _turn_pairs(history: list[dict[str, str]]) -> list[tuple[str | None, str | None]]:
    """The conversation so far as (user, assistant) exchanges, for the plain template."""
    pairs: list[tuple[str | None, str | None]] = []
    for turn in history:
        if turn["role"] == "user" or not pairs or pairs[-1][1] is not None:
            pairs.append((turn["content"], None) if turn["role"] == "user" else (None, turn["content"]))
        else:
            pairs[-1] = (pairs[-1][0], turn["content"])
    return pairs


def _plain_turns(user: str | None, reply: str | None) -> str:
    """One earlier exchange of a conversation in the plain template, laid out as a solved item."""
    return "\n".join(([f"Question: {user}"] if user is not None else []) + ([f"Answer: {reply}"] if reply is not None
                                                                             else []))


def stop_strings(example: Example, tokenizer: Any, fmt: PromptFormat) -> tuple[str, ...]:
    """Where a generated answer ends besides the end-of-turn token: a k-shot plain prompt
    teaches the model to go on with the next item, so its answer stops at a blank line (the
    exemplar delimiter), as lm-eval's ``until`` does; a chain-of-thought answer may hold blank
    lines, so it stops at the next "Question:". Zero-shot and chat prompts: none."""
    if fmt.shots == 0 or fmt.uses_chat(tokenizer):
        return ()
    return ("Question:",) if uses_cot(example, fmt) else ("\n\n",)


def render_answer(example: Example, answer: str | int, tokenizer: Any, fmt: PromptFormat) -> str:
    """The continuation for ``answer`` (a choice index, or free text for generative items).

    Plain prompts end in "Answer:" so the continuation starts with a space, as in lm-eval;
    chat prompts end with the assistant header, so the answer starts directly.
    """
    if isinstance(answer, int):
        if fmt.mc_format == "letter":
            text = LETTERS[answer]
        else:
            text = example.choices[answer]
    else:
        text = answer
    return text if fmt.uses_chat(tokenizer) else f" {text}"


def choice_continuations(example: Example, tokenizer: Any, fmt: PromptFormat) -> list[str]:
    """All scored continuations of a multiple-choice item, in choice order."""
    return [render_answer(example, i, tokenizer, fmt) for i in range(len(example.choices))]


def adds_bos(tokenizer: Any) -> bool:
    """Whether ``tokenizer`` puts its BOS token in front of text by default.

    Asked of the tokenizer itself (a probe string encoded with and without special tokens), so
    every way of saying it is covered: ``add_bos_token``, a template post-processor, a GGUF
    file's ``add_bos_token`` flag. Cached on the tokenizer."""
    cached = getattr(tokenizer, "_aptune_adds_bos", None)
    if cached is not None:
        return bool(cached)
    bos = tokenizer.bos_token_id
    answer = False
    if bos is not None:
        default = tokenizer("x")["input_ids"]
        bare = tokenizer("x", add_special_tokens=False)["input_ids"]
        answer = bool(default) and default[0] == bos and (not bare or bare[0] != bos)
    try:
        tokenizer._aptune_adds_bos = answer
    except AttributeError:  # pragma: no cover - exotic tokenizers with __slots__
        pass
    return answer


def bos_prefix(tokenizer: Any, text: str) -> list[int]:
    """The ids to put in front of ``text``'s own tokens: ``[bos_token_id]`` where the tokenizer
    adds BOS by default and the text does not already start with it (a chat template that
    writes ``<bos>`` itself), else ``[]``. The one place that decides it, for every encode path."""
    if not adds_bos(tokenizer):
        return []
    bos_text = tokenizer.bos_token
    if bos_text and text.startswith(bos_text):
        return []
    return [int(tokenizer.bos_token_id)]


def encode_prompt(tokenizer: Any, text: str) -> list[int]:
    """Token ids of a rendered prompt as the model takes it: ``bos_prefix`` + the text's tokens."""
    return bos_prefix(tokenizer, text) + list(tokenizer(text, add_special_tokens=False)["input_ids"])


def keep_last(tokenizer: Any, ids: list[int], n: int) -> list[int]:
    """The last ``n`` of ``ids``, cut from the left, but keeping a leading BOS in front where the
    tokenizer adds one (as its own left truncation would: the model always saw BOS at position 0).
    ``n`` counts the kept BOS; with ``n < 2`` there is no room for it and it is cut like any token."""
    if len(ids) <= n:
        return list(ids)
    if n >= 2 and ids and adds_bos(tokenizer) and ids[0] == tokenizer.bos_token_id:
        return [ids[0], *ids[len(ids) - n + 1 :]]
    return list(ids[len(ids) - n :]) if n > 0 else []


def encode_continuation(tokenizer: Any, prompt: str, continuation: str) -> tuple[list[int], list[int]]:
    """Token ids of prompt and continuation, split the way lm-eval splits them.

    The whole string is encoded at once and the prompt's ids are cut off its front, so BPE
    merges across the boundary match what the model would see in running text. Trailing
    spaces move from the prompt to the continuation first. Special tokens come from the text
    (the chat template writes them) plus the BOS token where the tokenizer adds one
    (``bos_prefix``): it belongs to the prompt, the continuation's ids are the same either way.
    """
    prefix = bos_prefix(tokenizer, prompt)
    n_spaces = len(prompt) - len(prompt.rstrip(" "))
    if n_spaces:
        continuation = prompt[-n_spaces:] + continuation
        prompt = prompt[:-n_spaces]
    whole = tokenizer(prompt + continuation, add_special_tokens=False)["input_ids"]
    context = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    return prefix + list(context), list(whole[len(context) :])


def end_of_turn_id(tokenizer: Any) -> int | None:
    """Id of the token that closes an assistant turn in the chat template (else EOS, else None).

    Found by rendering a one-turn conversation and reading what follows the assistant's text,
    so templates that close turns with something other than EOS are handled.
    """
    cached = getattr(tokenizer, "_aptune_eot_id", "unset")
    if cached != "unset":
        return cached  # type: ignore[return-value]
    eot: int | None = tokenizer.eos_token_id
    if getattr(tokenizer, "chat_template", None):
        marker = "ZQXJ"
        messages = [{"role": "user", "content": "x"}, {"role": "assistant", "content": marker}]
        text = tokenizer.apply_chat_template(messages, tokenize=False)
        tail = text[text.rfind(marker) + len(marker) :].strip()
        if tail:
            ids = tokenizer(tail, add_special_tokens=False)["input_ids"]
            if ids:
                eot = int(ids[0])
    try:
        tokenizer._aptune_eot_id = eot
    except AttributeError:  # pragma: no cover - exotic tokenizers with __slots__
        pass
    return eot
