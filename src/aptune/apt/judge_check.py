"""A sanity check on the judge, between mining and training: does it grade what we think it does?

APT trains on whatever the judge calls a mistake. A judge that fits the answers badly (exact
match against a model that answers in sentences) marks nearly the whole pool wrong, and DPO
then teaches format, not knowledge: a new user saw every one of 37 "What is the capital of X?"
answers judged wrong ("'capital of philippines is manila' matches none of 1 reference(s)"), 0%
held-out accuracy, and no warning. So before the first stage after mining, the round's answers
are checked:

- the share of the pool judged wrong must not exceed ``mining.max_wrong_share`` (0.8);
- for free-form items judged by exact match, the answers' median length must not exceed
  ``mining.max_length_ratio`` (4) times the references' median length, in words (a verbose
  model against short references is the failure above, before it shows in the share; the
  short-answer, final-number and code judges read long answers by design).

A failed check stops the run before training with a sample of judged items; the user changes
the judge, or goes on with ``aptune run --yes`` (``mining.accept_judge: true``). The check's
figures go into the manifest either way.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

#: how many judged items a failed check shows
SAMPLE = 5


@dataclass(frozen=True)
class JudgeCheck:
    """The figures of one round's check and whether it passed."""

    round: int
    pool: int
    wrong: int
    judges: tuple[str, ...]
    length_ratio: float | None  # median answer words / median reference words (exact-match items)
    problems: tuple[str, ...] = ()
    sample: tuple[dict[str, Any], ...] = field(default=(), repr=False)

    @property
    def passed(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["passed"] = self.passed
        out["sample"] = list(self.sample)
        return out


class JudgeCheckError(ValueError):
    """A judge check that failed; ``check`` has the figures and the sample to show."""

    def __init__(self, message: str, check: JudgeCheck) -> None:
        super().__init__(message)
        self.check = check


def _words(text: Any) -> int:
    return len(str(text or "").split())


def _question(row: dict[str, Any]) -> str:
    return str(row.get("example", {}).get("question", ""))


def check_answers(rows: Sequence[dict[str, Any]], round_index: int, *, max_wrong_share: float,
                  max_length_ratio: float) -> JudgeCheck:
    """Check one round's mining rows (``answers.jsonl``) against the two limits."""
    wrong_rows = [r for r in rows if not r["correct"]]
    free = [r for r in rows if "reference" in r and r.get("judge") == "exact_match"]
    ratio = None
    if free:
        answer_words = statistics.median(_words(r.get("answer_text", r.get("prediction"))) for r in free)
        reference_words = statistics.median(max(_words(r["reference"]), 1) for r in free)
        ratio = round(answer_words / reference_words, 2)
    problems = []
    share = len(wrong_rows) / len(rows) if rows else 0.0
    if rows and share > max_wrong_share:
        problems.append(f"it marked {len(wrong_rows)} of {len(rows)} pool items wrong ({100 * share:.0f}%, over "
                        f"mining.max_wrong_share {100 * max_wrong_share:.0f}%)")
    if ratio is not None and ratio > max_length_ratio:
        problems.append(f"the answers are {ratio:g}x as long as the references (median words; over "
                        f"mining.max_length_ratio {max_length_ratio:g})")
    shown = (wrong_rows or list(rows))[:SAMPLE]
    sample = tuple({"id": r["id"], "question": _question(r)[:160],
                    "answer": str(r.get("answer_text", r.get("prediction", "")))[:160],
                    "reference": str(r.get("reference", r.get("gold", "")))[:160],
                    "verdict": ("right" if r["correct"] else "wrong") + f": {r.get('judge_detail', '')}"[:160]}
                   for r in shown)
    judges = tuple(sorted({str(r.get("judge", "choice")) for r in rows}))
    return JudgeCheck(round_index, len(rows), len(wrong_rows), judges, ratio, tuple(problems), sample)


def failure_message(check: JudgeCheck, judge_setting: str | None) -> str:
    """The one-line error of a failed check: what is wrong, and the two ways on."""
    judge = judge_setting or f"auto ({', '.join(check.judges)})"
    return (f"round {check.round}: the judge looks wrong for these answers: {'; and '.join(check.problems)}; "
            f"judge: {judge} (sample above). Change mining.judge (choice, short_answer, exact_match, "
            "final_number, llm), or go on with --yes (mining.accept_judge: true)")


def format_sample(check: JudgeCheck) -> str:
    """The judged items a failed check shows, one block each."""
    lines = [f"judge check, round {check.round}: {check.wrong} of {check.pool} pool items judged wrong"
             + (f", answers {check.length_ratio:g}x the references' length" if check.length_ratio is not None else "")]
    for item in check.sample:
        lines += [f"  [{item['id']}] question: {item['question']}",
                  f"      answer: {item['answer']}",
                  f"      reference: {item['reference']}",
                  f"      verdict: {item['verdict']}"]
    return "\n".join(lines)
