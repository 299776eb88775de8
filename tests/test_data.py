"""Data layer as the rest of aptune uses it (details: test_data_bundled/splits/files.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from aptune.data import DataError, list_suites, list_tasks, load_suite, load_task

BAD = Path(__file__).parent / "data" / "bad"


def test_gold_positions_are_not_constant():
    """SciQ's source lists the answer last; our ordering must not leak a position prior."""
    golds = {ex.gold for ex in load_task("sciq", split="source")}
    assert len(golds) == 4


def test_arc_easy_source_order_and_text_match_lm_eval():
    first = load_task("arc_easy", split="source", limit=1)[0]
    assert first.id == "MCAS_2000_4_6"
    assert first.question == "Which technology was developed most recently?"
    assert first.choices == ("cellular telephone", "television", "refrigerator", "airplane")


def test_suites_and_listing():
    suites = list_suites()
    assert not set(suites["science"]) & set(suites["general"])
    assert not set(suites["medical"]) & set(suites["general"])
    loaded = load_suite("science", split="test", limit_per_task=5)
    assert set(loaded) == set(suites["science"]) and all(len(v) == 5 for v in loaded.values())
    info = {t.name: t for t in list_tasks()}
    assert info["arc_easy"].size == 2946 and sum(info["arc_easy"].split_sizes.values()) == 2946


def test_unknown_task_is_a_clear_error():
    with pytest.raises(DataError, match="unknown task 'arc_eesy'"):
        load_task("arc_eesy")


CORPUS = [
    ("malformed_json.jsonl", "malformed_json.jsonl:2: invalid JSON"),
    ("empty_question.jsonl", "empty_question.jsonl:2: field 'question': missing or empty"),
    ("gold_out_of_range.jsonl", "gold_out_of_range.jsonl:1: field 'gold': index 5 out of range for 2 choices"),
    ("duplicate_ids.jsonl", "duplicate_ids.jsonl:2: field 'id': duplicate id 'x' (first on line 1)"),
]


@pytest.mark.parametrize("name,message", CORPUS, ids=[c[0] for c in CORPUS])
def test_cli_reports_bad_files_without_traceback(name: str, message: str, tmp_path: Path):
    proc = subprocess.run(
        [sys.executable, "-m", "aptune.cli", "eval", "--tasks", str(BAD / name), "--split", "source",
         "--out", str(tmp_path / "out")], capture_output=True, text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("aptune: error:") and message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists(), "nothing is written when the input is bad"
