"""DROP's metric: hand-checked cases, and ours equal to lm-eval's ``drop`` task code on the
bundled DROP items with predictions of every kind (exact, one span of several, numbers written
otherwise, partial overlap, wrong)."""

from __future__ import annotations

import random

import pytest

from aptune.data import load_task
from aptune.data.example import Example
from aptune.evaluate.drop_metric import DropJudge, drop_em_f1, drop_score, normalize_span
from aptune.evaluate.judges import default_judge_for


def test_drop_normalisation_and_scores_by_hand():
    assert normalize_span("The 2-3 Touchdowns!") == "2.0 3.0 touchdowns"
    assert drop_em_f1("2", ["2.0"]) == (1.0, 1.0)  # numbers compare as numbers
    assert drop_em_f1("12 yards", ["12"]) == (0.0, 0.67)  # P 1/2, R 1
    assert drop_em_f1("13 yards", ["12 yards"]) == (0.0, 0.0)  # the reference's number is missing
    assert drop_em_f1("ARWU", ["ARWU", "CWTS Leiden", "THE"]) == (0.0, 0.33)  # one span of three
    assert drop_score("CWTS", [["ARWU"], [" "], ["CWTS"]]) == (1.0, 1.0)  # best answer; blank skipped


def test_the_bundled_drop_items_take_the_drop_judge():
    items = load_task("drop", split="test", limit=40, seed=0)
    assert all(default_judge_for(item).name == "drop" for item in items)
    single = next(i for i in items if len(i.meta["answer_spans"][0]) == 1)
    verdict = DropJudge().judge(single, single.meta["answer_spans"][0][0])
    assert verdict.correct and verdict.score == 1.0
    # a multi-span answer written as one string is one span, as lm-eval scores it: not an exact match
    multi = next(i for i in items if len(i.meta["answer_spans"][0]) > 1)
    assert not DropJudge().judge(multi, ", ".join(multi.meta["answer_spans"][0])).correct
    plain = Example("x", "t", "d", "How many?", answer="4")  # no spans given: each reference is one span
    assert DropJudge().judge(plain, "4.0 points").score == pytest.approx(0.67)
    assert DropJudge().judge(plain, "4.0 points").f1 == pytest.approx(0.67)


def test_parity_with_lm_evals_drop_metric():
    utils = pytest.importorskip("lm_eval.tasks.drop.utils")
    items = load_task("drop", split="test", limit=None, seed=0)
    rng = random.Random(0)
    fillers = ["", "the ", "about ", "A total of "]
    checked = 0
    for ex in items:
        answers = ex.meta["answer_spans"]
        doc = {"answers": [tuple(a) for a in answers]}
        first = answers[0]
        numeric = next((s for a in answers for s in a if s.replace(".", "", 1).isdigit()), None)
        candidates = [", ".join(first), first[-1], rng.choice(fillers) + first[0] + " yards",
                      " ".join(first[0].split()[:1]), "Touchdown by the Bears", ex.context.split(".")[0][:40]]
        if numeric is not None:
            candidates += [f"{float(numeric)}", f"{numeric}-{numeric}", f"{int(float(numeric)) + 1}"]
        for prediction in candidates:
            theirs = utils.process_results(doc, [prediction])
            assert drop_score(prediction, answers) == (theirs["em"], theirs["f1"]), (ex.id, prediction, answers)
            checked += 1
    assert checked > 1000
