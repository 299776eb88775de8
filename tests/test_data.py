"""Data layer: bundled tasks, deterministic splits, users' files and their one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aptune.data import DataError, list_suites, list_tasks, load_file, load_suite, load_task
from aptune.data.bundled import SUITES, TASKS

BAD = Path(__file__).parent / "data" / "bad"


@pytest.mark.parametrize("name", sorted(t for t in TASKS if not t.startswith("mmlu_")) + ["mmlu_anatomy", "mmlu_professional_law"])
def test_bundled_task_items_are_well_formed(name: str):
    items = load_task(name, split="source")
    assert len(items) >= 100
    assert len({ex.id for ex in items}) == len(items), "ids must be unique"
    for ex in items[:300]:
        assert ex.question.strip() and len(ex.choices) >= 2
        assert ex.gold is not None and 0 <= ex.gold < len(ex.choices)
        assert all(c.strip() for c in ex.choices)
        assert ex.domain == TASKS[name].domain


def test_gold_positions_are_not_constant():
    """SciQ's source lists the answer last; our ordering must not leak a position prior."""
    golds = {ex.gold for ex in load_task("sciq", split="source")}
    assert len(golds) == 4


def test_arc_easy_source_order_and_text_match_lm_eval():
    first = load_task("arc_easy", split="source", limit=1)[0]
    assert first.id == "MCAS_2000_4_6"
    assert first.question == "Which technology was developed most recently?"
    assert first.choices == ("cellular telephone", "television", "refrigerator", "airplane")


@pytest.mark.parametrize("name", ["sciq", "hellaswag", "medmcqa"])
def test_splits_disjoint_cover_everything_and_are_stable(name: str):
    splits = {s: load_task(name, split=s) for s in ("train", "dev", "test")}
    ids = {s: {ex.id for ex in items} for s, items in splits.items()}
    assert not ids["train"] & ids["test"] and not ids["train"] & ids["dev"] and not ids["dev"] & ids["test"]
    assert sum(len(v) for v in ids.values()) == len(load_task(name, split="source"))
    total = sum(len(v) for v in ids.values())
    assert 0.55 < len(ids["train"]) / total < 0.65 and 0.25 < len(ids["test"]) / total < 0.35
    # limit takes a prefix of a fixed order: nested samples, same membership for every seed
    small, large = load_task(name, "test", limit=20), load_task(name, "test", limit=60)
    assert [e.id for e in small] == [e.id for e in large[:20]]
    assert {e.id for e in load_task(name, "test", seed=5)} == ids["test"]


def test_split_assignment_is_identical_in_a_fresh_process():
    code = "from aptune.data import load_task; print(','.join(e.id for e in load_task('arc_easy','test',limit=15)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ",".join(e.id for e in load_task("arc_easy", "test", limit=15))


def test_suites_and_listing():
    suites = list_suites()
    assert not set(suites["science"]) & set(suites["general"])
    assert not set(suites["medical"]) & set(suites["general"])
    loaded = load_suite("science", split="test", limit_per_task=5)
    assert set(loaded) == set(SUITES["science"]) and all(len(v) == 5 for v in loaded.values())
    info = {t.name: t for t in list_tasks()}
    assert info["arc_easy"].size == 570 and sum(info["arc_easy"].split_sizes.values()) == 570


def test_unknown_task_is_a_clear_error():
    with pytest.raises(DataError, match="unknown task 'arc_eesy'"):
        load_task("arc_eesy")


ROWS = [
    {"id": "a", "question": "2+2?", "choices": ["3", "4"], "gold": 1, "split": "test"},
    {"id": "b", "question": "capital of France?", "choices": ["Paris", "Rome", "Oslo"], "gold": "A"},
    {"id": "c", "question": "say hi", "answer": "hi"},
]


def _write(path: Path, rows: list[dict]) -> Path:
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif path.suffix == ".csv":
        import csv

        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["id", "question", "choices", "gold", "answer", "split"])
            writer.writeheader()
            for r in rows:
                writer.writerow({**r, "choices": json.dumps(r["choices"]) if "choices" in r else ""})
    else:
        table = pa.Table.from_pylist([{**r, "choices": r.get("choices"), "gold": str(r.get("gold", "")),
                                        "answer": r.get("answer"), "split": r.get("split")} for r in rows])
        pq.write_table(table, path)
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_user_files_in_every_format(tmp_path: Path, suffix: str):
    items = load_file(_write(tmp_path / f"mine{suffix}", ROWS))
    assert [e.id for e in items] == ["a", "b", "c"]
    assert items[0].gold == 1 and items[1].gold == 0 and items[1].reference == "Paris"
    assert items[2].answer == "hi" and not items[2].is_multiple_choice
    assert items[0].task == "mine" and items[0].domain == "custom"
    # an explicit split column wins over the hash assignment
    assert [e.id for e in load_task(str(tmp_path / f"mine{suffix}"), "test") if e.id == "a"] == ["a"]


CORPUS = [
    ("malformed_json.jsonl", "malformed_json.jsonl:2: invalid JSON"),
    ("empty_question.jsonl", "empty_question.jsonl:2: field 'question': missing or empty"),
    ("gold_out_of_range.jsonl", "gold_out_of_range.jsonl:1: field 'gold': index 5 out of range for 2 choices"),
    ("gold_not_index.jsonl", "gold_not_index.jsonl:1: field 'gold': expected an index or a letter, got 'first'"),
    ("duplicate_ids.jsonl", "duplicate_ids.jsonl:2: field 'id': duplicate id 'x' (first on line 1)"),
    ("empty.jsonl", "empty.jsonl:1: the file has no items"),
    ("choices_not_list.jsonl", "choices_not_list.jsonl:1: field 'choices': not a list"),
    ("no_answer.jsonl", "no_answer.jsonl:1: field 'answer': missing"),
    ("missing_gold.jsonl", "missing_gold.jsonl:1: field 'gold': missing"),
    ("gold_out_of_range.csv", "gold_out_of_range.csv:3: field 'gold': index 7 out of range"),
    ("not_object.jsonl", "not_object.jsonl:1: expected an object"),
]


@pytest.mark.parametrize("name,message", CORPUS, ids=[c[0] for c in CORPUS])
def test_bad_files_give_one_line_errors(name: str, message: str):
    with pytest.raises(DataError) as info:
        load_file(BAD / name)
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("name,message", CORPUS[:4], ids=[c[0] for c in CORPUS[:4]])
def test_cli_reports_bad_files_without_traceback(name: str, message: str, tmp_path: Path):
    proc = subprocess.run(
        [sys.executable, "-m", "aptune.cli", "eval", "--tasks", str(BAD / name), "--split", "source",
         "--out", str(tmp_path / "out")], capture_output=True, text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("aptune: error:") and message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists(), "nothing is written when the input is bad"
