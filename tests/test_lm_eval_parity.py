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

import dataclasses
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


def test_gsm8k_k_shot_prompt_and_greedy_answers_match_lm_evals_own_gsm8k_task(monkeypatch, tmp_path):
    """GSM8K k-shot with chain of thought renders lm-eval's stock ``gsm8k`` prompt (its YAML:
    "Question: ...\\nAnswer:", worked solutions after " ", "\\n\\n" between exemplars), stops
    where it stops ("Question:"), and generates the same greedy answers on the same model."""
    import json

    import torch

    monkeypatch.syspath_prepend(str(BENCH))
    from lm_eval_peer import run_lm_eval_gsm8k
    from test_bos import BY_NAME, family_tokenizer

    from aptune.data import load_task
    from aptune.data.example import EXEMPLARS
    from aptune.data.fewshot import exemplar_row
    from aptune.evaluate.runner import EvalSettings, answer_generative
    from aptune.prompts import PromptFormat, render_prompt

    shots = 3
    tokenizer = family_tokenizer(BY_NAME["llama"])
    model = _tiny_model("llama", tokenizer)
    train = load_task("gsm8k", split="train", limit=shots)
    items = load_task("gsm8k", split="test", limit=4)
    # lm-eval's first_n sampler shows every item the same exemplars: give ours the same ones
    items = [dataclasses.replace(ex, meta={**ex.meta, EXEMPLARS: [exemplar_row(t) for t in train]}) for ex in items]
    for path, rows in (("train.json", train), ("test.json", items)):
        (tmp_path / path).write_text("\n".join(json.dumps({"question": ex.question, "answer": ex.answer}) for ex in rows))
    peer = run_lm_eval_gsm8k(model, tokenizer, str(tmp_path / "train.json"), str(tmp_path / "test.json"), shots,
                             max_gen_toks=12)
    fmt = PromptFormat(template="plain", shots=shots, cot=True)
    assert [render_prompt(ex, tokenizer, fmt) for ex in items] == [s["arguments"][0][0] for s in peer]
    assert peer[0]["arguments"][0][1]["until"][0] == "Question:"
    ours = answer_generative(model, tokenizer, items, EvalSettings(prompt=fmt, max_new_tokens=12), torch.float32,
                             progress=False)
    assert [r.prediction for r in ours] == [s["resps"][0][0].strip() for s in peer]


GSM8K_ANSWERS = [  # (response, reference's final number): how each judge reads typical answers
    ("She has 5 + 10 = 15 apples.\n#### 15", "15"), ("The answer is 15.", "15"), ("#### 16", "15"),
    ("It costs $1,500.", "1500"), ("so -3 degrees", "-3"), ("no idea", "7"), ("3 cats and 4 dogs", "3"),
    ("He pays 2.50 dollars", "2.5"),
]


def test_final_number_judge_agrees_with_lm_evals_gsm8k_metric_where_it_should():
    """Our ``final_number`` verdicts equal lm-eval's gsm8k verdicts (its flexible-extract filter
    then its exact_match, read from its YAML) on typical answers, except where a number is
    written in another form ("2.50" for 2.5): we compare numbers, lm-eval compares strings."""
    import sys

    sys.path.insert(0, str(BENCH))
    try:
        from lm_eval_peer import lm_eval_gsm8k_correct
    finally:
        sys.path.remove(str(BENCH))
    from aptune.data.example import Example
    from aptune.evaluate.judges import get_judge

    refs = [f"Worked out.\n#### {n}" for _, n in GSM8K_ANSWERS]
    items = [Example(f"g{i}", "gsm8k", "math", "q", answer=r) for i, r in enumerate(refs)]
    ours = [v.correct for v in get_judge("final_number").judge_many(items, [a for a, _ in GSM8K_ANSWERS])]
    theirs = lm_eval_gsm8k_correct([a for a, _ in GSM8K_ANSWERS], refs)
    assert ours == [True, True, False, True, True, False, False, True]  # the LAST number counts
    assert theirs == ours[:-1] + [False]  # "2.50" != "2.5" as strings
