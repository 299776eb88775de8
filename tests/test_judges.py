"""Judges: table-driven cases per judge, the registry, and the LLM judge through its
injection point (a generate function), with canned outputs and once with the real model."""

from __future__ import annotations

import logging

import pytest

from aptune.data.example import Example
from aptune.evaluate.judges import (
    AutoJudge,
    ChoiceJudge,
    ShortAnswerJudge,
    token_f1,
    ExactMatchJudge,
    FinalNumberJudge,
    Judge,
    LLMJudge,
    Verdict,
    default_judge_for,
    get_judge,
    judge_names,
    normalize_answer,
    parse_score,
    register_judge,
)

MC = Example(id="mc", task="t", domain="d", question="Which is a planet?",
             choices=("the Moon", "Mars", "Sirius", "A comet"), gold=1)
TEXT = Example(id="tx", task="t", domain="d", question="Capital of France?", answer="Paris",
               meta={"aliases": ["Paris, France"]})
NUM = Example(id="num", task="t", domain="d", question="3 boxes of 24?", answer="So 3 * 24 = 72.\n#### 72")
MONEY = Example(id="money", task="t", domain="d", question="Price?", answer="$1,200")
CITY = Example(id="city", task="t", domain="d", question="What is the capital of Mexico?", answer="Mexico City",
               meta={"aliases": ["CDMX"]})
LONG = Example(id="long", task="t", domain="d", question="Why is the sky blue?",
               answer="Rayleigh scattering of sunlight by the molecules of the air")


@pytest.mark.parametrize(
    ("prediction", "correct"),
    [
        (1, True),
        (0, False),
        ("B", True),
        ("(b)", True),
        ("B. Mars", True),
        ("mars", True),  # the option text itself, normalised
        ("A comet", False),  # an option text, not the article "a"
        ("C", False),
        ("Z", False),  # no such option
        ("I think it is Jupiter", False),
    ],
)
def test_choice(prediction: str | int, correct: bool) -> None:
    verdict = ChoiceJudge().judge(MC, prediction)
    assert verdict.correct is correct
    assert verdict.score == float(correct)


def test_choice_rejects_generative_items() -> None:
    with pytest.raises(ValueError, match="needs a multiple-choice item"):
        ChoiceJudge().judge(TEXT, "Paris")


@pytest.mark.parametrize(
    ("text", "normalised"),
    [("The  Eiffel Tower!", "eiffel tower"), ("an apple, a pear", "apple pear"), ("Theatre", "theatre"), ("  ", "")],
)
def test_squad_normalisation(text: str, normalised: str) -> None:
    assert normalize_answer(text) == normalised


@pytest.mark.parametrize(
    ("example", "prediction", "correct"),
    [
        (TEXT, "Paris", True),
        (TEXT, "  paris. ", True),
        (TEXT, "the Paris", True),
        (TEXT, "Paris France", True),  # alias from meta["aliases"]
        (TEXT, "Lyon", False),
        (TEXT, "Paris is the capital", False),  # exact, not containment
        (MC, 1, True),  # an index is compared as its option text
        (MC, "the moon", False),
    ],
)
def test_exact_match(example: Example, prediction: str | int, correct: bool) -> None:
    assert ExactMatchJudge().judge(example, prediction).correct is correct


@pytest.mark.parametrize(
    ("example", "prediction", "correct"),
    [
        (NUM, "The answer is 72.", True),
        (NUM, "24 * 3 = 72.0", True),  # numeric, not textual, equality
        (NUM, "I get 71", False),
        (NUM, "72 or maybe 73", False),  # the last number counts
        (NUM, "no idea", False),
        (MONEY, "It costs $1,200.", True),
        (MONEY, "1200", True),
        (MONEY, "1,2,0,0", False),  # not a thousands group: last number is 0
    ],
)
def test_final_number(example: Example, prediction: str, correct: bool) -> None:
    verdict = FinalNumberJudge().judge(example, prediction)
    assert verdict.correct is correct, verdict.detail


def test_final_number_needs_a_numeric_reference() -> None:
    with pytest.raises(ValueError, match="has no number"):
        FinalNumberJudge().judge(TEXT, "3")


@pytest.mark.parametrize(
    ("example", "judge_type"),
    [(MC, ChoiceJudge), (NUM, FinalNumberJudge), (MONEY, FinalNumberJudge), (TEXT, ShortAnswerJudge),
     (LONG, ExactMatchJudge)],
)
def test_default_judge_for(example: Example, judge_type: type) -> None:
    assert type(default_judge_for(example)) is judge_type


def test_auto_judge_mixes_judges_per_item() -> None:
    verdicts = AutoJudge().judge_many([MC, TEXT, NUM], ["B", "paris", "73"])
    assert [v.correct for v in verdicts] == [True, True, False]


@pytest.mark.parametrize(
    ("example", "prediction", "correct"),
    [
        (TEXT, "The capital of France is Paris.", True),  # a right answer stated in a sentence
        (TEXT, "paris", True),
        (TEXT, "It is Paris, France.", True),  # an alias
        (TEXT, "Parisian food is famous", False),  # whole words only, not a substring
        (TEXT, "Lyon", False),
        (CITY, "The capital of Mexico is Mexico City.", True),
        (CITY, "Mexico", False),  # a part of the reference is not the reference
        (CITY, "cdmx", True),
    ],
)
def test_short_answer_accepts_the_reference_stated_in_a_sentence(example: Example, prediction: str,
                                                                   correct: bool) -> None:
    verdict = ShortAnswerJudge().judge(example, prediction)
    assert verdict.correct is correct, verdict.detail
    assert verdict.score == pytest.approx(max(token_f1(prediction, r) for r in [example.reference,
                                                                                 *example.meta.get("aliases", ())]))
    assert verdict.f1 == verdict.score  # the evaluation's F1 column reads the verdict's f1


def test_short_answer_does_not_count_an_echo_of_the_question() -> None:
    trim = Example(id="trim", task="t", domain="d", question="After trimming, '  trimmed   ' becomes", answer="trimmed")
    judge = ShortAnswerJudge()
    assert not judge.judge(trim, "After trimming, '  trimmed   ' becomes").correct  # the question, repeated
    assert judge.judge(trim, "After trimming, '  trimmed   ' becomes 'trimmed'.").correct
    assert judge.judge(trim, "trimmed").correct


def test_token_f1_is_squads() -> None:
    assert token_f1("Mexico City", "mexico city") == 1.0
    assert token_f1("the capital is Mexico City", "Mexico City") == pytest.approx(2 * 0.5 * 1 / 1.5)
    assert token_f1("Lyon", "Paris") == 0.0 and token_f1("", "") == 1.0


def test_a_reference_of_punctuation_is_not_matched_by_any_punctuation() -> None:
    """SQuAD normalisation empties "%": without care, "&" would equal it."""
    sym = Example(id="sym", task="t", domain="d", question="# $ % # $", answer="%")
    for judge in (ExactMatchJudge(), ShortAnswerJudge()):
        assert judge.judge(sym, "%").correct and not judge.judge(sym, "&").correct
    assert ShortAnswerJudge().judge(sym, "it is %").correct and token_f1("&", "%") == 0.0


def test_exact_match_says_what_it_compares() -> None:
    detail = ExactMatchJudge().judge(CITY, "The capital of Mexico is Mexico City.").detail
    assert detail.startswith("exact match (whole normalised answer = reference)") and "'mexico city'" in detail


def test_judge_many_checks_alignment() -> None:
    with pytest.raises(ValueError, match="2 examples but 1 predictions"):
        ExactMatchJudge().judge_many([TEXT, TEXT], ["Paris"])


# --- LLM judge through its injection point ---------------------------------------------------

@pytest.mark.parametrize(
    ("output", "score"),
    [
        ("Feedback: correct. [RESULT] 4", 4),
        ("Feedback: wrong [RESULT] (1)", 1),
        ("Score: 5", 5),
        ("score = 2/5", 2),
        ("Score: 1. On reflection, [RESULT] 3", 3),  # the last score wins
        ("[RESULT] 9", None),  # out of range
        ("The response is good.", None),
        ("", None),
    ],
)
def test_parse_score(output: str, score: int | None) -> None:
    assert parse_score(output) == score


class CannedGenerate:
    """A generate function returning prepared completions, recording the batches it got."""

    def __init__(self, outputs: list[str]):
        self.outputs = list(outputs)
        self.batches: list[list[str]] = []

    def __call__(self, prompts: list[str]) -> list[str]:
        self.batches.append(prompts)
        taken, self.outputs = self.outputs[: len(prompts)], self.outputs[len(prompts) :]
        return taken


@pytest.mark.parametrize(
    ("threshold", "expected"),
    [(3, [True, False, True, False, False]), (4, [True, False, False, False, False]), (1, [True, True, True, False, True])],
)
def test_llm_judge_threshold_and_unparsable(threshold: int, expected: list[bool], caplog: pytest.LogCaptureFixture) -> None:
    outputs = ["Feedback: right [RESULT] 5", "Feedback: no [RESULT] 2", "Score: 3", "rambling", "[RESULT] 1"]
    generate = CannedGenerate(outputs)
    judge = LLMJudge(generate, threshold=threshold, batch_size=2)
    with caplog.at_level(logging.WARNING):
        verdicts = judge.judge_many([TEXT] * 5, ["Paris", "Lyon", "Paris!", "?", "Rome"])
    assert [v.correct for v in verdicts] == expected
    assert [v.score for v in verdicts] == [5.0, 2.0, 3.0, None, 1.0]
    assert judge.unparsable == 1 and judge.judged == 5
    assert "no 1-5 score" in caplog.text
    assert [len(b) for b in generate.batches] == [2, 2, 1]


def test_llm_judge_prompt_carries_question_response_reference_and_options() -> None:
    generate = CannedGenerate(["[RESULT] 5"])
    verdict = LLMJudge(generate).judge(MC, 2)
    prompt = generate.batches[0][0]
    assert verdict == Verdict(True, 5.0, "score 5 >= threshold 3")
    for needle in ("Which is a planet?", "B. Mars", "###Response:\nSirius", "(score 5):\nMars", "[RESULT]"):
        assert needle in prompt


def test_llm_judge_rejects_a_short_generate() -> None:
    with pytest.raises(ValueError, match="returned 0 completions for 1 prompts"):
        LLMJudge(lambda prompts: []).judge(TEXT, "Paris")


# --- registry -------------------------------------------------------------------------------

def test_registry_builds_by_name_with_options() -> None:
    assert {"auto", "choice", "exact_match", "short_answer", "final_number", "llm"} <= set(judge_names())
    judge = get_judge("llm", generate=CannedGenerate([]), threshold=4)
    assert isinstance(judge, LLMJudge) and judge.threshold == 4
    assert isinstance(get_judge("exact_match"), ExactMatchJudge)


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("regex", {}, "unknown judge 'regex'"),
        ("llm", {}, "needs a generate function"),
        ("llm", {"generate": len, "threshold": 6}, "between 1 and 5"),
        ("choice", {"threshold": 3}, "does not accept options"),
    ],
)
def test_registry_errors(name: str, options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        get_judge(name, **options)


def test_register_a_user_judge() -> None:
    class Contains(Judge):
        name = "contains_test"

        def judge(self, example: Example, prediction: str | int) -> Verdict:
            hit = example.reference.lower() in str(prediction).lower()
            return Verdict(hit, float(hit), "")

    register_judge("contains_test", Contains)
    assert get_judge("contains_test").judge(TEXT, "It is Paris.").correct
    with pytest.raises(ValueError, match="already registered"):
        register_judge("contains_test", Contains)


# --- the real default model as judge ------------------------------------------------------------

@pytest.mark.integration
def test_llm_judge_with_real_smollm2() -> None:
    """SmolLM2-135M is far too small to be a good judge; this checks the plumbing only: two
    items give two verdicts, each with a parsed 1-5 score or counted as unparsable."""
    import torch

    from aptune.models import load_model, load_tokenizer

    tokenizer = load_tokenizer("smollm2-135m")
    model = load_model("smollm2-135m")

    def generate(prompts: list[str]) -> list[str]:
        chats = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                               add_generation_prompt=True) for p in prompts]
        batch = tokenizer(chats, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(**batch, max_new_tokens=40, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
        return tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)

    judge = LLMJudge(generate, batch_size=2)
    verdicts = judge.judge_many([TEXT, NUM], ["Paris", "The answer is 12."])
    assert len(verdicts) == 2 and judge.judged == 2
    parsed = [v for v in verdicts if v.score is not None]
    assert all(1 <= v.score <= 5 for v in parsed)
    assert len(parsed) + judge.unparsable == 2


def test_llm_judge_scale_and_rubric_are_settable_and_bad_ones_refused() -> None:
    seen: list[str] = []

    def generate(prompts: list[str]) -> list[str]:
        seen.extend(prompts)
        return ["Feedback: fine [RESULT] 7", "no score here"]

    rubric = "Score 1: wrong.\nScore 10: perfect."
    judge = LLMJudge(generate, threshold=6, scale=10, rubric=rubric)
    verdicts = judge.judge_many([TEXT, TEXT], ["Paris", "Lyon"])
    assert verdicts[0].correct and verdicts[0].score == 7.0 and "threshold 6" in verdicts[0].detail
    assert not verdicts[1].correct and verdicts[1].detail.startswith("unparsable judge output")
    assert judge.unparsable == 1 and "score from 1 to 10" in seen[0] and rubric in seen[0]
    with pytest.raises(ValueError, match="between 1 and 10"):
        LLMJudge(generate, threshold=11, scale=10, rubric=rubric)
    with pytest.raises(ValueError, match="give a rubric for a 1-10 scale"):
        LLMJudge(generate, scale=10)


def test_an_eval_counts_unparsable_judge_outputs_and_reports_short_answer_f1() -> None:
    from aptune.evaluate.runner import EvalSettings, ItemResult, summarize

    short = [ItemResult(TEXT, True, "It is Paris.", {"judge": "short_answer", "judge_score": 0.5, "f1": 0.5}),
             ItemResult(TEXT, False, "Lyon", {"judge": "short_answer", "judge_score": 0.0, "f1": 0.0})]
    tm = summarize("t", short, EvalSettings())
    assert tm.metrics["f1"].value == pytest.approx(0.25) and tm.judge_unparsable == 0
    llm = [ItemResult(TEXT, False, "x", {"judge": "llm", "judge_detail": "unparsable judge output: 'x'"}),
           ItemResult(TEXT, True, "Paris", {"judge": "llm", "judge_detail": "score 5 >= threshold 3"})]
    out = summarize("t", llm, EvalSettings()).to_dict()
    assert out["judge_unparsable"] == 1 and "f1" not in out["metrics"]
