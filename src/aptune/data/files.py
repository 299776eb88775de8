"""Users' own tasks from JSONL, CSV or Parquet files, validated row by row.

Schema (one item per JSONL line / CSV row / Parquet row):

  question  required  the question; for style "completion", the text to continue
  choices   MC        list of answer texts; in CSV a JSON list string, or columns
                      choice_0, choice_1, ... or A, B, C, ...
  gold      MC        index into choices (0-based) or a letter "A".."Z"
  answer    gen.      reference answer of a generative item (instead of choices + gold)
  id        optional  unique in the file; default "<file stem>-<line>"
  context   optional  a passage shown before the question
  task      optional  default: the file stem (or load_file's ``task``)
  domain    optional  default: load_file's ``domain`` ("custom")
  style     optional  "qa" (default; rendered "Question: ..\\nAnswer:") or "completion"
  split     optional  "train", "dev" or "test"; overrides the hash split for that row
  history   optional  the conversation before the question: [{role, content}, ...]
  system    optional  the conversation's system message
  rejected  optional  a dispreferred answer (preference data)
  desirable optional  true / false: the answer is a desirable or undesirable example (KTO data)

Rows in chat formats (``messages``, Alpaca, ShareGPT, prompt/chosen/rejected) are read into this
schema first (``formats.py``). Every problem raises ``DataError`` with a one-line message
"<file>:<line>: field '<f>': <what>" (lines are 1-based; a CSV's header is line 1, so its first
item is line 2; Parquet rows and the items of a JSON array count from 1). A ``.json`` file holds
either one JSON array of rows or JSON Lines.
"""

from __future__ import annotations

import csv
import json
import math
import re
import string
from pathlib import Path
from collections.abc import Mapping
from typing import Any

from aptune.data.example import Example

SUFFIXES: tuple[str, ...] = (".jsonl", ".json", ".csv", ".parquet")
STYLES: tuple[str, ...] = ("qa", "completion")
SPLIT_NAMES: tuple[str, ...] = ("train", "dev", "test")
_NUMBERED = re.compile(r"choice_(\d+)$")


class DataError(ValueError):
    """Input data that does not match the documented schema; the message is one line."""


def _err(path: Path, line: int, field: str, message: str) -> DataError:
    return DataError(f"{path}:{line}: field '{field}': {message}")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _read_jsonl(path: Path) -> list[tuple[int, Any]]:
    rows = []
    with open(path, encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                rows.append((number, json.loads(line.rstrip("\r\n"))))
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{number}: invalid JSON ({exc.msg} at column {exc.colno})") from None
    return rows


def _read_json(path: Path) -> list[tuple[int, Any]]:
    """A JSON array of rows (row numbers from 1), or else JSON Lines."""
    with open(path, encoding="utf-8-sig") as handle:
        text = handle.read()
    if not text.lstrip().startswith("["):
        return _read_jsonl(path)
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg} at column {exc.colno})") from None
    return [(i + 1, row) for i, row in enumerate(rows)]


def _read_csv(path: Path) -> list[tuple[int, Any]]:
    rows = []
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        try:
            for row in reader:
                line = reader.line_num  # last physical line of this record (quoted fields may span lines)
                if None in row:
                    raise DataError(f"{path}:{line}: more values than header columns ({len(reader.fieldnames or [])})")
                if any(v not in (None, "") for v in row.values()):
                    rows.append((line, row))
        except csv.Error as exc:
            raise DataError(f"{path}:{reader.line_num}: malformed CSV ({_one_line(exc)})") from None
    return rows


def _read_parquet(path: Path) -> list[tuple[int, Any]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # noqa: BLE001 -- pyarrow raises several types for a corrupt file
        raise DataError(f"{path}:1: not a readable Parquet file ({_one_line(exc)[:200]})") from None
    return [(i + 1, r) for i, r in enumerate(table.to_pylist())]


def _first_non_utf8_line(path: Path) -> int:
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return 1


def read_rows(path: Path) -> list[tuple[int, Any]]:
    """(1-based line number, raw row) pairs."""
    suffix = path.suffix.lower()
    readers = {".jsonl": _read_jsonl, ".json": _read_json, ".csv": _read_csv, ".parquet": _read_parquet}
    if suffix not in readers:
        raise DataError(f"{path}: unsupported file type {suffix!r} (use {', '.join(SUFFIXES)})")
    try:
        return readers[suffix](path)
    except UnicodeDecodeError:
        raise DataError(f"{path}:{_first_non_utf8_line(path)}: not UTF-8 text (save the file as UTF-8)") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or (
        isinstance(value, float) and math.isnan(value))


def _choice_columns(row: dict[str, Any]) -> list[str]:
    """choice_0, choice_1, ... (numeric order) if present, else single letters A, B, ..."""
    numbered = sorted((int(m.group(1)), k) for k in row if (m := _NUMBERED.match(str(k))))
    if numbered:
        return [k for _, k in numbered]
    return [c for c in string.ascii_uppercase if c in row]


def _choices(path: Path, line: int, row: dict[str, Any], from_csv: bool) -> list[str] | None:
    """The item's choices, or None when it has none (a generative item)."""
    raw = row.get("choices")
    if _is_blank(raw):
        columns = _choice_columns(row)
        values = [row[c] for c in columns]
        while values and _is_blank(values[-1]):
            values.pop()
        if not values:
            return None
        for column, value in zip(columns, values):
            if _is_blank(value):
                raise _err(path, line, column, "empty, but a later choice column is filled")
        raw = [str(v) for v in values]
    elif isinstance(raw, str):
        if not from_csv:
            raise _err(path, line, "choices", f"not a list (got text {raw[:40]!r})")
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            raise _err(path, line, "choices", 'not a list (in CSV, write a JSON list like ["a", "b"])') from None
    if not isinstance(raw, (list, tuple)):
        raise _err(path, line, "choices", f"not a list (got {type(raw).__name__})")
    if len(raw) < 2:
        raise _err(path, line, "choices", f"needs at least 2 choices, got {len(raw)}")
    for i, choice in enumerate(raw):
        if not isinstance(choice, str) or not choice.strip():
            raise _err(path, line, "choices", f"choice {i} is empty or not text")
    return list(raw)


def _gold(path: Path, line: int, value: Any, n: int) -> int:
    """A 0-based index from an int, an integral float, a digit string or a letter."""
    if _is_blank(value):
        raise _err(path, line, "gold", "missing (required with choices)")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
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


def _optional_text(path: Path, line: int, row: dict[str, Any], field: str, allowed: tuple[str, ...]) -> str | None:
    value = row.get(field)
    if _is_blank(value):
        return None
    if value not in allowed:
        raise _err(path, line, field, f"must be {' or '.join(allowed)}, got {value!r}")
    return str(value)


#: optional fields of a free-form row that its judge reads: other accepted answers (exact_match,
#: short_answer) and, for code, the tests, the function's name and the code the answer continues
TEXT_FIELDS = ("tests", "entry_point", "code_prefix", "system", "rejected")


def _free_form_meta(path: Path, line: int, row: dict[str, Any]) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    aliases = row.get("aliases")
    if not _is_blank(aliases):
        if isinstance(aliases, str):
            aliases = [aliases]
        if not isinstance(aliases, list) or not all(isinstance(a, str) and a.strip() for a in aliases):
            raise _err(path, line, "aliases", "must be a list of non-empty texts")
        meta["aliases"] = list(aliases)
    history = row.get("history")
    if not _is_blank(history):
        from aptune.data.formats import _messages

        meta["history"] = _messages(path, line, history, "history")
    desirable = row.get("desirable")
    if not _is_blank(desirable):
        if not isinstance(desirable, bool):
            raise _err(path, line, "desirable", f"must be true or false, got {desirable!r}")
        meta["desirable"] = desirable
    for field in TEXT_FIELDS:
        value = row.get(field)
        if _is_blank(value):
            continue
        if not isinstance(value, str):
            raise _err(path, line, field, f"must be text, got {type(value).__name__}")
        meta[field] = value
    return meta


def _example(path: Path, line: int, row: Any, task: str, domain: str, from_csv: bool) -> Example:
    """One validated row → an Example (the id is checked for uniqueness by the caller)."""
    if not isinstance(row, dict):
        raise DataError(f"{path}:{line}: expected an object with a 'question' field, got {type(row).__name__}")
    question = row.get("question")
    if not isinstance(question, str) or not question.strip():
        raise _err(path, line, "question", "missing or empty" if _is_blank(question) else "must be text")
    rid = f"{path.stem}-{line}" if _is_blank(row.get("id")) else str(row["id"]).strip()
    style = _optional_text(path, line, row, "style", STYLES) or "qa"
    split = _optional_text(path, line, row, "split", SPLIT_NAMES)
    meta: dict[str, Any] = {"split": split} if split else {}
    meta.update(_free_form_meta(path, line, row))
    context = None if _is_blank(row.get("context")) else str(row["context"])
    task = task if _is_blank(row.get("task")) else str(row["task"])
    domain = domain if _is_blank(row.get("domain")) else str(row["domain"])
    choices = _choices(path, line, row, from_csv)
    if choices is not None:
        gold = _gold(path, line, row.get("gold"), len(choices))
        return Example(rid, task, domain, question, tuple(choices), gold, style=style,  # type: ignore[arg-type]
                       context=context, meta=meta)
    if not _is_blank(row.get("gold")):
        raise _err(path, line, "choices", "missing, but 'gold' is given")
    answer = row.get("answer")
    if _is_blank(answer):
        raise _err(path, line, "answer", "missing: give choices + gold, or an answer")
    return Example(rid, task, domain, question, answer=str(answer), style=style,  # type: ignore[arg-type]
                   context=context, meta=meta)


def load_file(path: str | Path, task: str | None = None, domain: str = "custom", *, format: str = "auto",  # noqa: A002
              fields: Mapping[str, str] | None = None) -> list[Example]:
    """Read a user task file into Examples in file order, validating every row (schema above).

    ``task`` defaults to the file stem; a row's own ``task``/``domain`` columns win. ``format``:
    the rows' format (``auto``: detected from the first row; ``data/formats.py``); ``fields``
    renames columns first (aptune's name → the file's).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found" if not path.exists() else f"{path}: not a file")
    return items_from_rows(path, read_rows(path), task or path.stem, domain, format=format, fields=fields,
                           from_csv=path.suffix.lower() == ".csv")


def items_from_rows(source: Path, raw: list[tuple[int, Any]], task: str, domain: str = "custom", *,
                    format: str = "auto", fields: Mapping[str, str] | None = None,  # noqa: A002
                    from_csv: bool = False) -> list[Example]:
    """Numbered raw rows (from a file, or a Hugging Face dataset) → validated Examples; errors
    name ``source`` and the row's number."""
    from aptune.data.formats import FORMATS, detect_format, rename_fields, to_item_row

    if format not in FORMATS:
        raise DataError(f"{source}: unknown format {format!r} (one of {', '.join(FORMATS)})")
    rows = [(line, rename_fields(row, fields)) for line, row in raw]
    if not rows:
        raise DataError(f"{source}:1: the file has no items")
    fmt = detect_format(rows[0][1]) if format == "auto" else format
    path = source
    seen: dict[str, int] = {}
    out = []
    for line, row in rows:
        ex = _example(path, line, to_item_row(fmt, path, line, row), task, domain, from_csv)
        if ex.id in seen:
            raise _err(path, line, "id", f"duplicate id {ex.id!r} (first on line {seen[ex.id]})")
        seen[ex.id] = line
        out.append(ex)
    return out
