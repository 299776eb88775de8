"""Every model family gets its BOS token exactly where its tokenizer would add it, once.

Table-driven over tiny tokenizers built here (character-level, no downloads), one per way a
family handles BOS:

- ``smollm2``: BOS token ``<|im_start|>`` that the tokenizer never adds; its ChatML template
  starts with that same text (SmolLM2-Instruct's own setup): inputs are the bare text, as today.
- ``gpt2``: BOS = EOS = ``<|endoftext|>``, never added, no template.
- ``llama``: ``<s>`` added by default (Llama 2, Mistral base), no template.
- ``zephyr``: ``<s>`` added by default and a ChatML template that does not write it: added once.
- ``llama3``: ``<|begin_of_text|>`` added by default and a template that writes it itself.
- ``gemma``: ``<bos>`` added by default and a template that writes ``{{ bos_token }}`` (Gemma 3).

For every family, format and path (multiple-choice scoring, packed and not; batched greedy
generation; preference pairs and SFT items), the first token of every encoded prompt is BOS
exactly once where the family adds it, and the bare text's first token where it does not. The
model inputs are read off the model's own forward calls, not from our helpers' return values.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

import pytest
import torch
from tokenizers import Tokenizer, decoders, models
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from aptune.data.example import Example
from aptune.evaluate.generation import generate_greedy
from aptune.evaluate.scoring import score_choices
from aptune.prompts import (
    PromptFormat,
    adds_bos,
    bos_prefix,
    encode_continuation,
    encode_prompt,
    keep_last,
    render_prompt,
)
from aptune.train.pairs import PreferencePair, SFTItem, tokenize_items, tokenize_pairs

SPECIALS = ["<|pad|>", "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<s>", "</s>", "<|begin_of_text|>",
            "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<bos>", "<eos>", "<start_of_turn>",
            "<end_of_turn>"]
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
LLAMA3 = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
GEMMA = (
    "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n"
    "{{ m['content'] }}<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
VOCAB = 128


@dataclass(frozen=True)
class Family:
    name: str
    bos: str
    eos: str
    adds_bos: bool
    template: str | None

    @property
    def template_writes_bos(self) -> bool:
        return self.template is not None and self.template.startswith("{{ bos_token }}")


FAMILIES = [
    Family("smollm2", "<|im_start|>", "<|im_end|>", False, CHATML),
    Family("gpt2", "<|endoftext|>", "<|endoftext|>", False, None),
    Family("llama", "<s>", "</s>", True, None),
    Family("zephyr", "<s>", "</s>", True, CHATML),
    Family("llama3", "<|begin_of_text|>", "<|eot_id|>", True, LLAMA3),
    Family("gemma", "<bos>", "<eos>", True, GEMMA),
]
BY_NAME = {f.name: f for f in FAMILIES}


def family_tokenizer(family: Family) -> PreTrainedTokenizerFast:
    """Character-level tokenizer over printable ASCII with the family's specials (ids < 128)."""
    chars = [c for c in string.printable if c not in "\x0b\x0c\r"]
    vocab = {tok: i for i, tok in enumerate(SPECIALS + chars)}
    assert len(vocab) <= VOCAB
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=None))
    backend.add_special_tokens(SPECIALS)
    backend.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=family.bos, eos_token=family.eos,
                                  pad_token="<|pad|>")
    tok.add_bos_token = family.adds_bos  # transformers rebuilds the post-processor from this flag
    tok.padding_side = "left"
    if family.template:
        tok.chat_template = family.template
    return tok


def llama_model(seed: int = 0, max_positions: int = 512) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=max_positions)
    return LlamaForCausalLM(cfg).eval()


ITEMS = [
    Example("q1", "t", "science", "What is the sun?", ("a star", "a planet", "water"), 0),
    Example("q2", "t", "science", "Which is red?", ("fire", "the sky"), 0),
    Example("q3", "t", "general", "The cat and the dog", (" ran", " sat down"), 1, style="completion"),
]
FORMATS = ["plain", "auto"]  # auto = the chat template where the family has one


def _cases():
    return [pytest.param(f, t, id=f"{f.name}-{t}") for f in FAMILIES for t in FORMATS
            if t == "plain" or f.template is not None]


def _assert_starts_right(tok, family: Family, ids: list[int], prompt: str) -> None:
    """BOS first and only once where the family adds it; the bare text's tokens otherwise."""
    bare = tok(prompt, add_special_tokens=False)["input_ids"]
    if family.adds_bos:
        assert ids[0] == tok.bos_token_id, (family.name, prompt)
        assert ids[1] != tok.bos_token_id, (family.name, prompt)  # never twice
        assert ids.count(tok.bos_token_id) == 1
    else:
        assert ids[: len(bare)] == bare
        assert ids[0] == bare[0]


def _prompts(tok, fmt: PromptFormat) -> list[str]:
    return [render_prompt(ex, tok, fmt) for ex in ITEMS]


# --- the decision itself -----------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_the_tokenizer_flags_what_this_table_says(family: Family) -> None:
    tok = family_tokenizer(family)
    assert adds_bos(tok) is family.adds_bos
    with_specials = tok("Hi")["input_ids"]
    assert (with_specials[0] == tok.bos_token_id) is family.adds_bos  # the table is the tokenizer's own behaviour


@pytest.mark.parametrize("family,template", _cases())
def test_prompt_encoding_is_the_tokenizers_own_default(family: Family, template: str) -> None:
    """Plain text: what ``tokenizer(text)`` gives (BOS where it adds one). Text that already starts
    with BOS (a template writing it): its bare tokens, where the tokenizer would add a second."""
    tok = family_tokenizer(family)
    for prompt in _prompts(tok, PromptFormat(template=template)):
        ids = encode_prompt(tok, prompt)
        _assert_starts_right(tok, family, ids, prompt)
        starts_with_bos = prompt.startswith(tok.bos_token)  # ChatML starts with SmolLM2's BOS text too
        assert starts_with_bos == (template == "auto" and (family.template_writes_bos or family.name == "smollm2"))
        if family.adds_bos and not starts_with_bos:
            assert ids == tok(prompt)["input_ids"]
        else:
            assert ids == tok(prompt, add_special_tokens=False)["input_ids"]
        assert bos_prefix(tok, prompt) == ids[: len(ids) - len(tok(prompt, add_special_tokens=False)["input_ids"])]


# --- every encode path, read off the model's forward calls ------------------------------------


class _Inputs:
    """Records the (input_ids, attention_mask) of every forward call of a model."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.calls: list[tuple[torch.Tensor, torch.Tensor | None]] = []
        self.handle = model.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, _module, args, kwargs):  # noqa: ANN001, ANN202
        ids = kwargs.get("input_ids", args[0] if args else None)
        mask = kwargs.get("attention_mask")
        self.calls.append((ids.detach().cpu(), None if mask is None else mask.detach().cpu()))

    def close(self) -> None:
        self.handle.remove()


@pytest.mark.parametrize("packed", [True, False], ids=["packed", "separate"])
@pytest.mark.parametrize("family,template", _cases())
def test_scoring_rows_start_with_bos_once(family: Family, template: str, packed: bool) -> None:
    tok = family_tokenizer(family)
    model = llama_model()
    fmt = PromptFormat(template=template)
    rec = _Inputs(model)
    # one item per row (row_tokens=0), so each packed row is exactly one item's sequence
    scores = score_choices(model, tok, ITEMS, fmt, packed=packed, row_tokens=0, progress=False)
    rec.close()
    rows = [row.tolist() for ids, _ in rec.calls for row in ids]
    assert len(rows) == (len(ITEMS) if packed else sum(len(ex.choices) for ex in ITEMS))
    prompts = {render_prompt(ex, tok, fmt) for ex in ITEMS}
    for row in rows:  # each row begins with some item's prompt
        matches = [p for p in prompts if row[: len(encode_prompt(tok, p))] == encode_prompt(tok, p)]
        assert matches, row
        _assert_starts_right(tok, family, row, matches[0])
    # the continuation's ids do not change with BOS: only the prompt gets it
    for ex, sc in zip(ITEMS, scores):
        prompt = render_prompt(ex, tok, fmt)
        for i, n in enumerate(sc.token_counts):
            _, cont = encode_continuation(tok, prompt, ex.choices[i] if fmt.uses_chat(tok) else f" {ex.choices[i]}")
            assert n == len(cont)


@pytest.mark.parametrize("family,template", _cases())
def test_generation_rows_start_with_bos_once(family: Family, template: str) -> None:
    tok = family_tokenizer(family)
    model = llama_model()
    prompts = _prompts(tok, PromptFormat(template=template))
    rec = _Inputs(model)
    generate_greedy(model, tok, prompts, max_new_tokens=2, batch_size=8, progress=False)
    rec.close()
    ids, mask = rec.calls[0]  # the prefill: every prompt, left-padded
    assert ids.shape[0] == len(prompts)
    seen = []
    for row, row_mask in zip(ids.tolist(), mask.tolist()):
        real = row[row_mask.index(1):]
        prompt = next(p for p in prompts if encode_prompt(tok, p) == real)
        _assert_starts_right(tok, family, real, prompt)
        seen.append(prompt)
    assert sorted(seen) == sorted(prompts)


@pytest.mark.parametrize("family,template", _cases())
def test_training_prompts_start_with_bos_once_and_responses_never_hold_it(family: Family, template: str) -> None:
    tok = family_tokenizer(family)
    prompts = _prompts(tok, PromptFormat(template=template))
    pairs = [PreferencePair(f"p{i}", p, " yes", " no") for i, p in enumerate(prompts)]
    items = [SFTItem(p, " yes", f"s{i}") for i, p in enumerate(prompts)]
    for prompt, pair, item in zip(prompts, tokenize_pairs(tok, pairs, 256), tokenize_items(tok, items, 256)):
        for prompt_ids, responses in ((pair.prompt_ids, (pair.chosen_ids, pair.rejected_ids)),
                                      (item.prompt_ids, (item.response_ids,))):
            _assert_starts_right(tok, family, list(prompt_ids), prompt)
            for response in responses:
                assert tok.bos_token_id not in response or not family.adds_bos
        bare_prompt = tok(prompt, add_special_tokens=False)["input_ids"]
        bare_whole = tok(prompt + " yes", add_special_tokens=False)["input_ids"]
        assert list(item.response_ids[: len(bare_whole) - len(bare_prompt)]) == bare_whole[len(bare_prompt):]


# --- left truncation keeps BOS, as the tokenizer's own truncation does -------------------------


def test_left_truncation_keeps_a_leading_bos_in_every_path(caplog) -> None:
    family = BY_NAME["llama"]
    tok = family_tokenizer(family)
    bos = tok.bos_token_id
    long_prompt = "Question: " + "the cat sat " * 20 + "\nAnswer:"
    ids = encode_prompt(tok, long_prompt)
    assert keep_last(tok, ids, 10) == [bos, *ids[-9:]]
    assert keep_last(tok, ids, 1) == ids[-1:]  # no room for BOS and a token
    tok.truncation_side = "left"
    assert tok(long_prompt, truncation=True, max_length=10)["input_ids"] == [bos, *ids[-9:]]  # the tokenizer's own

    model = llama_model()
    rec = _Inputs(model)
    generate_greedy(model, tok, [long_prompt], max_new_tokens=1, max_prompt_tokens=16, progress=False)
    rec.close()
    assert rec.calls[0][0][0].tolist() == [bos, *ids[-15:]]
    assert "keeping the last 16" in caplog.text

    ex = Example("long", "t", "d", "the cat sat " * 20, ("red", "blue"), 0)
    rec = _Inputs(model)
    score_choices(model, tok, [ex], PromptFormat(template="plain"), packed=False, max_length=24, progress=False)
    rec.close()
    assert all(row[0] == bos and row[1] != bos for row in rec.calls[0][0].tolist())

    (pair,) = tokenize_pairs(tok, [PreferencePair("x", long_prompt, " yes", " no")], max_length=12)
    assert pair.prompt_ids[0] == bos and len(pair.prompt_ids) + len(pair.chosen_ids) <= 12
    assert list(pair.prompt_ids[1:]) == ids[len(ids) - len(pair.prompt_ids) + 1:]


def test_a_family_without_bos_truncates_exactly_as_before() -> None:
    tok = family_tokenizer(BY_NAME["gpt2"])
    ids = encode_prompt(tok, "<|endoftext|>the cat sat on the mat")
    assert ids[0] == tok.bos_token_id and keep_last(tok, ids, 5) == ids[-5:]
