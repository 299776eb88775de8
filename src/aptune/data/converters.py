"""One converter per source format: a raw row of a bundled dataset → an ``Example``.

Each converter mirrors lm-evaluation-harness 0.4.13's zero-shot task (``lm_eval/tasks/<task>``)
for the question text, the passage and the choice texts, so that ``template: plain`` with
cloze scoring reproduces lm-eval's inputs. ``aptune.prompts`` adds the "Question: ..\\nAnswer:"
wrapper for ``style="qa"`` and nothing for ``style="completion"``. Deliberate differences:

- SciQ: lm-eval lists the correct answer last. We order the four options by a hash of the
  item id, so the gold position varies and the majority-position baseline means something
  (cloze accuracy does not depend on the order).
- Winogrande: lm-eval ("partial evaluation") builds one context per option, prefix + option,
  and scores the shared suffix. aptune scores one context against many continuations, so we
  use the prefix as the context and "option + suffix" as each continuation
  (``style="completion"``). The rendered text is the same sentence; the scored span also
  covers the option, so accuracies are close to lm-eval's but not identical.
- Social IQa: lm-eval writes "Q: ..\\nA:"; we use the shared "Question: ..\\nAnswer:" wrapper.
- CommonsenseQA, MMLU, MedMCQA, MedQA: lm-eval scores letters after a lettered option list.
  We keep the option texts as choices; ``mc_format: letter`` renders the lettered list
  (for CommonsenseQA that is exactly lm-eval's prompt) and cloze scores the texts.

Ids are the source's own id where it has a unique one, otherwise "<prefix>-<row>"; they key
the split hash (``splits.py``), so they must never change for an existing item.
"""

from __future__ import annotations

import ast
import hashlib
import re
from collections.abc import Callable
from typing import Any

from aptune.data.example import Example, Style

#: (raw row, row index within its source split, source split, task name, domain) → Example.
Converter = Callable[[dict[str, Any], int, str, str, str], Example]


def _listish(value: Any) -> list[Any]:
    """Arrow lists come back as lists; a few sources store them as Python-literal strings."""
    if isinstance(value, str):
        return list(ast.literal_eval(value))
    return list(value)


def _dictish(value: Any) -> dict[str, Any]:
    return ast.literal_eval(value) if isinstance(value, str) else dict(value)


def _stable_order(item_id: str, n: int) -> list[int]:
    """A fixed pseudo-random permutation of range(n), derived from the item id alone."""
    digest = hashlib.sha256(item_id.encode()).digest()
    return sorted(range(n), key=lambda i: (digest[i % len(digest)], i))


def _hellaswag_clean(text: str) -> str:
    """lm-eval's HellaSwag preprocessing (WikiHow "[title]"/"[step]" artefacts removed)."""
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def labelled_choices(question_field: str = "question", strip: bool = False, style: Style = "qa") -> Converter:
    """ARC, CommonsenseQA, OpenBookQA: ``choices = {label: [...], text: [...]}`` + ``answerKey``.

    ``strip`` and ``style`` follow each lm-eval template: ARC uses the question as is,
    CommonsenseQA strips it, OpenBookQA scores the bare stem as a completion.
    """

    def convert(row: dict[str, Any], index: int, split: str, task: str, domain: str) -> Example:
        choices = _dictish(row["choices"])
        labels = [str(label).strip() for label in _listish(choices["label"])]
        gold = labels.index(str(row["answerKey"]).strip())
        question = row[question_field].strip() if strip else row[question_field]
        return Example(str(row["id"]), task, domain, question, tuple(_listish(choices["text"])), gold, style=style)

    return convert


_QUERY = re.compile(r"Question: (.*)\nAnswer:", re.DOTALL)


def oe_query_choices(style: Style = "qa") -> Converter:
    """oe-eval rc docs of ARC/OpenBookQA (``id``, ``query`` = "Question: q\nAnswer:", ``choices``, ``gold``).

    Only the test splits need this (the validation splits are read from hf_datasets); the
    question is cut out of ``query``, which reproduces the hf text exactly on every
    validation item of ARC-Easy, ARC-Challenge and OpenBookQA (checked in the tests).
    """

    def convert(doc: dict[str, Any], index: int, split: str, task: str, domain: str) -> Example:
        match = _QUERY.fullmatch(doc["query"])
        if match is None:
            raise ValueError(f"{task} {split} row {index}: unexpected oe-eval query format {doc['query'][:60]!r}")
        return Example(str(doc["id"]), task, domain, match.group(1), tuple(_listish(doc["choices"])),
                       int(doc["gold"]), style=style)

    return convert


def hellaswag(row: dict[str, Any], index: int, split: str, task: str, domain: str) -> Example:
    """The context is the question (style completion); ``ind`` is not unique, so ids use the row."""
    ctx = row["ctx_a"] + " " + row["ctx_b"].capitalize()
    query = _hellaswag_clean(row["activity_label"] + ": " + ctx)
    endings = tuple(_hellaswag_clean(e) for e in _listish(row["endings"]))
    return Example(f"hellaswag-{index}", task, domain, query, endings, int(row["label"]), style="completion")


def piqa(row: dict[str, Any], index: int, split: str, task: str, domain: str) -> Example:
    return Example(f"piqa-{index}", task, domain, row["goal"], (row["sol1"], row["sol2"]), int(row["label"]))


def sciq(row: dict[str, Any], index: int, split: str, task: str, domain: str) -> Example:
    """Support passage as context (lm-eval: ``support.lstrip()``); options in a per-item order."""
    rid = f"sciq-{index}"
    options = [row["distractor1"], row["distractor2"], row["distractor3"], row["correct_answer"]]
    order = _stable_order(rid, 4)
    support = (row.get("support") or "").lstrip() or None
    return Example(rid, task, domain, row["question"], tuple(options[j] for j in order), order.index(3),
                   context=support)


def boolq(row: dict[str, Any], index: int, split: str, task: str, domain: str) -> Example:
    """lm-eval: "{passage}\\nQuestion: {question}?\\nAnswer:" with choices no/yes."""
    label = row.get("label", row.get("answer"))
    gold = int(label in (True, "True", "true", 1, "1"))
    return Example(f"boolq-{index}", task, domain, f"{row['question']}?", ("no", "yes"), gold,
                   context=row["passage"])


def winogrande(row: dict[str, Any], index: int, split: str, task: str, domain: str) -> Example:
    """Prefix before "_" as context, "option + suffix" as choices (see the module docstring)."""
    prefix, _, suffix = row["sentence"].partition("_")
    choices = (f"{row['option1']}{suffix}".strip(), f"{row['option2']}{suffix}".strip())
    return Example(f"winogrande-{index}", task, domain, prefix.strip(), choices, int(row["answer"]) - 1,
                   style="completion")


def social_iqa(row: dict[str, Any], index: int, split: str, task: str, domain: str) -> Example:
    return Example(f"siqa-{index}", task, domain, f"{row['context']} {row['question']}",
                   (row["answerA"], row["answerB"], row["answerC"]), int(row["label"]) - 1)


def mmlu(row: dict[str, Any], index: int, split: str, task: str, domain: str) -> Example:
    """hails/mmlu_no_train: question, choices (4), answer index; ids carry the source split."""
    subject = task.removeprefix("mmlu_")
    return Example(f"mmlu-{subject}-{split}-{index}", task, domain, row["question"].strip(),
                   tuple(_listish(row["choices"])), int(row["answer"]))


def medmcqa(doc: dict[str, Any], index: int, split: str, task: str, domain: str) -> Example:
    """oe-eval MedMCQA doc: question, opa..opd, cop (0-based); the dataset's UUID is the id."""
    return Example(str(doc["id"]), task, domain, doc["question"].strip(),
                   (doc["opa"], doc["opb"], doc["opc"], doc["opd"]), int(doc["cop"]),
                   meta={"subject": doc.get("subject_name")})


def medqa(doc: dict[str, Any], index: int, split: str, task: str, domain: str) -> Example:
    """oe-eval MedQA-en doc (rc variant: option texts in ``choices``, 5 options, ``answer_idx``)."""
    return Example(f"medqa-{doc['index']}", task, domain, doc["question"].strip(), tuple(_listish(doc["choices"])),
                   int(doc["answer_idx"]))


# --- free-form answers ---------------------------------------------------------------------------
# The answer is the reference a judge checks (``aptune.evaluate.judges.default_judge_for``): a
# GSM8K solution ending "#### 72" gets final_number, a short reference short_answer, an item
# with tests code_tests.

def gsm8k(doc: dict[str, Any], index: int, split: str, task: str, domain: str) -> Example:
    """oe-eval GSM8K doc: the question and the worked solution ending "#### <number>", without
    the dataset's calculator annotations ("<<16-3-4=9>>"), which no model should learn to write;
    the number after "####" is ``meta["final_answer"]`` (what a prompt without chain of thought
    shows and trains on)."""
    solution = re.sub(r"<<[^>]*>>", "", doc["answer"])
    final = solution.rsplit("####", 1)[-1].strip()
    return Example(f"gsm8k-{doc['id']}", task, domain, doc["question"].strip(), answer=solution,
                   meta={"final_answer": final})


HUMANEVAL_ASK = ("Complete the following Python function. Answer with the whole function in one "
                 "```python code block.\n\n")


def humaneval(doc: dict[str, Any], index: int, split: str, task: str, domain: str) -> Example:
    """oe-eval HumanEval doc: the prompt (signature and docstring) is the code the answer
    continues; the reference is the canonical body; ``check(candidate)`` is the test."""
    return Example(str(doc["task_id"]).replace("/", "-"), task, domain, HUMANEVAL_ASK + doc["prompt"],
                   answer=doc["prompt"] + doc["canonical_solution"],
                   meta={"code_prefix": doc["prompt"], "tests": doc["test"], "entry_point": doc["entry_point"]})


def mbpp(doc: dict[str, Any], index: int, split: str, task: str, domain: str) -> Example:
    """oe-eval MBPP doc: the task text with its asserts shown (as the MBPP paper's prompt does);
    the reference solution; the asserts (after any setup code) are the test."""
    tests = [str(t) for t in _listish(doc["test_list"])]
    setup = str(doc.get("test_setup_code") or "").strip()
    question = (f"{doc['text'].strip()} Your code should pass these tests:\n\n" + "\n".join(tests)
                + "\n\nAnswer with the code in one ```python code block.")
    return Example(f"mbpp-{doc['task_id']}", task, domain, question, answer=str(doc["code"]).replace("\r\n", "\n"),
                   meta={"tests": "\n".join(([setup] if setup else []) + tests)})


def nq_open(doc: dict[str, Any], index: int, split: str, task: str, domain: str) -> Example:
    """oe-eval Natural Questions (open) doc: the question and its accepted short answers."""
    answers = [str(a) for a in _listish(doc["answers"])]
    question = doc["question"].strip()
    question = question[0].upper() + question[1:] + ("" if question.endswith("?") else "?")
    return Example(f"nq-{doc['index']}", task, domain, question, answer=answers[0], meta={"aliases": answers[1:]})


def _passage_and_question(query: str) -> tuple[str, str]:
    """An oe-eval reading-comprehension query ("<passage lines>\nQuestion: q\nAnswer:") split into
    the passage (shown as the item's context, so the plain prompt is the query itself) and q."""
    passage, _, rest = query.rpartition("\nQuestion: ")
    return passage, rest.removesuffix("Answer:").strip()


def squad(doc: dict[str, Any], index: int, split: str, task: str, domain: str) -> Example:
    """oe-eval SQuAD doc: "Title: …\nBackground: <passage>" as the context, the question, the
    annotators' answers (first = reference, the rest aliases); graded SQuAD's way, exact match
    of the normalised answer with token F1 beside (``meta["judge"]``)."""
    passage, question = _passage_and_question(doc["query"])
    answers = list(dict.fromkeys(str(a).strip() for a in _listish(doc["answers_text"]) if str(a).strip()))
    return Example(f"squad-{doc['id']}", task, domain, question, answer=answers[0], context=passage,
                   meta={"aliases": answers[1:], "judge": "exact_match"})


def drop(doc: dict[str, Any], index: int, split: str, task: str, domain: str) -> Example:
    """oe-eval DROP doc: "Passage: <passage>" as the context, the question, the accepted answers
    (a multi-span answer joined with ", " as its text, its spans kept in ``meta["answer_spans"]``);
    graded by DROP's own metric (``drop``: exact match, with DROP's bag F1 beside)."""
    passage, question = _passage_and_question(doc["query"])
    spans_by_text: dict[str, list[str]] = {}
    for spans in _listish(doc["answers"]):
        parts = [str(s).strip() for s in _listish(spans)]
        text = ", ".join(parts)
        if text:
            spans_by_text.setdefault(text, parts)
    answers = list(spans_by_text)
    return Example(f"drop-{doc['query_id']}", task, domain, question, answer=answers[0], context=passage,
                   meta={"aliases": answers[1:], "judge": "drop", "answer_spans": list(spans_by_text.values())})


def lambada(doc: dict[str, Any], index: int, split: str, task: str, domain: str) -> Example:
    """oe-eval LAMBADA doc: a passage whose last word is left out, to be continued with that
    word (``style="completion"``); graded on the first word written (``next_word``)."""
    word = str(_listish(doc["answers_text"])[0]).strip()
    return Example(f"lambada-{doc['id']}", task, domain, str(doc["query"]), answer=word, style="completion",
                   meta={"judge": "next_word"})


def jeopardy(doc: dict[str, Any], index: int, split: str, task: str, domain: str) -> Example:
    """oe-eval Jeopardy doc: the category as the item's context, the clue as the question, the
    response as the reference (short: the short-answer judge)."""
    category, clue = _passage_and_question(str(doc["query"]))
    return Example(f"jeopardy-{doc['index']}", task, domain, clue, answer=str(doc["answer"]).strip(), context=category)


def _distinct_ignoring_case(answers: list[str]) -> list[str]:
    """Answers without repeats that differ only in case, in order (lm-eval's CoQA answer list)."""
    kept: list[str] = []
    for answer in answers:
        if answer.lower() not in {k.lower() for k in kept}:
            kept.append(answer)
    return kept


def coqa(doc: dict[str, Any], index: int, split: str, task: str, domain: str) -> Example:
    """oe-eval CoQA doc (one turn of a conversation about a story): the story and the turns
    before this one as the context, this turn's question, the annotators' distinct answers
    (first = reference, the rest aliases), graded by CoQA's own leave-one-annotator-out metric
    (``coqa`` judge: exact match against any annotator, CoQA's F1 beside)."""
    context, question = _passage_and_question(str(doc["query"]))
    answers = _distinct_ignoring_case([str(a).strip() for a in _listish(doc["answers"]) if str(a).strip()])
    return Example(f"coqa-{doc['id']}", task, domain, question, answer=answers[0], context=context,
                   meta={"aliases": answers[1:], "judge": "coqa"})


def gold_choice_as_answer(doc: dict[str, Any], index: int, split: str, task: str, domain: str) -> Example:
    """oe-eval basic_skills doc (rc variant) as a free-form item: the text to continue, and the
    gold option as the reference ("4 * 8 =" → "32")."""
    choices = [str(c) for c in _listish(doc["choices"])]
    return Example(f"{task}-{doc['id']}", task, domain, doc["question"].strip(),
                   answer=choices[int(doc["gold"])].strip(), style="completion")
