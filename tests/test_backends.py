"""Generation backends (pluggable engines for generative mining) and the context-length rule."""

from __future__ import annotations

import pytest
import torch

from aptune.data.example import Example
from aptune.evaluate.backends import GenerationBackend, TransformersBackend, available_backends, get_backend, register_backend
from aptune.evaluate.generation import generate_greedy
from aptune.evaluate.runner import EvalSettings, answer
from aptune.prompts import PromptFormat, render_prompt

GEN = [Example(id=f"g{i}", task="t", domain="d", question=f"what is {i} and {i}?", answer=str(2 * i)) for i in range(4)]
SETTINGS = EvalSettings(prompt=PromptFormat(template="plain"), max_new_tokens=4)


def test_default_backend_is_transformers_generate(model, tokenizer):
    backend = get_backend("transformers", model, tokenizer, progress=False)
    assert isinstance(backend, TransformersBackend) and isinstance(backend, GenerationBackend)
    prompts = [render_prompt(ex, tokenizer, SETTINGS.prompt) for ex in GEN]
    assert backend.generate(prompts, 4) == generate_greedy(model, tokenizer, prompts, max_new_tokens=4, progress=False)
    results = answer(model, tokenizer, GEN, SETTINGS, torch.float32, progress=False)
    assert [r.prediction for r in results] == backend.generate(prompts, 4)


def test_a_registered_backend_answers_generative_items(model, tokenizer):
    calls = []

    class Oracle:  # "a faster engine": answers with the reference, so every item is right
        def __init__(self, model, tokenizer, **options):
            self.options = options

        def generate(self, prompts, max_new_tokens):
            calls.append((len(prompts), max_new_tokens, self.options["max_prompt_tokens"]))
            return [str(2 * int(p.split("what is ")[1].split(" ")[0])) for p in prompts]

    register_backend("oracle-test")(Oracle)
    assert "oracle-test" in available_backends()
    settings = EvalSettings(prompt=PromptFormat(template="plain"), max_new_tokens=4, generation_backend="oracle-test")
    results = answer(model, tokenizer, GEN, settings, torch.float32, progress=False)
    assert all(r.correct for r in results) and [r.prediction for r in results] == ["0", "2", "4", "6"]
    assert calls == [(4, 4, model.config.max_position_embeddings - 4)]  # context minus new tokens


def test_unknown_backend_is_a_clear_error(model, tokenizer):
    with pytest.raises(ValueError, match=r"unknown generation backend 'vllm-nope' \(available: .*transformers"):
        get_backend("vllm-nope", model, tokenizer)


LONG_MC = Example(id="long-1", task="t", domain="d", question="the cat " * 200, choices=("red", "blue"), gold=0)


def test_long_multiple_choice_prompt_is_cut_from_the_left(model, tokenizer, caplog):
    """The tiny model's context is 256 tokens; the question alone is ~800."""
    results = answer(model, tokenizer, [LONG_MC], SETTINGS, torch.float32, progress=False)
    assert len(results) == 1 and results[0].prediction in (0, 1)
    assert "'long-1'" in caplog.text and "prompt cut from the left" in caplog.text


def test_long_prompt_is_rejected_when_configured(model, tokenizer):
    settings = EvalSettings(prompt=PromptFormat(template="plain"), too_long="error")
    with pytest.raises(ValueError, match=r"item 'long-1': prompt \+ longest choice is \d+ tokens, more than the model's context of 256"):
        answer(model, tokenizer, [LONG_MC], settings, torch.float32, progress=False)
    long_gen = Example(id="long-g", task="t", domain="d", question="the cat " * 200, answer="red")
    with pytest.raises(ValueError, match=r"item 'long-g': prompt is \d+ tokens"):
        answer(model, tokenizer, [long_gen], settings, torch.float32, progress=False)
