"""Our multiple-choice accuracy equals lm-eval-harness's, item by item.

lm-eval runs its own pipeline (task template → requests → HFLM scorer) on the same loaded
model; we score the same ARC-Easy validation items in source order with the plain cloze
format, which renders lm-eval's arc_easy template. fp32 on both sides.

On the real default model (SmolLM2, whose tokenizer adds no BOS), and on tiny random models of
families whose tokenizer adds BOS by default (Llama; Gemma 3 with its sliding-window layers),
where lm-eval leaves ``add_special_tokens`` to the tokenizer and so puts BOS in front of every
context: our per-choice log-likelihoods must equal its own, BOS included.
"""

from __future__ import annotations

from pathlib import Path

import pytest

#: lm-eval's side of the comparison lives with the benchmarks (bench/lm_eval_peer.py), not in aptune
BENCH = Path(__file__).resolve().parents[1] / "bench"

N_ITEMS = 24


@pytest.fixture(scope="module")
def real_model():
    from aptune.models import load_model, load_tokenizer

    return load_model("smollm2-135m"), load_tokenizer("smollm2-135m")


@pytest.mark.integration
def test_item_by_item_parity_with_lm_eval(real_model, monkeypatch):
    import torch

    monkeypatch.syspath_prepend(str(BENCH))
    from lm_eval_peer import run_lm_eval_arc_easy

    from aptune.data import load_task
    from aptune.evaluate.scoring import score_choices
    from aptune.prompts import PromptFormat

    model, tokenizer = real_model
    items = load_task("arc_easy", split="source", limit=N_ITEMS)
    ours = score_choices(model, tokenizer, items, PromptFormat(template="plain"), dtype=torch.float32, progress=False)
    peer = run_lm_eval_arc_easy(model, tokenizer, limit=N_ITEMS, batch_size=8)
    assert len(peer.logprobs) == len(ours) == N_ITEMS
    for ex, sc, lp in zip(items, ours, peer.logprobs):
        assert sc.logprobs == pytest.approx(lp, abs=2e-3), ex.id
    assert [s.prediction for s in ours] == peer.pred_acc
    assert [s.prediction_norm for s in ours] == peer.pred_acc_norm


def _tiny_model(family: str, tokenizer):  # noqa: ANN001, ANN202
    """A 2-layer random model of ``family`` over the tiny tokenizer's 128 ids, context 2048."""
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    common = dict(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=2048, bos_token_id=tokenizer.bos_token_id,
                  eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    if family == "llama":
        return LlamaForCausalLM(LlamaConfig(**common)).eval()
    # one sliding layer with a window shorter than most items (the scorer falls back to unpacked rows)
    config = Gemma3TextConfig(**common, head_dim=8, sliding_window=64,
                              layer_types=["sliding_attention", "full_attention"])
    return Gemma3ForCausalLM(config).eval()


TINY_ITEMS = 12


@pytest.mark.parametrize("family,tokenizer_family", [("llama", "llama"), ("gemma3", "gemma")])
def test_parity_with_lm_eval_where_the_tokenizer_adds_bos(family, tokenizer_family, monkeypatch):
    import torch

    monkeypatch.syspath_prepend(str(BENCH))
    from lm_eval_peer import run_lm_eval_arc_easy
    from test_bos import BY_NAME, family_tokenizer

    from aptune.data import load_task
    from aptune.evaluate.scoring import score_choices
    from aptune.prompts import PromptFormat, adds_bos

    tokenizer = family_tokenizer(BY_NAME[tokenizer_family])
    assert adds_bos(tokenizer)
    model = _tiny_model(family, tokenizer)
    items = load_task("arc_easy", split="source", limit=TINY_ITEMS)
    fmt = PromptFormat(template="plain")
    ours = score_choices(model, tokenizer, items, fmt, dtype=torch.float32, progress=False)
    peer = run_lm_eval_arc_easy(model, tokenizer, limit=TINY_ITEMS, batch_size=8)
    assert len(peer.logprobs) == len(ours) == TINY_ITEMS
    for ex, sc, lp in zip(items, ours, peer.logprobs):
        assert sc.logprobs == pytest.approx(lp, abs=2e-3), ex.id
    assert [s.prediction for s in ours] == peer.pred_acc
    assert [s.prediction_norm for s in ours] == peer.pred_acc_norm
    # not a vacuous agreement: the same model scored without BOS is outside the tolerance
    no_bos = family_tokenizer(BY_NAME[tokenizer_family])
    no_bos.add_bos_token = False
    bare = score_choices(model, no_bos, items, fmt, dtype=torch.float32, progress=False)
    assert any(abs(a - b) > 2e-3 for s, t in zip(bare, ours) for a, b in zip(s.logprobs, t.logprobs))


def test_mmlu_letter_format_matches_lm_evals_own_mmlu_task(monkeypatch):
    """MMLU in letter format renders lm-eval's stock MMLU prompt (its opening line "The following
    are multiple choice questions (with answers) about <subject>." and the bare question) and
    gets its per-letter log-likelihoods; lm-eval's task config is read from its own YAML files."""
    import torch

    monkeypatch.syspath_prepend(str(BENCH))
    from lm_eval_peer import run_lm_eval_mmlu
    from test_bos import BY_NAME, family_tokenizer

    from aptune.data import load_task
    from aptune.evaluate.scoring import score_choices
    from aptune.prompts import PromptFormat, render_prompt

    tokenizer = family_tokenizer(BY_NAME["llama"])
    model = _tiny_model("llama", tokenizer)
    items = load_task("mmlu_abstract_algebra", split="source:test", limit=TINY_ITEMS)
    fmt = PromptFormat(template="plain", mc_format="letter")
    peer, contexts = run_lm_eval_mmlu(model, tokenizer, "abstract_algebra", limit=TINY_ITEMS, batch_size=8)
    assert [render_prompt(ex, tokenizer, fmt) for ex in items] == contexts
    assert contexts[0].startswith("The following are multiple choice questions (with answers) about abstract "
                                  "algebra.\n\n")
    ours = score_choices(model, tokenizer, items, fmt, dtype=torch.float32, progress=False)
    for ex, sc, lp in zip(items, ours, peer.logprobs):
        assert sc.logprobs == pytest.approx(lp, abs=2e-3), ex.id
    assert [s.prediction for s in ours] == [s.prediction_norm for s in ours] == peer.pred_acc
