"""``code_tests``: a code answer is correct when it passes the item's tests, run in a sandbox.

An item carries its tests in ``meta["tests"]`` (Python: asserts, or a ``check(candidate)``
function as HumanEval writes them), optionally the function's name in ``meta["entry_point"]``
and the code the answer continues in ``meta["code_prefix"]`` (HumanEval's prompt: signature and
docstring). The answer's code is the first fenced block (```python ... ```) when it has one,
else the whole answer. The program run is: [prefix, when the answer does not define the entry
point itself] + code + tests [+ ``check(<entry_point>)`` when the tests define ``check``].

Every program runs in its own limited child process (``sandbox.py``), never in this one; items
are judged a few at a time in parallel. A program that times out, hits a limit or tries
something the sandbox refuses is judged wrong, with the reason as the verdict's detail.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from aptune.data.example import Example
from aptune.evaluate.judges import Judge, Prediction, Verdict, _as_text, _check_aligned
from aptune.evaluate.sandbox import SandboxLimits, run_program

_FENCE = re.compile(r"```(?:python|py|Python)?[ \t]*\n(.*?)```", re.DOTALL)


def extract_code(answer: str) -> str:
    """The code in an answer: its first fenced block, else the answer itself."""
    match = _FENCE.search(answer)
    return match.group(1) if match else answer


def program_for(example: Example, answer: str) -> str:
    """The whole program that decides ``answer`` (see the module docstring)."""
    tests = example.meta.get("tests")
    if not isinstance(tests, str) or not tests.strip():
        raise ValueError(f"example {example.id!r}: the code_tests judge needs meta['tests'] (Python test code)")
    code = extract_code(answer)
    entry = example.meta.get("entry_point")
    prefix = example.meta.get("code_prefix", "")
    if entry and not re.search(rf"^\s*def\s+{re.escape(str(entry))}\s*\(", code, re.MULTILINE) and prefix:
        code = prefix + code
    parts = [code, tests]
    if entry and re.search(r"^def\s+check\s*\(", tests, re.MULTILINE):
        parts.append(f"check({entry})")
    return "\n\n".join(parts) + "\n"


class CodeTestsJudge(Judge):
    """Correct when the answer's code passes the item's tests in the sandbox."""

    name = "code_tests"

    def __init__(self, limits: SandboxLimits | None = None, workers: int | None = None) -> None:
        self.limits = limits or SandboxLimits()
        self.workers = workers or max(1, min(4, os.cpu_count() or 1))

    def judge(self, example: Example, prediction: Prediction) -> Verdict:
        result = run_program(program_for(example, _as_text(example, prediction)), self.limits)
        if result.passed:
            return Verdict(True, 1.0, f"tests passed ({result.seconds:.1f} s)")
        return Verdict(False, 0.0, f"tests {result.status}: {result.detail}")

    def judge_many(self, examples: Sequence[Example], predictions: Sequence[Prediction]) -> list[Verdict]:
        _check_aligned(examples, predictions)
        with ThreadPoolExecutor(max_workers=self.workers) as pool:  # each judgement is its own process
            return list(pool.map(self.judge, examples, predictions))
