"""CoQA's own metric (Reddy et al. 2019): every annotator's answer left out in turn.

A CoQA turn has up to four annotators' answers. Scoring a prediction against the best of all
of them would give a human answer (itself one of the four) a perfect score; CoQA's script
instead leaves each answer out in turn, takes the best exact match and the best token F1 of the
prediction against the others, and averages over the turns of that. With one distinct answer
the prediction is scored against it alone. Exact match and F1 are SQuAD's: the texts
SQuAD-normalised, F1 over the bags of tokens.

The answers are the item's reference and aliases: the annotators' distinct answers, first
answer first, a later one kept when no earlier one equals it ignoring case (``data/converters.py``)
— the list lm-eval's ``coqa`` task builds (``tests/test_reading_comprehension.py`` checks our
scores against its scoring code).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from aptune.data.example import Example
from aptune.evaluate.judges import Judge, Prediction, Verdict, _as_text, normalize_answer, references


def squad_exact(reference: str, prediction: str) -> float:
    """1.0 when the SQuAD-normalised texts are equal."""
    return float(normalize_answer(reference) == normalize_answer(prediction))


def squad_f1(reference: str, prediction: str) -> float:
    """SQuAD's token F1 (with no tokens on either side: 1.0 if both have none, else 0.0)."""
    want, got = normalize_answer(reference).split(), normalize_answer(prediction).split()
    if not want or not got:
        return float(want == got)
    common = sum((Counter(want) & Counter(got)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(got), common / len(want)
    return 2 * precision * recall / (precision + recall)


def coqa_scores(prediction: str, answers: Sequence[str]) -> tuple[float, float]:
    """(exact match, F1) of ``prediction`` by CoQA's leave-one-annotator-out rule."""
    if not answers:
        raise ValueError("a CoQA turn needs at least one answer")
    if len(answers) == 1:
        return squad_exact(answers[0], prediction), squad_f1(answers[0], prediction)
    em = f1 = 0.0
    for left_out in range(len(answers)):
        others = [a for i, a in enumerate(answers) if i != left_out]
        em += max(squad_exact(a, prediction) for a in others)
        f1 += max(squad_f1(a, prediction) for a in others)
    return em / len(answers), f1 / len(answers)


class CoQAJudge(Judge):
    """Correct when the answer matches one of the annotators' answers (SQuAD exact match); the
    score is CoQA's leave-one-out exact match and ``f1`` its leave-one-out F1 — the figure
    CoQA's leaderboard and lm-eval report."""

    name = "coqa"

    def judge(self, example: Example, prediction: Prediction) -> Verdict:
        text = _as_text(example, prediction)
        answers = references(example)
        em, f1 = coqa_scores(text, answers)
        if em > 0:
            return Verdict(True, em, f"matches an annotator's answer (CoQA EM {em:.2f}, F1 {f1:.2f})", f1=f1)
        return Verdict(False, em, f"{normalize_answer(text)[:60]!r} matches none of {len(answers)} annotators' "
                                  f"answers (CoQA F1 {f1:.2f})", f1=f1)
