"""The single prompt format: rendering and lm-eval's token split."""

from __future__ import annotations

import pytest

from aptune.data.example import Example
from aptune.prompts import PromptFormat, encode_continuation, render_answer, render_prompt
from tiny import tiny_tokenizer

MC = Example("1", "t", "d", "what is red?", ("fire", "water"), 0)


def test_plain_cloze_matches_lm_eval_template(tokenizer):
    fmt = PromptFormat(template="plain")
    assert render_prompt(MC, tokenizer, fmt) == "Question: what is red?\nAnswer:"
    assert render_answer(MC, 1, tokenizer, fmt) == " water"


def test_completion_style_is_continued_as_is(tokenizer):
    ex = Example("2", "t", "d", "the cat", (" sat", " ran"), 0, style="completion")
    assert render_prompt(ex, tokenizer, PromptFormat(template="plain")) == "the cat"


def test_letter_format_lists_options(tokenizer):
    fmt = PromptFormat(template="plain", mc_format="letter")
    assert render_prompt(MC, tokenizer, fmt) == "Question: what is red?\nA. fire\nB. water\nAnswer:"
    assert render_answer(MC, 1, tokenizer, fmt) == " B"


def test_chat_template_used_when_available_and_plain_fallback():
    chat_tok, plain_tok = tiny_tokenizer(chat=True), tiny_tokenizer(chat=False)
    auto = PromptFormat()
    assert render_prompt(MC, chat_tok, auto).endswith("<|im_start|>assistant\n")
    assert render_answer(MC, 0, chat_tok, auto) == "fire"
    assert render_prompt(MC, plain_tok, auto).startswith("Question:")
    with pytest.raises(ValueError, match="no chat template"):
        render_prompt(MC, plain_tok, PromptFormat(template="chat"))


def test_encode_continuation_moves_trailing_space(tokenizer):
    ctx, cont = encode_continuation(tokenizer, "Answer: ", "red")
    assert tokenizer.decode(ctx) == "Answer:"
    assert tokenizer.decode(cont) == " red"


def test_context_passage_precedes_the_question(tokenizer):
    ex = Example("3", "t", "d", "is it red?", ("no", "yes"), 1, context="The sun is red.")
    assert render_prompt(ex, tokenizer, PromptFormat(template="plain")) == "The sun is red.\nQuestion: is it red?\nAnswer:"
    chat = render_prompt(ex, tokenizer, PromptFormat(template="chat"))
    assert "The sun is red.\n\nis it red?" in chat
