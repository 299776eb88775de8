"""The code_tests judge and its sandbox: hostile generated code is judged wrong, the host is
untouched, and judging goes on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aptune.data import load_task
from aptune.data.example import Example
from aptune.evaluate.code_judge import CodeTestsJudge, extract_code, program_for
from aptune.evaluate.judges import default_judge_for, get_judge
from aptune.evaluate.sandbox import SandboxLimits, run_program

FAST = SandboxLimits(timeout_s=3, cpu_s=3, memory_mb=512, file_mb=1)
ADD = Example("add", "code", "code", "Write add(a, b).", answer="def add(a, b):\n    return a + b",
              meta={"tests": "assert add(2, 3) == 5\nassert add(-1, 1) == 0", "entry_point": "add"})
HUMANEVAL_STYLE = Example(
    "he", "code", "code", "Complete the function.", answer="    return a * b",
    meta={"code_prefix": "def mul(a, b):\n    \"\"\"Product.\"\"\"\n",
          "tests": "def check(candidate):\n    assert candidate(3, 4) == 12\n", "entry_point": "mul"})


def test_right_and_wrong_code_in_any_form():
    judge = CodeTestsJudge(FAST)
    assert judge.judge(ADD, "def add(a, b):\n    return a + b").correct
    assert judge.judge(ADD, "Here you go:\n```python\ndef add(a, b):\n    return b + a\n```\nDone.").correct
    wrong = judge.judge(ADD, "def add(a, b):\n    return a - b")
    assert not wrong.correct and wrong.detail.startswith("tests failed: AssertionError")
    broken = judge.judge(ADD, "def add(a, b) return")
    assert not broken.correct and "SyntaxError" in broken.detail
    # a completion continues the prefix; a whole function replaces it
    assert judge.judge(HUMANEVAL_STYLE, "    return a * b").correct
    assert judge.judge(HUMANEVAL_STYLE, "```python\ndef mul(a, b):\n    return a * b\n```").correct
    assert not judge.judge(HUMANEVAL_STYLE, "    return a + b").correct
    assert program_for(HUMANEVAL_STYLE, "    return a * b").rstrip().endswith("check(mul)")
    assert extract_code("no fence") == "no fence"


@pytest.mark.parametrize("name, code, detail", [
    ("infinite loop", "def add(a, b):\n    while True:\n        pass", "tests timeout: timed out after 3 s"),
    ("fork bomb", "import os\nwhile True:\n    os.fork()", "blocked: os.fork"),
    ("multiprocessing", "import multiprocessing\ndef add(a, b): return a + b", "blocked: import multiprocessing"),
    ("os.system", "import os\nos.system('touch {tmp}/pwned')\ndef add(a, b): return a + b", "blocked: os.system"),
    ("subprocess", "import subprocess\nsubprocess.run(['touch', '{tmp}/pwned'])\ndef add(a, b): return a + b",
     "blocked: import _posixsubprocess"),
    ("writing outside", "open('{tmp}/pwned', 'w').write('x')\ndef add(a, b): return a + b", "blocked: writing"),
    ("deleting outside", "import shutil\nshutil.rmtree('{tmp}/keep')\ndef add(a, b): return a + b",
     "blocked: shutil.rmtree outside the working folder"),
    ("reading the environment", "import os\nassert os.environ.get('APTUNE_TEST_SECRET') is None or "
     "open('{tmp}/pwned', 'w')\nassert 'APTUNE_TEST_SECRET' in os.environ, 'no secret'", "no secret"),
    ("reading host files", "print(open('/etc/passwd').read())", "blocked: reading /etc/passwd"),
    ("the network", "import socket\nsocket.create_connection(('127.0.0.1', 9), timeout=1)", "blocked: socket."),
    ("huge output", "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)", "File too large"),
    ("huge memory", "x = bytearray(8 * 1024 ** 3)", "MemoryError"),
    ("ctypes", "import ctypes\nctypes.CDLL(None).system(b'touch {tmp}/pwned')", "blocked: import ctypes"),
])
def test_hostile_code_is_judged_wrong_and_the_host_is_untouched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               name: str, code: str, detail: str):
    monkeypatch.setenv("APTUNE_TEST_SECRET", "hunter2")
    (tmp_path / "keep").mkdir()
    verdict = CodeTestsJudge(FAST).judge(ADD, code.format(tmp=tmp_path))
    assert not verdict.correct and detail in verdict.detail, (name, verdict.detail)
    assert not (tmp_path / "pwned").exists() and (tmp_path / "keep").is_dir(), name


def test_judging_goes_on_past_hostile_items_in_a_batch(tmp_path: Path):
    answers = ["def add(a, b):\n    return a + b", "while True:\n    pass", "import os\nos.fork()",
               "def add(a, b):\n    return a + b"]
    verdicts = CodeTestsJudge(FAST, workers=2).judge_many([ADD] * 4, answers)
    assert [v.correct for v in verdicts] == [True, False, False, True]


def test_the_program_runs_in_another_process_in_a_throwaway_folder():
    result = run_program("import os\nassert os.getpid() != %d\nassert os.getcwd().split('/')[-1].startswith("
                         "'aptune-sandbox-')\nopen('scratch.txt', 'w').write('ok')" % os.getpid(), FAST)
    assert result.passed, result.detail


def test_items_with_tests_get_the_code_judge_by_default_and_files_carry_tests(tmp_path: Path):
    assert default_judge_for(ADD).name == "code_tests" and get_judge("code_tests").name == "code_tests"
    rows = [{"id": "a", "question": "Write add(a, b).", "answer": "def add(a, b): return a + b",
             "tests": "assert add(1, 2) == 3", "entry_point": "add"},
            {"id": "b", "question": "Capital of France?", "answer": "Paris", "aliases": ["Paris, France"]}]
    path = tmp_path / "mixed.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    a, b = load_task(str(path), split="source")
    assert a.meta["tests"] == "assert add(1, 2) == 3" and a.meta["entry_point"] == "add"
    assert b.meta["aliases"] == ["Paris, France"]
    path.write_text(json.dumps({"question": "q", "answer": "x", "tests": ["not", "text"]}) + "\n")
    with pytest.raises(ValueError, match=r"mixed.jsonl:1: field 'tests': must be text, got list"):
        load_task(str(path), split="source")


def test_code_never_runs_in_the_aptune_process(tmp_path: Path):
    """The judge's program leaves no trace in this process: a module it defines is not here."""
    CodeTestsJudge(FAST).judge(ADD, "import sys\nsys.modules['aptune_was_here'] = 1\ndef add(a, b): return a + b")
    assert "aptune_was_here" not in sys.modules
    assert subprocess.run([sys.executable, "-c", "print(1)"], capture_output=True).returncode == 0
