"""k-shot prompts, chain of thought, per-task answer budgets and stop strings.

The exemplars come from the train split only and never include the item; rendering follows
lm-eval (plain) or earlier chat turns; a k-shot answer stops where the next exemplar would
begin, and early stopping never changes the answer the judge reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from aptune.data import load_task
from aptune.data.example import EXEMPLARS, Example
from aptune.data.files import DataError
from aptune.data.splits import split_of
from aptune.evaluate.generation import generate_greedy
from aptune.evaluate.runner import EvalSettings, answer_generative, cut_at_stop, max_new_tokens
from aptune.prompts import COT_REQUEST, PromptFormat, gold_answer, render_answer, render_prompt, stop_strings


def test_exemplars_come_from_the_train_split_never_the_item_and_do_not_depend_on_the_limit():
    few = load_task("gsm8k", split="test", limit=5, seed=1, shots=3)
    many = load_task("gsm8k", split="test", limit=40, seed=1, shots=3)
    train_ids = {ex.id for ex in load_task("gsm8k", split="train")}
    for ex in many:
        shown = [row["id"] for row in ex.meta[EXEMPLARS]]
        assert len(shown) == 3 and len(set(shown)) == 3 and ex.id not in shown
        assert set(shown) <= train_ids, "exemplars are train-split items only"
        assert all(set(row["meta"]) == {"final_answer"} for row in ex.meta[EXEMPLARS])
    assert [ex.meta[EXEMPLARS] for ex in few] == [ex.meta[EXEMPLARS] for ex in many[:5]]
    other_seed = load_task("gsm8k", split="test", limit=5, seed=2, shots=3)
    assert [ex.meta[EXEMPLARS] for ex in few] != [ex.meta[EXEMPLARS] for ex in other_seed]
    # a train item never shows itself
    for ex in load_task("gsm8k", split="train", limit=50, shots=4):
        assert ex.id not in [row["id"] for row in ex.meta[EXEMPLARS]] and split_of(ex) == "train"
    assert EXEMPLARS not in load_task("gsm8k", split="test", limit=1)[0].meta, "zero-shot items carry none"


def test_too_few_train_items_is_a_one_line_error(tmp_path: Path):
    path = tmp_path / "small.jsonl"
    rows = [{"id": f"q{i}", "question": f"q {i}?", "answer": str(i), "split": "test" if i else "train"} for i in range(4)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=r"small.jsonl'?: 2-shot prompts need more than 2 train-split items .* has 1$"):
        load_task(str(path), split="test", shots=2)


def test_rendering_without_exemplars_attached_is_refused(tokenizer):
    ex = load_task("gsm8k", split="test", limit=1)[0]
    with pytest.raises(ValueError, match="2-shot prompt, but the item was loaded with 0 exemplar"):
        render_prompt(ex, tokenizer, PromptFormat(template="plain", shots=2))


def _item(shots: int = 2) -> Example:
    return load_task("gsm8k", split="test", limit=1, shots=shots)[0]


def test_plain_k_shot_prompt_joins_solved_exemplars_as_lm_eval_does(tokenizer):
    ex = _item()
    shots = [Example.from_dict(r) for r in ex.meta[EXEMPLARS]]
    cot = render_prompt(ex, tokenizer, PromptFormat(template="plain", shots=2, cot=True))
    assert cot == (f"Question: {shots[0].question}\nAnswer: {shots[0].answer}\n\n"
                   f"Question: {shots[1].question}\nAnswer: {shots[1].answer}\n\n"
                   f"Question: {ex.question}\nAnswer:")
    direct = render_prompt(ex, tokenizer, PromptFormat(template="plain", shots=2))
    assert f"Answer: {shots[0].meta['final_answer']}\n\n" in direct and "####" not in direct
    assert render_prompt(ex, tokenizer, PromptFormat(template="plain", shots=1, cot=True)).count("Question:") == 2


def test_chat_k_shot_prompt_is_earlier_turns(tokenizer):
    ex = _item()
    text = render_prompt(ex, tokenizer, PromptFormat(template="chat", shots=2, cot=True))
    assert text.count("<|im_start|>user") == 3 and text.count("<|im_start|>assistant") == 3
    assert text.endswith("<|im_start|>assistant\n") and COT_REQUEST not in text


def test_zero_shot_chain_of_thought_asks_for_steps_only_on_items_with_a_worked_solution(tokenizer):
    gsm = load_task("gsm8k", split="test", limit=1)[0]
    fmt = PromptFormat(template="plain", cot=True)
    assert render_prompt(gsm, tokenizer, fmt).endswith(f"Answer: {COT_REQUEST}")
    assert COT_REQUEST in render_prompt(gsm, tokenizer, PromptFormat(template="chat", cot=True))
    short = load_task("nq_open", split="test", limit=1)[0]
    assert COT_REQUEST not in render_prompt(short, tokenizer, fmt)
    assert render_prompt(short, tokenizer, fmt) == render_prompt(short, tokenizer, PromptFormat(template="plain"))


def test_the_training_target_follows_chain_of_thought(tokenizer):
    gsm = load_task("gsm8k", split="test", limit=1)[0]
    final = gsm.meta["final_answer"]
    assert gold_answer(gsm, PromptFormat(cot=True)) == gsm.answer and gsm.answer.endswith(f"#### {final}")
    assert gold_answer(gsm, PromptFormat(cot=False)) == final
    assert render_answer(gsm, gold_answer(gsm, PromptFormat(template="plain")), tokenizer,
                         PromptFormat(template="plain")) == f" {final}"


def test_stop_strings_only_for_k_shot_plain_prompts(tokenizer):
    ex = _item()
    assert stop_strings(ex, tokenizer, PromptFormat(template="plain", shots=2, cot=True)) == ("Question:",)
    assert stop_strings(ex, tokenizer, PromptFormat(template="plain", shots=2)) == ("\n\n",)
    assert stop_strings(ex, tokenizer, PromptFormat(template="plain")) == ()
    assert stop_strings(ex, tokenizer, PromptFormat(template="chat", shots=2)) == ()
    assert cut_at_stop("  42\n\nQuestion: next", ("\n\n",)) == "42"
    assert cut_at_stop("a Question: b\n\nc", ("\n\n", "Question:")) == "a"
    assert cut_at_stop(" no stop here ", ("\n\n",)) == "no stop here"


def test_stopping_early_gives_the_answer_a_full_generation_cut_at_the_stop_would(model, tokenizer):
    prompts = ["what is the sun?", "the cat", "red blue green and", "1 2 3"]
    full = generate_greedy(model, tokenizer, prompts, max_new_tokens=24, progress=False)
    stop = next(t[3:5] for t in full if len(t.strip()) > 6)  # a string the answers do contain
    early = generate_greedy(model, tokenizer, prompts, max_new_tokens=24, progress=False, stop=(stop,))
    assert [cut_at_stop(t, (stop,)) for t in early] == [cut_at_stop(t, (stop,)) for t in full]
    assert any(len(e) < len(f) for e, f in zip(early, full)), "some row stopped early"


def test_each_task_answers_within_its_own_budget_unless_the_settings_name_one():
    gsm, short = load_task("gsm8k", split="test", limit=1)[0], load_task("nq_open", split="test", limit=1)[0]
    assert (max_new_tokens(gsm, EvalSettings()), max_new_tokens(short, EvalSettings())) == (256, 24)
    assert max_new_tokens(gsm, EvalSettings(max_new_tokens=16)) == 16
    plain = Example("u1", "mine", "x", "q?", answer="a")
    assert max_new_tokens(plain, EvalSettings()) == 64


def test_mixed_budgets_generate_in_groups_and_keep_input_order(model, tokenizer, monkeypatch):
    from aptune.evaluate import backends

    calls = []
    real = backends.TransformersBackend.generate

    def spy(self, prompts, budget, stop=()):  # noqa: ANN001, ANN202
        calls.append((len(prompts), budget, tuple(stop)))
        return real(self, prompts, budget, stop)

    monkeypatch.setattr(backends.TransformersBackend, "generate", spy)
    items = [Example("a", "t", "x", "the cat", answer="dog", meta={"max_new_tokens": 3}),
             Example("b", "t", "x", "the sun", answer="moon", meta={"max_new_tokens": 5}),
             Example("c", "t", "x", "red blue", answer="green", meta={"max_new_tokens": 3})]
    out = answer_generative(model, tokenizer, items, EvalSettings(prompt=PromptFormat(template="plain")),
                            torch.float32, progress=False)
    assert [r.example.id for r in out] == ["a", "b", "c"]
    assert sorted(calls) == [(1, 5, ()), (2, 3, ())]


def test_worded_answers_carry_their_f1_into_the_summary_and_numbers_do_not(model, tokenizer):
    from aptune.evaluate.judges import token_f1
    from aptune.evaluate.runner import summarize

    worded = Example("w", "t", "x", "the cat", answer="dog", meta={"max_new_tokens": 3})
    number = Example("n", "t", "x", "two and two", answer="4", meta={"max_new_tokens": 3})
    out = answer_generative(model, tokenizer, [worded, number], EvalSettings(prompt=PromptFormat(template="plain")),
                            torch.float32, progress=False)
    assert out[0].extra["judge"] == "short_answer" and out[1].extra["judge"] == "final_number"
    assert out[0].extra["f1"] == token_f1(str(out[0].prediction), "dog") and "f1" not in out[1].extra
    assert summarize("t", out, EvalSettings()).metrics["f1"].value == out[0].extra["f1"]
