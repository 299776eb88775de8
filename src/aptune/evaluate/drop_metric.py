"""DROP's own answer metric (Dua et al. 2019): exact match and F1 over bags of tokens.

DROP answers are numbers, dates or one or more spans, so its metric differs from SQuAD's in
three ways: every token that parses as a number is compared as a number (``"2.0"`` equals
``"2"``), an answer of several spans is aligned span by span with the prediction's (each span
is a bag of tokens; F1 is averaged over the aligned spans, unmatched ones scoring 0), and a
span whose reference holds numbers scores 0 unless the prediction has one of them. The item's
score is the best over its accepted answers. lm-eval's ``drop`` task computes the same
(``tests/test_drop_metric.py`` checks ours against its code on the bundled items).

The prediction is one span (the generated text, as lm-eval passes it), so the alignment of a
reference with k spans is: the prediction goes to the span it scores best on, and F1 is that
score over k.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

from aptune.data.example import Example
from aptune.evaluate.judges import Judge, Prediction, Verdict, _as_text, references

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)


def _is_number(token: str) -> bool:
    """What DROP calls a number: anything Python's ``float`` parses."""
    try:
        float(token)
    except ValueError:
        return False
    return True


def _normalize_token(token: str) -> str:
    token = token.lower()
    if not _is_number(token):
        token = "".join(ch for ch in token if ch not in _PUNCTUATION)
    if _is_number(token):
        token = str(float(token))
    return " ".join(_ARTICLES.sub(" ", token).split())


def normalize_span(span: str) -> str:
    """A span as DROP compares it: split on spaces and hyphens, each piece lower-cased, stripped
    of punctuation (unless it is a number), numbers written as floats, articles dropped."""
    return " ".join(t for t in (_normalize_token(piece) for piece in re.split(" |-", span)) if t.strip()).strip()


def _bag_f1(predicted: set[str], gold: set[str]) -> float:
    common = len(predicted & gold)
    precision = common / len(predicted) if predicted else 1.0
    recall = common / len(gold) if gold else 1.0
    return 0.0 if precision == 0.0 and recall == 0.0 else 2 * precision * recall / (precision + recall)


def _numbers_agree(gold: set[str], predicted: set[str]) -> bool:
    gold_numbers = {t for t in gold if _is_number(t)}
    return not gold_numbers or bool(gold_numbers & {t for t in predicted if _is_number(t)})


def drop_em_f1(prediction: str, gold_spans: Sequence[str]) -> tuple[float, float]:
    """Exact match and F1 (rounded to 2 places, as DROP's script) of one predicted span against
    one accepted answer given as its spans."""
    pred = normalize_span(prediction)
    golds = [normalize_span(s) for s in gold_spans]
    em = float(len(golds) == 1 and golds[0] == pred)
    pred_bag = set(pred.split())
    scores = [_bag_f1(pred_bag, set(g.split())) if _numbers_agree(set(g.split()), pred_bag) else 0.0 for g in golds]
    f1 = max(scores, default=0.0) / max(len(golds), 1)
    return em, round(f1, 2)


def answer_spans(example: Example) -> list[list[str]]:
    """The item's accepted answers as lists of spans: ``meta["answer_spans"]`` where the source
    gave them (bundled DROP), else each reference and alias as one span."""
    spans = example.meta.get("answer_spans")
    if spans:
        return [[str(s) for s in answer] for answer in spans]
    return [[r] for r in references(example)]


def drop_score(prediction: str, answers: Sequence[Sequence[str]]) -> tuple[float, float]:
    """The item's exact match and F1: the best over its accepted answers (blank ones skipped)."""
    best_em, best_f1 = 0.0, 0.0
    for spans in answers:
        if not spans or not str(spans[0]).strip():
            continue
        em, f1 = drop_em_f1(prediction, spans)
        best_em, best_f1 = max(best_em, em), max(best_f1, f1)
    return best_em, best_f1


class DropJudge(Judge):
    """Correct on DROP's exact match; the score is DROP's F1."""

    name = "drop"

    def judge(self, example: Example, prediction: Prediction) -> Verdict:
        text = _as_text(example, prediction)
        answers = answer_spans(example)
        em, f1 = drop_score(text, answers)
        shown = ", ".join(answers[0]) if answers else ""
        if em:
            return Verdict(True, f1, f"DROP exact match with {shown!r} (F1 {f1:.2f})", f1=f1)
        return Verdict(False, f1, f"{normalize_span(text)[:60]!r} is not {shown!r} by DROP's exact match "
                                  f"(F1 {f1:.2f})", f1=f1)
