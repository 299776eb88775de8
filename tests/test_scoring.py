"""Multiple-choice scoring: the packed (shared-prefix) path equals scoring each choice alone."""

from __future__ import annotations

import math

import pytest
import torch

from aptune.data.example import Example
from aptune.evaluate.scoring import score_choices
from aptune.prompts import PromptFormat, encode_continuation, render_answer, render_prompt
from tiny import tiny_model

ITEMS = [
    Example("q1", "t", "science", "what is the sun?", ("a star", "a planet", "water"), 0),
    Example("q2", "t", "science", "which is red?", ("fire", "the moon is not red at all", "sky", "tree"), 0),
    Example("q3", "t", "general", "the cat and the dog", (" ran", " sat down", " ate"), 1, style="completion"),
    Example("q4", "t", "general", "1 2 3 4 5 6 7 8 9 and then?", ("0", "10"), 1),
]


def _reference_logprob(model, tokenizer, example, choice, fmt) -> float:
    """Unbatched, unpacked log p(choice | prompt): the definition the scorer must match."""
    prompt = render_prompt(example, tokenizer, fmt)
    ctx, cont = encode_continuation(tokenizer, prompt, render_answer(example, choice, tokenizer, fmt))
    ids = torch.tensor([ctx + cont])
    with torch.no_grad():
        logp = model(input_ids=ids).logits[0].log_softmax(-1)
    return sum(logp[len(ctx) - 1 + k, t].item() for k, t in enumerate(cont))


@pytest.mark.parametrize("family", ["llama", "qwen2"])
@pytest.mark.parametrize("template,mc_format", [("plain", "cloze"), ("chat", "cloze"), ("chat", "letter")])
@pytest.mark.parametrize("packed", [True, False])
def test_scores_equal_unbatched_reference(tokenizer, family, template, mc_format, packed):
    model = tiny_model(family)
    fmt = PromptFormat(template=template, mc_format=mc_format)
    scores = score_choices(model, tokenizer, ITEMS, fmt, packed=packed, max_items=3, progress=False)
    for ex, sc in zip(ITEMS, scores):
        assert len(sc.logprobs) == len(ex.choices)
        for i, lp in enumerate(sc.logprobs):
            assert lp == pytest.approx(_reference_logprob(model, tokenizer, ex, i, fmt), abs=1e-4)


@pytest.mark.parametrize("row_tokens, max_items, rows", [(256, 32, 1), (256, 2, 2), (0, 32, 4)])
def test_short_items_share_a_row_and_score_as_if_alone(tokenizer, row_tokens, max_items, rows):
    """Several items in one row, each masked off from the others with its positions from 0, give
    each choice the log-probability it has alone; rows hold at most ``max_items`` items, and
    ``row_tokens=0`` keeps one item per row."""
    model = tiny_model("llama")
    fmt = PromptFormat(template="plain")
    shapes: list[tuple[int, ...]] = []
    hook = model.register_forward_pre_hook(lambda m, a, kw: shapes.append(tuple(kw["input_ids"].shape)),
                                           with_kwargs=True)
    scores = score_choices(model, tokenizer, ITEMS, fmt, row_tokens=row_tokens, max_items=max_items, progress=False)
    hook.remove()
    assert sum(batch for batch, _ in shapes) == rows
    for ex, sc in zip(ITEMS, scores):
        for i, lp in enumerate(sc.logprobs):
            assert lp == pytest.approx(_reference_logprob(model, tokenizer, ex, i, fmt), abs=1e-4)


def test_eager_attention_mask_path_matches_sdpa(tokenizer):
    sdpa = tiny_model("llama")
    eager = tiny_model("llama")
    eager.config._attn_implementation = "eager"
    fmt = PromptFormat(template="plain")
    a = score_choices(sdpa, tokenizer, ITEMS, fmt, progress=False)
    b = score_choices(eager, tokenizer, ITEMS, fmt, progress=False)
    for x, y in zip(a, b):
        assert x.logprobs == pytest.approx(y.logprobs, abs=1e-4)


def test_prediction_and_length_normalised_prediction():
    from aptune.evaluate.scoring import ChoiceScores

    sc = ChoiceScores(logprobs=(-4.0, -6.0), char_lengths=(2, 6), token_counts=(1, 3))
    assert sc.prediction == 0  # -4 > -6
    assert sc.prediction_norm == 1  # -4/2 = -2 < -6/6 = -1


def test_bf16_autocast_close_to_fp32(tokenizer, model):
    fmt = PromptFormat(template="plain")
    a = score_choices(model, tokenizer, ITEMS, fmt, progress=False)
    b = score_choices(model, tokenizer, ITEMS, fmt, dtype=torch.bfloat16, progress=False)
    for x, y in zip(a, b):
        assert all(math.isfinite(v) for v in y.logprobs)
        assert x.logprobs == pytest.approx(y.logprobs, rel=0.05, abs=0.3)


def test_rejects_generative_items(tokenizer, model):
    gen = Example("g", "t", "d", "what is 1 2?", answer="3")
    with pytest.raises(ValueError, match="not multiple choice"):
        score_choices(model, tokenizer, [gen], PromptFormat(), progress=False)


@pytest.mark.parametrize("window, packs", [(4, False), (4096, True)])
def test_sliding_window_model_packs_only_items_within_its_window(tokenizer, window, packs):
    """A custom 4D mask replaces a sliding-window model's own masks, so packing an item longer
    than the window would let tokens see past it. Scores must equal the per-choice definition
    either way; packing is used only where it is exact."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    from aptune.packing import sliding_window

    torch.manual_seed(0)
    config = Gemma3TextConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=4, num_key_value_heads=2, head_dim=8, sliding_window=window,
                              pad_token_id=0)
    model = Gemma3ForCausalLM(config).eval()
    assert sliding_window(model.config) == window
    fmt = PromptFormat(template="chat")
    calls = []
    handle = model.register_forward_pre_hook(lambda m, a, kw: calls.append(kw["attention_mask"].dim()), with_kwargs=True)
    scores = score_choices(model, tokenizer, ITEMS, fmt, progress=False)
    assert set(calls) == ({4} if packs else {2})
    calls.clear()
    forced = score_choices(model, tokenizer, ITEMS, fmt, progress=False, packed=True)  # asking cannot override the window
    handle.remove()
    assert set(calls) == ({4} if packs else {2})
    for ex, sc, sc_forced in zip(ITEMS, scores, forced):
        for i, lp in enumerate(sc.logprobs):
            assert lp == pytest.approx(_reference_logprob(model, tokenizer, ex, i, fmt), abs=1e-4)
            assert sc_forced.logprobs[i] == pytest.approx(lp, abs=1e-5)


def test_sliding_window_detection():
    from transformers import LlamaConfig, Qwen2Config

    from aptune.packing import sliding_window

    assert sliding_window(LlamaConfig()) is None
    assert sliding_window(Qwen2Config(sliding_window=64, use_sliding_window=False)) is None
    assert sliding_window(Qwen2Config(sliding_window=64, use_sliding_window=True, max_window_layers=0)) == 64


class _NoKeepLM(torch.nn.Module):
    """A causal LM whose forward has no ``logits_to_keep`` (custom code, older models)."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.config = inner.config

    def forward(self, input_ids, attention_mask=None, position_ids=None, use_cache=False):  # noqa: ANN001, ANN201
        return self.inner(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                          use_cache=use_cache)


@pytest.mark.parametrize("packed", [True, False])
def test_lm_head_sees_only_the_positions_that_predict_choice_tokens(tokenizer, packed):
    model = tiny_model("llama")
    fmt = PromptFormat(template="chat")
    seen: list[int] = []
    hook = model.lm_head.register_forward_hook(lambda _m, args, _out: seen.append(args[0].shape[:2].numel()))
    kept = score_choices(model, tokenizer, ITEMS, fmt, packed=packed, progress=False)
    kept_positions, seen[:] = sum(seen), []
    full = score_choices(_NoKeepLM(model), tokenizer, ITEMS, fmt, packed=packed, progress=False)
    hook.remove()
    choice_tokens = sum(sum(sc.token_counts) for sc in kept)
    # every choice token is predicted by one kept position; the prompts' logits are never built
    assert choice_tokens <= kept_positions < sum(seen) / 2
    for a, b in zip(kept, full):
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-4)


class _IgnoresKeepLM(_NoKeepLM):
    """Takes ``logits_to_keep`` but returns every position's logits (a custom forward)."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__(inner)
        self.offered = 0

    def forward(self, input_ids, attention_mask=None, position_ids=None, use_cache=False, logits_to_keep=0):  # noqa: ANN001, ANN201
        self.offered += isinstance(logits_to_keep, torch.Tensor)
        return super().forward(input_ids, attention_mask, position_ids, use_cache)


def test_model_that_ignores_logits_to_keep_is_scored_from_full_logits_and_asked_once(tokenizer):
    model = tiny_model("llama")
    ignoring = _IgnoresKeepLM(model)
    fmt = PromptFormat(template="chat")
    got = score_choices(ignoring, tokenizer, ITEMS, fmt, max_items=1, progress=False)
    want = score_choices(model, tokenizer, ITEMS, fmt, max_items=1, progress=False)
    for a, b in zip(got, want):
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-4)
    assert ignoring.offered == 1  # refused once, then no longer offered (one forward per batch)


def test_letter_format_acc_norm_divides_by_the_letter_as_lm_eval_does(tokenizer):
    """lm-eval's acc_norm divides by the scored continuation's length; in letter format that is
    the letter, the same for every option, so acc_norm picks what acc picks."""
    model = tiny_model("llama")
    letter = score_choices(model, tokenizer, ITEMS, PromptFormat(template="plain", mc_format="letter"), progress=False)
    cloze = score_choices(model, tokenizer, ITEMS, PromptFormat(template="plain", mc_format="cloze"), progress=False)
    for ex, sc in zip(ITEMS, letter):
        assert sc.char_lengths == (1,) * len(ex.choices) and sc.prediction_norm == sc.prediction
    for ex, sc in zip(ITEMS, cloze):
        assert sc.char_lengths == tuple(len(c) for c in ex.choices)
