"""Judges: is a model's answer to an Example correct? (APT step 2.)

APT grades every answer against the gold reference and trains on the ones judged wrong, so
the judge decides what the model learns. Exact checks are cheaper and more accurate than an
LLM wherever they exist, so they are the defaults (``default_judge_for``):

- ``choice``: the predicted choice index equals the gold index (multiple choice);
- ``exact_match``: SQuAD-normalised text equality with the reference (or ``meta["aliases"]``);
- ``short_answer``: the normalised reference (or an alias) appears as a whole-word span of the
  normalised answer, so "The capital of the Philippines is Manila." answers "Manila"; its score
  is the best token F1 against the references (SQuAD's), a second, graded metric;
- ``final_number``: the last number in the answer equals the reference's last number
  (GSM8K-style "... #### 72" references work);
- ``code_tests``: the answer's code passes the item's tests (``meta["tests"]``), run in a
  sandboxed child process (``code_judge.py``, ``sandbox.py``); the default for items with tests;
- ``llm``: a Prometheus-style absolute-grading rubric judge (score 1-5 against the reference),
  for free-form answers no exact check covers. It calls an injected
  ``generate(prompts) -> completions`` function, so any local causal LM and any generation
  engine can serve as the judge.

Every judge returns a ``Verdict`` per item; ``get_judge(name, **options)`` builds one by name
and ``register_judge`` adds a user's own.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import string
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar

from aptune.data.example import Example

log = logging.getLogger(__name__)

Prediction = str | int
GenerateFn = Callable[[list[str]], list[str]]


@dataclass(frozen=True)
class Verdict:
    """One judgement: correct or not, the judge's score (1.0/0.0, or the LLM's 1-5), and why.

    ``f1`` is the second metric of a worded answer (SQuAD's token F1 against the best reference,
    DROP's bag F1), set by the judges whose answers are words; None where an F1 means nothing
    (choices, numbers, code, an LLM's grade). The evaluation averages it where it is set."""

    correct: bool
    score: float | None
    detail: str
    judge: str | None = None  # which judge decided, where a dispatcher (``auto``) chose one
    f1: float | None = None


class Judge(ABC):
    """Grades predictions against an Example's reference."""

    name: ClassVar[str]

    @abstractmethod
    def judge(self, example: Example, prediction: Prediction) -> Verdict:
        """The verdict on one prediction (a choice index or answer text)."""

    def judge_many(self, examples: Sequence[Example], predictions: Sequence[Prediction]) -> list[Verdict]:
        """Verdicts for aligned lists of examples and predictions (batched where the judge can)."""
        _check_aligned(examples, predictions)
        return [self.judge(example, prediction) for example, prediction in zip(examples, predictions)]


def _check_aligned(examples: Sequence[Example], predictions: Sequence[Prediction]) -> None:
    if len(examples) != len(predictions):
        raise ValueError(f"{len(examples)} examples but {len(predictions)} predictions")


def _as_text(example: Example, prediction: Prediction) -> str:
    """Answer text of a prediction: the chosen option's text for an index, else the text."""
    if isinstance(prediction, bool):
        raise TypeError(f"example {example.id!r}: prediction must be a choice index or text, not a bool")
    if isinstance(prediction, int):
        if not example.is_multiple_choice or not 0 <= prediction < len(example.choices):
            raise ValueError(f"example {example.id!r}: choice index {prediction} out of range")
        return example.choices[prediction]
    return prediction


# --- choice ------------------------------------------------------------------------------

# A bare option letter: "B", "B.", "b)", "(b)", "C: text" (not the article in "a cat").
_LETTER = re.compile(r"^\s*\(?([A-Za-z])\s*(?:[).:]|$)")


def choice_index(example: Example, prediction: Prediction) -> int | None:
    """The option a prediction picks: an index, a leading letter ("B", "(b)", "C. text"), or
    an option's text (SQuAD-normalised); None when it names no option."""
    if isinstance(prediction, bool):
        return None
    if isinstance(prediction, int):
        return prediction
    normalised = normalize_answer(prediction)
    for i, choice in enumerate(example.choices):
        if normalize_answer(choice) == normalised:
            return i
    match = _LETTER.match(prediction)
    if match:
        index = string.ascii_uppercase.index(match.group(1).upper())
        if index < len(example.choices):
            return index
    return None


class ChoiceJudge(Judge):
    """Correct when the predicted option is the gold option."""

    name = "choice"

    def judge(self, example: Example, prediction: Prediction) -> Verdict:
        if not example.is_multiple_choice:
            raise ValueError(f"example {example.id!r}: the choice judge needs a multiple-choice item")
        picked = choice_index(example, prediction)
        if picked is None:
            return Verdict(False, 0.0, f"no option recognised in {str(prediction)[:60]!r}")
        correct = picked == example.gold
        return Verdict(correct, float(correct), f"picked {picked}, gold {example.gold}")


# --- exact_match -----------------------------------------------------------------------------

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lowercase, drop punctuation and the articles a/an/the, squeeze spaces."""
    text = text.lower().translate(_PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _light(text: str) -> str:
    """Lowercase and squeezed spaces only: for references that are all punctuation ("%", "#"),
    which SQuAD normalisation would empty (and so match any other punctuation)."""
    return " ".join(text.lower().split())


def normalizer_for(reference: str) -> Callable[[str], str]:
    """``normalize_answer``, or ``_light`` where it would empty the reference."""
    return normalize_answer if normalize_answer(reference) else _light


def references(example: Example) -> list[str]:
    """The accepted answers of a free-form item: the reference, then its aliases."""
    return [str(example.reference), *(str(a) for a in example.meta.get("aliases", ()))]


class ExactMatchJudge(Judge):
    """Correct when the normalised answer equals the normalised reference or one of its aliases."""

    name = "exact_match"

    def judge(self, example: Example, prediction: Prediction) -> Verdict:
        text = _as_text(example, prediction)
        answer = normalize_answer(text)
        accepted = references(example)
        f1 = max(token_f1(text, r) for r in accepted)
        for reference in accepted:
            norm = normalizer_for(reference)
            if norm(text) == norm(reference):
                return Verdict(True, 1.0, f"exact match of the normalised answer with {reference!r}", f1=f1)
        shown = normalize_answer(accepted[0]) or accepted[0]
        return Verdict(False, 0.0, f"exact match (whole normalised answer = reference): {answer[:60]!r} is not "
                                   f"{shown!r}" + (f" or {len(accepted) - 1} alias(es)" if len(accepted) > 1 else ""),
                       f1=f1)


class NextWordJudge(Judge):
    """Correct when the first word the model writes is the reference word (LAMBADA: the
    passage's missing last word), both lower-cased with the punctuation around them stripped
    ("Shane," is "shane"; articles are words here, not noise); what follows the word (the rest
    of the sentence) is not graded."""

    name = "next_word"

    @staticmethod
    def _word(text: str) -> str:
        return text.strip().strip(string.punctuation + "\u2018\u2019\u201c\u201d").lower()

    def judge(self, example: Example, prediction: Prediction) -> Verdict:
        text = _as_text(example, prediction)
        words = text.split()
        first = self._word(words[0]) if words else ""
        want = self._word(str(example.reference))
        if first and first == want:
            return Verdict(True, 1.0, f"the next word is {example.reference!r}")
        return Verdict(False, 0.0, f"the next word is {first[:30]!r}, not {want!r}")


# --- short_answer --------------------------------------------------------------------------------

#: references of at most this many normalised words get the short-answer judge by default
SHORT_REFERENCE_WORDS = 5


def token_f1(answer: str, reference: str) -> float:
    """SQuAD's token F1 between two texts, after ``normalize_answer`` (``_light`` for a reference
    of punctuation only)."""
    norm = normalizer_for(reference)
    got, want = norm(answer).split(), norm(reference).split()
    if not got or not want:
        return float(got == want)
    common = sum(min(got.count(t), want.count(t)) for t in set(got))
    if common == 0:
        return 0.0
    precision, recall = common / len(got), common / len(want)
    return 2 * precision * recall / (precision + recall)


def contains_span(answer: str, reference: str, echo: str | None = None) -> bool:
    """Whether normalised ``reference`` occurs in normalised ``answer`` as whole words.

    ``echo`` (the question): an answer that repeats the question ("After trimming, '  trimmed  '
    becomes") states nothing by the repetition, so a verbatim copy of a question of three words
    or more is taken out of the answer first."""
    norm = normalizer_for(reference)
    want = norm(reference)
    if not want:
        return False
    stated = norm(answer)
    copied = norm(echo) if echo else ""
    if len(copied.split()) >= 3:
        stated = stated.replace(copied, " ")
    return f" {want} " in f" {stated} "


class ShortAnswerJudge(Judge):
    """Correct when the reference (or an alias) is stated in the answer as a whole-word span.

    A model asked for "the city name only" often answers in a sentence; exact match then scores
    a right answer wrong, and APT would train the model to prefer the bare name over a correct
    sentence (format, not knowledge). The span rule accepts the sentence. What it cannot see:
    an answer that names the reference to deny it, or lists several candidates; where that
    matters use ``exact_match`` or ``llm``. The score is the best token F1 (graded overlap)."""

    name = "short_answer"

    def judge(self, example: Example, prediction: Prediction) -> Verdict:
        answer = _as_text(example, prediction)
        accepted = references(example)
        f1 = max(token_f1(answer, r) for r in accepted)
        for reference in accepted:
            if contains_span(answer, reference, echo=example.question):
                return Verdict(True, f1, f"states {reference!r} (token F1 {f1:.2f})", f1=f1)
        return Verdict(False, f1, f"{normalize_answer(answer)[:60]!r} does not state {accepted[0]!r}"
                                  + (f" or {len(accepted) - 1} alias(es)" if len(accepted) > 1 else "")
                                  + f" (token F1 {f1:.2f})", f1=f1)


# --- final_number ---------------------------------------------------------------------------

# Thousands groups ("1,234,567") or plain digits, optional decimals; ".5" too. A sign counts
# only when no word character precedes it, so the range "3-4" ends in 4, not -4.
_SIGN = r"(?:(?<![\w.])[-+])?"
_NUMBER = re.compile(_SIGN + r"(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)")
_FINAL_MARK = re.compile(r"####\s*\$?\s*(" + _NUMBER.pattern + r")\s*\.?\s*$")


def last_number(text: str) -> Decimal | None:
    """The last number in ``text`` (thousands commas removed), exactly; None when there is none."""
    found = _NUMBER.findall(text)
    if not found:
        return None
    try:
        return Decimal(found[-1].replace(",", ""))
    except InvalidOperation:  # pragma: no cover - the pattern only matches valid numbers
        return None


def is_numeric_reference(text: str) -> bool:
    """True for a reference that is a number ("72", "-3.5", "$1,200") or ends "#### <number>"."""
    stripped = text.strip().lstrip("$").rstrip("%").strip()
    return bool(_NUMBER.fullmatch(stripped) or _FINAL_MARK.search(text))


class FinalNumberJudge(Judge):
    """Correct when the answer's last number equals the reference's last number."""

    name = "final_number"

    def judge(self, example: Example, prediction: Prediction) -> Verdict:
        expected = last_number(example.reference)
        if expected is None:
            raise ValueError(f"example {example.id!r}: reference {example.reference[:60]!r} has no number")
        got = last_number(_as_text(example, prediction))
        if got is None:
            return Verdict(False, 0.0, f"no number in answer; expected {expected}")
        correct = got == expected
        return Verdict(correct, float(correct), f"answer {got}, expected {expected}")


# --- llm -------------------------------------------------------------------------------------

#: how an llm judge's verdict starts when its output had no score (counted by the evaluation)
UNPARSABLE = "unparsable judge output"

DEFAULT_RUBRIC = """Is the response a correct answer to the question, in agreement with the reference answer?
Score 1: The response is wrong, unrelated, or gives no answer.
Score 2: The response is mostly wrong, with only a fragment that agrees with the reference answer.
Score 3: The response's main answer agrees with the reference answer, but it has notable errors or omissions.
Score 4: The response agrees with the reference answer, with only minor flaws.
Score 5: The response is fully correct and equivalent to the reference answer."""

JUDGE_TEMPLATE = """###Task:
You grade a response to a question. You are given the question, the response, a reference answer that deserves a score of 5, and a scoring rubric.
1. Write brief feedback on the response, judging it only by the rubric.
2. Then give an integer score from 1 to {scale} according to the rubric.
3. Answer in exactly this format: "Feedback: <your feedback> [RESULT] <score from 1 to {scale}>"

###Question:
{question}

###Response:
{response}

###Reference answer (score {scale}):
{reference}

###Rubric:
{rubric}

###Feedback:"""

_SCORE_PATTERNS = (
    re.compile(r"\[RESULT\]\s*[:\-]?\s*\(?\s*(\d+)", re.IGNORECASE),
    re.compile(r"\bscore\s*[:=]\s*\(?\s*(\d+)", re.IGNORECASE),
)


def parse_score(text: str, scale: int = 5) -> int | None:
    """The 1-``scale`` score in a judge's output ("[RESULT] 4" or "Score: 4"; the last one
    wins), or None."""
    matches = [m for pattern in _SCORE_PATTERNS for m in pattern.finditer(text)]
    if not matches:
        return None
    value = int(max(matches, key=lambda m: m.start()).group(1))
    return value if 1 <= value <= scale else None


class LLMJudge(Judge):
    """Rubric judge: a causal LM grades each answer 1-5 against the reference.

    ``generate`` maps a batch of prompts to completions (apply the model's chat template
    inside it when the model needs one). An answer is correct when its score >= ``threshold``
    (APT's released code: bad = score < 3). Output without a score is logged, counted in
    ``unparsable``, and judged incorrect, so a broken judge cannot silently pass answers.
    """

    name = "llm"

    def __init__(
        self,
        generate: GenerateFn | None = None,
        *,
        threshold: float = 3,
        rubric: str | None = None,
        scale: int = 5,
        batch_size: int = 8,
    ):
        if generate is None:
            raise ValueError("judge 'llm' needs a generate function (prompts -> completions)")
        if scale < 2:
            raise ValueError(f"llm judge scale must be at least 2, not {scale}")
        if not 1 <= threshold <= scale:
            raise ValueError(f"llm judge threshold must be between 1 and {scale}, not {threshold}")
        if rubric is None and scale != 5:
            raise ValueError(f"llm judge: the default rubric scores 1-5; give a rubric for a 1-{scale} scale")
        if batch_size < 1:
            raise ValueError(f"llm judge batch_size must be >= 1, not {batch_size}")
        self.generate = generate
        self.threshold = threshold
        self.rubric = rubric or DEFAULT_RUBRIC
        self.scale = scale
        self.batch_size = batch_size
        self.unparsable = 0
        self.judged = 0

    def prompt(self, example: Example, prediction: Prediction) -> str:
        """The grading prompt for one answer: question (with options), response, reference, rubric."""
        question = example.question
        if example.is_multiple_choice:
            options = "\n".join(f"{string.ascii_uppercase[i]}. {c}" for i, c in enumerate(example.choices))
            question = f"{question}\n{options}"
        return JUDGE_TEMPLATE.format(
            question=question,
            response=_as_text(example, prediction),
            reference=example.reference,
            rubric=self.rubric,
            scale=self.scale,
        )

    def verdict(self, example: Example, output: str) -> Verdict:
        """Turn one judge completion into a Verdict (counting it when it has no score)."""
        self.judged += 1
        score = parse_score(output, self.scale)
        if score is None:
            self.unparsable += 1
            log.warning("example %r: llm judge output has no 1-5 score, judged incorrect: %r",
                        example.id, output[:120])
            return Verdict(False, None, f"{UNPARSABLE}: {output[:80]!r}")
        correct = score >= self.threshold
        relation = ">=" if correct else "<"
        return Verdict(correct, float(score), f"score {score} {relation} threshold {self.threshold:g}")

    def judge(self, example: Example, prediction: Prediction) -> Verdict:
        return self.judge_many([example], [prediction])[0]

    def judge_many(self, examples: Sequence[Example], predictions: Sequence[Prediction]) -> list[Verdict]:
        _check_aligned(examples, predictions)
        prompts = [self.prompt(example, prediction) for example, prediction in zip(examples, predictions)]
        verdicts: list[Verdict] = []
        for start in range(0, len(prompts), self.batch_size):
            batch = prompts[start : start + self.batch_size]
            outputs = self.generate(batch)
            if len(outputs) != len(batch):
                raise ValueError(f"llm judge generate returned {len(outputs)} completions for {len(batch)} prompts")
            verdicts.extend(self.verdict(examples[start + i], out) for i, out in enumerate(outputs))
        return verdicts


# --- choosing a judge ---------------------------------------------------------------------------

def default_judge_for(example: Example) -> Judge:
    """The exact check that fits an item: choice for MC, code_tests for items with tests, the
    judge the item's source names (``meta["judge"]``), final_number for numeric references,
    short_answer for short references (at most ``SHORT_REFERENCE_WORDS`` words), exact_match
    otherwise."""
    if example.is_multiple_choice:
        return ChoiceJudge()
    if example.meta.get("tests"):
        return _code_tests()
    named = example.meta.get("judge")  # the source's own metric (SQuAD: exact match; DROP: drop)
    if named in ITEM_NAMEABLE_JUDGES:
        return _REGISTRY[named]()
    if is_numeric_reference(example.reference):
        return FinalNumberJudge()
    if len(normalize_answer(str(example.reference)).split()) <= SHORT_REFERENCE_WORDS:
        return ShortAnswerJudge()
    return ExactMatchJudge()


class AutoJudge(Judge):
    """Applies ``default_judge_for`` item by item (mixed suites)."""

    name = "auto"

    def judge(self, example: Example, prediction: Prediction) -> Verdict:
        chosen = default_judge_for(example)
        return dataclasses.replace(chosen.judge(example, prediction), judge=chosen.name)


def _code_tests(**options: Any) -> Judge:
    """``code_tests`` (code_judge.py, which imports this module): built on first use."""
    from aptune.evaluate.code_judge import CodeTestsJudge

    return CodeTestsJudge(**options)


_REGISTRY: dict[str, Callable[..., Judge]] = {
    judge.name: judge for judge in (AutoJudge, ChoiceJudge, ExactMatchJudge, ShortAnswerJudge, FinalNumberJudge,
                                    NextWordJudge, LLMJudge)
}
_REGISTRY["code_tests"] = _code_tests


def _drop(**options: Any) -> Judge:
    """``drop`` (drop_metric.py, which imports this module): built on first use."""
    from aptune.evaluate.drop_metric import DropJudge

    return DropJudge(**options)


_REGISTRY["drop"] = _drop


def _coqa(**options: Any) -> Judge:
    """``coqa`` (coqa_metric.py, which imports this module): built on first use."""
    from aptune.evaluate.coqa_metric import CoQAJudge

    return CoQAJudge(**options)


_REGISTRY["coqa"] = _coqa

#: the judges an item's source may name in ``meta["judge"]``: the exact checks that need no
#: options (an LLM judge needs a model; code_tests is chosen by the item's tests)
ITEM_NAMEABLE_JUDGES = frozenset({ExactMatchJudge.name, ShortAnswerJudge.name, FinalNumberJudge.name,
                                  NextWordJudge.name, "drop", "coqa"})


def register_judge(name: str, factory: Callable[..., Judge]) -> None:
    """Make ``get_judge(name, **options)`` build judges with ``factory(**options)``."""
    if name in _REGISTRY:
        raise ValueError(f"a judge named {name!r} is already registered")
    _REGISTRY[name] = factory


def judge_names() -> list[str]:
    """Registered judge names, sorted."""
    return sorted(_REGISTRY)


def get_judge(name: str, **options: Any) -> Judge:
    """Build the judge registered as ``name`` with ``options`` (e.g. generate=, threshold= for llm)."""
    factory = _REGISTRY.get(name)
    if factory is None:
        raise ValueError(f"unknown judge {name!r}; choose one of {', '.join(judge_names())}")
    try:
        return factory(**options)
    except TypeError as exc:
        raise ValueError(f"judge {name!r} does not accept options {sorted(options)}: {exc}") from exc
