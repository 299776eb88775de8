"""Users' own tasks from JSONL, CSV or Parquet files.

Schema (one item per row/line):
  question  (required) the question, or the context to continue when style is "completion"
  choices   list of answer texts (CSV: a JSON list, or columns choice_0.. / A, B, C...)
  gold      index into choices (0-based) or a letter ("B")  — required with choices
  answer    reference answer for generative items (instead of choices + gold)
  context   optional passage shown before the question
  id        optional; defaults to "<file stem>-<line>"
  task, domain, style ("qa" | "completion"), split ("train" | "dev" | "test") — optional

Every problem is a ``DataError`` whose one-line message names the file, the line (1-based;
for CSV the header is line 1) and the field.
"""

from __future__ import annotations

import csv
import json
import string
from pathlib import Path
from typing import Any

from aptune.data.example import Example

SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")


class DataError(ValueError):
    """A data file that does not match the documented schema."""


def _err(path: Path, line: int, field: str, message: str) -> DataError:
    return DataError(f"{path}:{line}: field '{field}': {message}")


def _rows(path: Path) -> list[tuple[int, Any]]:
    """(line number, raw row) pairs."""
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        rows = []
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    rows.append((number, json.loads(line)))
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}:{number}: invalid JSON ({exc.msg} at column {exc.colno})") from None
        return rows
    if suffix == ".csv":
        with open(path, encoding="utf-8", newline="") as handle:
            return [(i + 2, dict(r)) for i, r in enumerate(csv.DictReader(handle))]
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as exc:  # pyarrow raises several types for a corrupt file
            raise DataError(f"{path}:1: not a readable Parquet file ({str(exc).splitlines()[0]})") from None
        return [(i + 1, r) for i, r in enumerate(table.to_pylist())]
    raise DataError(f"{path}:1: unsupported file type {suffix!r} (use {', '.join(SUFFIXES)})")


def _choices(path: Path, line: int, row: dict[str, Any]) -> list[str] | None:
    raw = row.get("choices")
    if raw is None or raw == "":
        numbered = [row[k] for k in sorted(row, key=str) if str(k).startswith("choice_") and row[k] not in (None, "")]
        lettered = [row[c] for c in string.ascii_uppercase if row.get(c) not in (None, "")]
        return numbered or lettered or None
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            raise _err(path, line, "choices", "not a list (in CSV, write a JSON list like [\"a\", \"b\"])") from None
    if not isinstance(raw, (list, tuple)):
        raise _err(path, line, "choices", f"expected a list, got {type(raw).__name__}")
    if len(raw) < 2:
        raise _err(path, line, "choices", f"needs at least 2 choices, got {len(raw)}")
    for i, c in enumerate(raw):
        if not isinstance(c, str) or not c.strip():
            raise _err(path, line, "choices", f"choice {i} is empty or not text")
    return list(raw)


def _gold(path: Path, line: int, value: Any, n: int) -> int:
    if value is None or value == "":
        raise _err(path, line, "gold", "missing (required with choices)")
    if isinstance(value, str):
        text = value.strip()
        if len(text) == 1 and text.upper() in string.ascii_uppercase:
            value = string.ascii_uppercase.index(text.upper())
        elif text.lstrip("-").isdigit():
            value = int(text)
        else:
            raise _err(path, line, "gold", f"expected an index or a letter, got {value!r}")
    if isinstance(value, bool) or not isinstance(value, int):
        raise _err(path, line, "gold", f"expected an index or a letter, got {value!r}")
    if not 0 <= value < n:
        raise _err(path, line, "gold", f"index {value} out of range for {n} choices")
    return value


def load_file(path: str | Path, task: str | None = None, domain: str = "custom") -> list[Example]:
    """Read a user task file into Examples, validating every row (see module docstring)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}:0: file not found")
    task = task or path.stem
    rows = _rows(path)
    if not rows:
        raise DataError(f"{path}:1: the file has no items")
    seen: dict[str, int] = {}
    out = []
    for line, row in rows:
        if not isinstance(row, dict):
            raise DataError(f"{path}:{line}: expected an object with a 'question' field, got {type(row).__name__}")
        question = row.get("question")
        if not isinstance(question, str) or not question.strip():
            raise _err(path, line, "question", "missing or empty")
        rid = str(row.get("id") or f"{path.stem}-{line}")
        if rid in seen:
            raise _err(path, line, "id", f"duplicate id {rid!r} (first on line {seen[rid]})")
        seen[rid] = line
        style = row.get("style") or "qa"
        if style not in ("qa", "completion"):
            raise _err(path, line, "style", f"must be qa or completion, got {style!r}")
        meta: dict[str, Any] = {}
        split = row.get("split")
        if split not in (None, ""):
            if split not in ("train", "dev", "test"):
                raise _err(path, line, "split", f"must be train, dev or test, got {split!r}")
            meta["split"] = split
        choices = _choices(path, line, row)
        if choices is not None:
            gold = _gold(path, line, row.get("gold"), len(choices))
            ex = Example(rid, str(row.get("task") or task), str(row.get("domain") or domain), question,
                         tuple(choices), gold, style=style, context=row.get("context") or None, meta=meta)
        else:
            answer = row.get("answer")
            if answer is None or (isinstance(answer, str) and not answer.strip()):
                raise _err(path, line, "answer", "missing: give choices + gold, or an answer")
            ex = Example(rid, str(row.get("task") or task), str(row.get("domain") or domain), question,
                         answer=str(answer), style=style, context=row.get("context") or None, meta=meta)
        out.append(ex)
    return out
