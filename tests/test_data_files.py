"""Users' own task files: the three formats load the same items; every bad input is one exact line.

The bad-input corpus lives in tests/data/bad/ (one file per mistake); Parquet cases are
written at test time because Parquet is binary.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aptune.data import DataError, load_file, load_task

BAD = Path(__file__).parent / "data" / "bad"

ROWS = [
    {"id": "a", "question": "2+2?", "choices": ["3", "4"], "gold": 1, "split": "test"},
    {"id": "b", "question": "Capital of France?", "choices": ["Paris", "Rome", "Oslo"], "gold": "A",
     "context": "France is in Europe.", "domain": "geo"},
    {"id": "c", "question": "Say hi", "answer": "hi", "task": "greet"},
    {"id": "d", "question": "The cat sat on the", "choices": ["mat", "sky"], "gold": "0", "style": "completion"},
]
COLUMNS = ["id", "question", "choices", "gold", "answer", "context", "task", "domain", "style", "split"]


def _write(path: Path, rows: list[dict]) -> Path:
    """Write rows in the format the suffix names; CSV stores choices as a JSON list string."""
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    elif path.suffix == ".csv":
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=COLUMNS)
            writer.writeheader()
            for r in rows:
                writer.writerow({**r, "choices": json.dumps(r["choices"]) if "choices" in r else ""})
    else:
        table = pa.Table.from_pylist([{c: (str(r[c]) if c == "gold" and c in r else r.get(c)) for c in COLUMNS}
                                      for r in rows])
        pq.write_table(table, path)
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_every_format_gives_the_same_items(tmp_path: Path, suffix: str):
    items = load_file(_write(tmp_path / f"mine{suffix}", ROWS))
    assert [e.id for e in items] == ["a", "b", "c", "d"]
    a, b, c, d = items
    assert (a.choices, a.gold, a.task, a.domain, a.meta["split"]) == (("3", "4"), 1, "mine", "custom", "test")
    assert (b.gold, b.reference, b.context, b.domain) == (0, "Paris", "France is in Europe.", "geo")
    assert (c.answer, c.is_multiple_choice, c.task) == ("hi", False, "greet")
    assert (d.gold, d.style) == (0, "completion")


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_a_file_path_is_a_task_name(tmp_path: Path, suffix: str):
    path = _write(tmp_path / f"mine{suffix}", ROWS)
    everything = load_task(str(path), split="source")
    assert [e.id for e in everything] == ["a", "b", "c", "d"]
    # the file's split column wins over the hash split
    assert "a" in {e.id for e in load_task(str(path), split="test")}
    assert "a" not in {e.id for e in load_task(str(path), split="train")}


def test_file_is_re_read_after_an_edit(tmp_path: Path):
    path = _write(tmp_path / "mine.jsonl", ROWS[:2])
    assert len(load_task(str(path), split="source")) == 2
    _write(path, ROWS)
    assert len(load_task(str(path), split="source")) == 4


def test_csv_choice_columns_in_numeric_order_and_default_ids(tmp_path: Path):
    """choice_10 comes after choice_9 (not after choice_1); ids default to <stem>-<line>."""
    header = ["question", "gold"] + [f"choice_{i}" for i in range(12)]
    path = tmp_path / "wide.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerow(["pick eleven", "11"] + [f"opt{i}" for i in range(12)])
        writer.writerow(["pick two", "C"] + [f"opt{i}" for i in range(3)] + [""] * 9)
    first, second = load_file(path)
    assert first.choices == tuple(f"opt{i}" for i in range(12)) and first.reference == "opt11"
    assert second.choices == ("opt0", "opt1", "opt2") and second.reference == "opt2"
    assert (first.id, second.id) == ("wide-2", "wide-3")  # CSV header is line 1


def test_csv_letter_columns_byte_order_mark_and_id_zero(tmp_path: Path):
    path = tmp_path / "letters.csv"
    path.write_text("\ufeffid,question,A,B,C,D,gold\n0,Which?,w,x,y,z,d\n", encoding="utf-8")
    (item,) = load_file(path, task="quiz", domain="legal")
    assert (item.id, item.choices, item.gold, item.task, item.domain) == ("0", ("w", "x", "y", "z"), 3, "quiz", "legal")


def test_jsonl_ids_default_to_line_numbers_skipping_blank_lines(tmp_path: Path):
    path = tmp_path / "gen.jsonl"
    path.write_text('{"question": "a?", "answer": "1"}\n\n{"question": "b?", "answer": "2"}\n', encoding="utf-8")
    assert [e.id for e in load_file(path)] == ["gen-1", "gen-3"]


def _bad(name: str) -> str:
    return str(BAD / name)


#: file → the exact one-line message (file, 1-based line, field).
CORPUS: list[tuple[str, str]] = [
    ("malformed_json.jsonl", "{f}:2: invalid JSON (Expecting ',' delimiter at column 52)"),
    ("not_object.jsonl", "{f}:1: expected an object with a 'question' field, got list"),
    ("empty_question.jsonl", "{f}:2: field 'question': missing or empty"),
    ("missing_question.jsonl", "{f}:1: field 'question': missing or empty"),
    ("question_not_text.jsonl", "{f}:1: field 'question': must be text"),
    ("blank_question.csv", "{f}:3: field 'question': missing or empty"),
    ("gold_out_of_range.jsonl", "{f}:1: field 'gold': index 5 out of range for 2 choices"),
    ("gold_out_of_range.csv", "{f}:3: field 'gold': index 7 out of range for 2 choices"),
    ("gold_letter_out_of_range.jsonl", "{f}:1: field 'gold': index 4 out of range for 4 choices"),
    ("gold_not_index.jsonl", "{f}:1: field 'gold': expected an index or a letter, got 'first'"),
    ("gold_float.jsonl", "{f}:2: field 'gold': expected an index or a letter, got 1.5"),
    ("gold_bool.jsonl", "{f}:1: field 'gold': expected an index or a letter, got True"),
    ("missing_gold.jsonl", "{f}:1: field 'gold': missing (required with choices)"),
    ("choices_not_list.jsonl", "{f}:1: field 'choices': not a list (got text 'a, b')"),
    ("choices_not_list.csv", """{f}:2: field 'choices': not a list (in CSV, write a JSON list like ["a", "b"])"""),
    ("choices_dict.jsonl", "{f}:1: field 'choices': not a list (got dict)"),
    ("one_choice.jsonl", "{f}:1: field 'choices': needs at least 2 choices, got 1"),
    ("empty_choice.jsonl", "{f}:1: field 'choices': choice 1 is empty or not text"),
    ("choice_gap.csv", "{f}:2: field 'B': empty, but a later choice column is filled"),
    ("gold_without_choices.jsonl", "{f}:1: field 'choices': missing, but 'gold' is given"),
    ("no_answer.jsonl", "{f}:1: field 'answer': missing: give choices + gold, or an answer"),
    ("duplicate_ids.jsonl", "{f}:2: field 'id': duplicate id 'x' (first on line 1)"),
    ("duplicate_ids.csv", "{f}:4: field 'id': duplicate id 'a' (first on line 2)"),
    ("bad_style.jsonl", "{f}:1: field 'style': must be qa or completion, got 'essay'"),
    ("bad_split.jsonl", "{f}:1: field 'split': must be train or dev or test, got 'validation'"),
    ("extra_values.csv", "{f}:3: more values than header columns (2)"),
    ("empty.jsonl", "{f}:1: the file has no items"),
    ("blank_lines.jsonl", "{f}:1: the file has no items"),
    ("header_only.csv", "{f}:1: the file has no items"),
    ("not_utf8.jsonl", "{f}:2: not UTF-8 text (save the file as UTF-8)"),
    ("unsupported.txt", "{f}: unsupported file type '.txt' (use .jsonl, .json, .csv, .parquet)"),
    ("does_not_exist.jsonl", "{f}: file not found"),
]


@pytest.mark.parametrize("name,expected", CORPUS, ids=[c[0] for c in CORPUS])
def test_bad_file_gives_one_exact_line(name: str, expected: str):
    with pytest.raises(DataError) as info:
        load_file(BAD / name)
    assert str(info.value) == expected.format(f=_bad(name))


def test_corpus_covers_every_bad_file():
    listed = {name for name, _ in CORPUS} | {"corrupt.parquet"}
    on_disk = {p.name for p in BAD.iterdir()}
    assert on_disk - listed == set(), "a bad file without an expected message"


def test_corrupt_parquet_is_one_line():
    with pytest.raises(DataError) as info:
        load_file(BAD / "corrupt.parquet")
    message = str(info.value)
    assert message.startswith(f"{_bad('corrupt.parquet')}:1: not a readable Parquet file (") and "\n" not in message


@pytest.mark.parametrize("rows,expected", [
    ([{"question": "q", "choices": ["a", "b"], "gold": 0}, {"question": "q", "choices": ["a", "b"], "gold": 3}],
     "{f}:2: field 'gold': index 3 out of range for 2 choices"),
    ([{"question": "", "answer": "x"}], "{f}:1: field 'question': missing or empty"),
    ([{"question": "q", "choices": ["a", "b"], "gold": None}], "{f}:1: field 'gold': missing (required with choices)"),
], ids=["gold-range", "empty-question", "null-gold"])
def test_bad_parquet_rows_name_the_row(tmp_path: Path, rows: list[dict], expected: str):
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    with pytest.raises(DataError) as info:
        load_file(path)
    assert str(info.value) == expected.format(f=path)


def test_bad_file_through_load_task_keeps_the_message():
    with pytest.raises(DataError) as info:
        load_task(str(BAD / "gold_out_of_range.csv"), split="source")
    assert str(info.value) == f"{_bad('gold_out_of_range.csv')}:3: field 'gold': index 7 out of range for 2 choices"


def test_data_error_is_a_value_error():
    assert issubclass(DataError, ValueError)
