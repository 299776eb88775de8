"""Preference pairs (SPEC-APT step 5): which answer is rejected, for every kind of case.

- weakness case: rejected = the model's own wrong answer;
- similar case answered right, multiple choice: the wrong option the model scored highest;
- similar generative case answered right: a sampled answer the judge scores wrong
  (``model_sample``), else another retrieved item's gold (``other_gold``);
- never a pair whose rejected side is its own gold; letter-format options are permuted.
"""

from __future__ import annotations

import pytest

from aptune.apt.negatives import sample_negatives
from aptune.apt.pair_builder import build_pairs
from aptune.data.example import Example
from aptune.evaluate.generation import Sampling, generate_samples
from aptune.evaluate.judges import Judge, Verdict, get_judge
from aptune.evaluate.runner import EvalSettings
from aptune.prompts import PromptFormat, render_answer

PLAIN = PromptFormat(template="plain")


def mc_row(id_: str, gold: int, prediction: int, logprobs: list[float]) -> dict:
    ex = Example(id_, "t", "d", f"question {id_}?", ("red", "blue", "green", "moon"), gold)
    return {"id": id_, "example": ex.to_dict(), "gold": gold, "prediction": prediction,
            "correct": prediction == gold, "logprobs": logprobs}


def gen_row(id_: str, answer: str, prediction: str) -> dict:
    ex = Example(id_, "t", "d", f"what is {id_}?", answer=answer)
    return {"id": id_, "example": ex.to_dict(), "reference": answer, "prediction": prediction,
            "correct": prediction == answer}


def test_weakness_rejects_own_answer_and_similar_mc_rejects_most_likely_wrong(tokenizer):
    weak = mc_row("w", gold=0, prediction=2, logprobs=[-3.0, -4.0, -1.0, -5.0])
    right = mc_row("s", gold=1, prediction=1, logprobs=[-2.5, -1.0, -9.0, -2.0])  # best wrong: 3 (-2.0)
    built = build_pairs([weak], [right], tokenizer, PLAIN)
    assert [(b.source, b.negative) for b in built] == [("weakness", "own_answer"), ("similar", "most_likely_wrong")]
    ex_w, ex_s = Example.from_dict(weak["example"]), Example.from_dict(right["example"])
    assert built[0].pair.chosen == render_answer(ex_w, 0, tokenizer, PLAIN)
    assert built[0].pair.rejected == render_answer(ex_w, 2, tokenizer, PLAIN)
    assert built[1].pair.rejected == render_answer(ex_s, 3, tokenizer, PLAIN)


def test_acc_norm_picks_the_wrong_option_by_length_normalised_score(tokenizer):
    """Options red/blue/green/moon have 3/4/5/4 characters; per character: -0.9, -0.25, -0.3, -0.5."""
    right = mc_row("s", gold=1, prediction=1, logprobs=[-2.7, -1.0, -1.5, -2.0])
    (built,) = build_pairs([], [right], tokenizer, PLAIN, mc_metric="acc_norm")
    assert built.pair.rejected == render_answer(Example.from_dict(right["example"]), 2, tokenizer, PLAIN)


def test_generative_similar_cases_use_samples_then_other_gold(tokenizer):
    rows = [gen_row("a", "4", "4"), gen_row("b", "9", "9"), gen_row("c", "7", "7")]
    built = build_pairs([], rows, tokenizer, PLAIN, similar_negative="model_sample", sampled_negatives={"a": "5"})
    by_id = {b.pair.id: b for b in built}
    assert by_id["a"].negative == "sampled" and by_id["a"].pair.rejected.strip() == "5"
    assert by_id["b"].negative == "other_gold" and by_id["b"].pair.rejected.strip() in {"4", "7"}
    # model_wrong has no option to pick for a generative item: another item's gold
    built = build_pairs([], rows, tokenizer, PLAIN, similar_negative="model_wrong")
    assert {b.negative for b in built} == {"other_gold"}
    for b in built:
        assert b.pair.rejected != b.pair.chosen


def test_no_pair_rejects_its_own_gold(tokenizer):
    rows = [gen_row("a", "4", "4"), gen_row("b", "4", "4")]  # the only other gold equals its own
    assert build_pairs([], rows, tokenizer, PLAIN, similar_negative="other_gold") == []


def test_letter_format_permutes_options_and_keeps_the_answers(tokenizer):
    fmt = PromptFormat(template="plain", mc_format="letter")
    rows = [mc_row(f"w{i}", gold=0, prediction=1, logprobs=[-1.0] * 4) for i in range(12)]
    built = build_pairs(rows, [], tokenizer, fmt, seed=3)
    letters = {b.pair.chosen.strip() for b in built}
    assert len(letters) > 1, "gold should not always be A after permutation"
    for b in built:
        prompt = b.pair.prompt
        gold_letter, rejected_letter = b.pair.chosen.strip(), b.pair.rejected.strip()
        assert f"{gold_letter}. red" in prompt and f"{rejected_letter}. blue" in prompt


class _WrongUnless(Judge):
    """Marks an answer correct only when it equals ``right`` (a stand-in for any exact judge)."""

    name = "test"

    def __init__(self, right: str) -> None:
        self.right = right

    def judge(self, example, prediction) -> Verdict:  # noqa: ANN001
        return Verdict(prediction == self.right, None, "")


def test_sampling_is_reproducible_and_leaves_the_process_rng_alone(model, tokenizer):
    import torch

    prompts = ["what is the sun?", "the cat"]
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = generate_samples(model, tokenizer, prompts, Sampling(n=3, seed=5), max_new_tokens=5, progress=False)
    assert torch.equal(torch.get_rng_state(), state)
    again = generate_samples(model, tokenizer, prompts, Sampling(n=3, seed=5), max_new_tokens=5, progress=False)
    other = generate_samples(model, tokenizer, prompts, Sampling(n=3, seed=6), max_new_tokens=5, progress=False)
    assert first == again and first != other
    assert [len(s) for s in first] == [3, 3]


def test_sample_negatives_keeps_the_first_sample_the_judge_scores_wrong(model, tokenizer):
    rows = [gen_row("a", "4", "4"), gen_row("b", "9", "9")]
    settings = EvalSettings(prompt=PLAIN, max_new_tokens=4)
    sampling = Sampling(n=3, seed=1)
    prompts = ["Question: what is a?\nAnswer:", "Question: what is b?\nAnswer:"]
    samples = generate_samples(model, tokenizer, prompts, sampling, max_new_tokens=4, progress=False)
    # a judge that accepts a's first sample: its negative must be a later one
    judge = _WrongUnless(samples[0][0])
    negatives = sample_negatives(model, tokenizer, rows, settings, judge, sampling, progress=False)
    later = [s for s in samples[0][1:] if s.strip() and s != samples[0][0]]
    assert negatives.get("a") == (later[0] if later else None)
    assert negatives["b"] == next(s for s in samples[1] if s.strip())
    # an exact-match judge against each item's reference: a sample equal to the gold never counts
    negatives = sample_negatives(model, tokenizer, rows, settings, get_judge("exact_match"), sampling, progress=False)
    assert all(v not in ("4", "9") for v in negatives.values())


@pytest.mark.parametrize("bad", [dict(n=0), dict(temperature=0.0), dict(top_p=1.5)])
def test_sampling_settings_are_checked(bad):
    with pytest.raises(ValueError):
        Sampling(**bad)
