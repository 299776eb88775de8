"""Instruction-data formats users arrive with, read into aptune's item schema.

A data file's rows may be in any of these formats, detected from the first row's fields or
named with ``format:`` (every row of a file then has that format):

- ``qa`` — aptune's own rows: ``question`` + ``answer`` (free form) or ``choices`` + ``gold``
  (``files.py`` documents every field);
- ``messages`` — OpenAI-style chat: ``messages: [{role, content}, ...]`` with roles ``system``,
  ``user``, ``assistant``. The last assistant turn is the answer; the user turn before it is the
  question; every turn before that is the conversation so far (``meta["history"]``), and a
  leading system message is kept (``meta["system"]``). The prompt renders them all with the
  model's chat template (``prompts.render_prompt``);
- ``alpaca`` — ``instruction``, optional ``input``, ``output``: the question is the instruction,
  then a blank line and the input where there is one (as the Alpaca prompt joins them);
- ``sharegpt`` — ``conversations: [{from, value}, ...]`` with ``from`` in ``system``,
  ``human``/``user``, ``gpt``/``assistant``: read as ``messages``;
- ``preference`` — ``prompt`` (text, or a messages list) with ``chosen`` and ``rejected``
  answers: the item's reference is ``chosen``; ``rejected`` is kept (``meta["rejected"]``) for
  preference training;
- ``unpaired`` — ``prompt`` (text, or a messages list) with one ``completion`` and a boolean
  ``label`` (desirable or not), TRL's KTO data: the completion is the item's answer and the
  label ``meta["desirable"]``, for ``train.loss: kto``.

``fields`` renames columns first (``{question: prompt_text, answer: response}``: read the
question from ``prompt_text``), for files whose columns have other names. Every problem is a
``DataError`` naming the file, line and field.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

FORMATS: tuple[str, ...] = ("auto", "qa", "messages", "alpaca", "sharegpt", "preference", "unpaired")
ROLES: tuple[str, ...] = ("system", "user", "assistant")
#: ShareGPT's speaker names → chat roles
SHAREGPT_ROLES: dict[str, str] = {"system": "system", "human": "user", "user": "user", "gpt": "assistant",
                                  "assistant": "assistant", "chatgpt": "assistant", "bing": "assistant"}
#: the fields every format passes through unchanged (``files.py``)
PASSTHROUGH = ("id", "task", "domain", "split", "style", "context", "aliases", "tests", "entry_point", "code_prefix")


def _error(path: Path, line: int, field: str, message: str) -> Exception:
    from aptune.data.files import DataError

    return DataError(f"{path}:{line}: field '{field}': {message}")


def rename_fields(row: Any, fields: Mapping[str, str] | None) -> Any:
    """``row`` with each mapped source column renamed to aptune's field name (``fields``:
    aptune name → the file's column); other columns are kept."""
    if not fields or not isinstance(row, dict):
        return row
    out = {k: v for k, v in row.items() if k not in fields.values()}
    for ours, theirs in fields.items():
        if theirs in row:
            out[ours] = row[theirs]
    return out


def detect_format(row: Any) -> str:
    """The format a row's fields say it is in (``qa`` when nothing else fits)."""
    if not isinstance(row, dict):
        return "qa"
    if "messages" in row:
        return "messages"
    if "conversations" in row:
        return "sharegpt"
    if "chosen" in row and "rejected" in row:
        return "preference"
    if "completion" in row and "label" in row:
        return "unpaired"
    if "instruction" in row and "output" in row:
        return "alpaca"
    return "qa"


def to_item_row(fmt: str, path: Path, line: int, row: Any) -> Any:
    """A row of format ``fmt`` as an aptune ``qa`` row (``files.py`` validates the rest)."""
    if fmt == "qa" or not isinstance(row, dict):
        return row
    kept = {k: row[k] for k in PASSTHROUGH if k in row}
    if fmt == "alpaca":
        instruction, extra, output = row.get("instruction"), row.get("input"), row.get("output")
        for name, value in (("instruction", instruction), ("output", output)):
            if not isinstance(value, str) or not value.strip():
                raise _error(path, line, name, "missing or empty" if value in (None, "") else "must be text")
        if extra is not None and not isinstance(extra, str):
            raise _error(path, line, "input", f"must be text, got {type(extra).__name__}")
        question = instruction.strip() + (f"\n\n{extra.strip()}" if extra and extra.strip() else "")
        return {**kept, "question": question, "answer": output}
    if fmt == "messages":
        return {**kept, **_conversation(path, line, _messages(path, line, row.get("messages"), "messages"))}
    if fmt == "sharegpt":
        return {**kept, **_conversation(path, line, _sharegpt(path, line, row.get("conversations")))}
    if fmt == "preference":
        return {**kept, **_preference(path, line, row)}
    if fmt == "unpaired":
        return {**kept, **_unpaired(path, line, row)}
    raise _error(path, line, "format", f"unknown format {fmt!r} (one of {', '.join(FORMATS)})")


def _messages(path: Path, line: int, value: Any, field: str) -> list[dict[str, str]]:
    """A validated list of {role, content} turns."""
    if not isinstance(value, list) or not value:
        raise _error(path, line, field, "must be a non-empty list of {role, content} turns")
    turns = []
    for i, turn in enumerate(value):
        if not isinstance(turn, dict):
            raise _error(path, line, field, f"turn {i} is not an object with role and content")
        role, content = turn.get("role"), turn.get("content")
        if role not in ROLES:
            raise _error(path, line, field, f"turn {i}: role must be {', '.join(ROLES)}, got {role!r}")
        if not isinstance(content, str):
            raise _error(path, line, field, f"turn {i}: content must be text, got {type(content).__name__}")
        turns.append({"role": role, "content": content})
    return turns


def _sharegpt(path: Path, line: int, value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise _error(path, line, "conversations", "must be a non-empty list of {from, value} turns")
    turns = []
    for i, turn in enumerate(value):
        if not isinstance(turn, dict):
            raise _error(path, line, "conversations", f"turn {i} is not an object with from and value")
        speaker, text = turn.get("from"), turn.get("value")
        role = SHAREGPT_ROLES.get(str(speaker).lower()) if speaker is not None else None
        if role is None:
            raise _error(path, line, "conversations", f"turn {i}: from must be one of "
                                                      f"{', '.join(sorted(SHAREGPT_ROLES))}, got {speaker!r}")
        if not isinstance(text, str):
            raise _error(path, line, "conversations", f"turn {i}: value must be text, got {type(text).__name__}")
        turns.append({"role": role, "content": text})
    return turns


def _prompt_parts(path: Path, line: int, turns: list[dict[str, str]], field: str) -> dict[str, Any]:
    """A conversation ending in a user turn → question, history and system."""
    system = None
    if turns and turns[0]["role"] == "system":
        system, turns = turns[0]["content"], turns[1:]
    if any(t["role"] == "system" for t in turns):
        raise _error(path, line, field, "a system message is allowed only as the first turn")
    if not turns or turns[-1]["role"] != "user":
        raise _error(path, line, field, "the prompt must end with a user turn")
    if not turns[-1]["content"].strip():
        raise _error(path, line, field, "the last user turn is empty")
    out: dict[str, Any] = {"question": turns[-1]["content"]}
    if turns[:-1]:
        out["history"] = turns[:-1]
    if system is not None:
        out["system"] = system
    return out


def _conversation(path: Path, line: int, turns: list[dict[str, str]]) -> dict[str, Any]:
    """A chat whose last turn is the assistant's answer → an item row."""
    field = "messages"
    if turns[-1]["role"] != "assistant":
        raise _error(path, line, field, "the last turn must be the assistant's answer (the reference)")
    if not turns[-1]["content"].strip():
        raise _error(path, line, field, "the last assistant turn (the reference) is empty")
    return {**_prompt_parts(path, line, turns[:-1], field), "answer": turns[-1]["content"]}


def _prompt(path: Path, line: int, row: dict[str, Any]) -> dict[str, Any]:
    """A preference row's ``prompt``, text or messages, as the item's question (and history)."""
    prompt = row.get("prompt")
    if isinstance(prompt, list):
        return _prompt_parts(path, line, _messages(path, line, prompt, "prompt"), "prompt")
    if isinstance(prompt, str) and prompt.strip():
        return {"question": prompt}
    raise _error(path, line, "prompt", "missing or empty (text, or a list of messages)")


def _answer(path: Path, line: int, row: dict[str, Any], name: str) -> str:
    """An answer field, text or a messages list ending with the answer."""
    value = row.get(name)
    if isinstance(value, list):  # a messages list: the assistant turn is the answer
        value = value[-1].get("content") if value and isinstance(value[-1], dict) else None
    if not isinstance(value, str) or not value.strip():
        raise _error(path, line, name, "missing or empty (text, or a messages list ending with the answer)")
    return value


#: how a label may be written (JSON booleans; CSV and Parquet text or numbers)
_LABELS = {True: True, False: False, "true": True, "false": False, "1": True, "0": False, 1: True, 0: False}


def _unpaired(path: Path, line: int, row: dict[str, Any]) -> dict[str, Any]:
    label = row.get("label")
    key = label.strip().lower() if isinstance(label, str) else label
    if isinstance(key, float) and key in (0.0, 1.0):
        key = int(key)
    if not isinstance(key, (bool, int, str)) or key not in _LABELS:
        raise _error(path, line, "label", f"must be true or false (desirable or not), got {label!r}")
    return {**_prompt(path, line, row), "answer": _answer(path, line, row, "completion"), "desirable": _LABELS[key]}


def _preference(path: Path, line: int, row: dict[str, Any]) -> dict[str, Any]:
    parts = _prompt(path, line, row)
    answers = {name: _answer(path, line, row, name) for name in ("chosen", "rejected")}
    if answers["chosen"].strip() == answers["rejected"].strip():
        raise _error(path, line, "rejected", "the same as chosen: a pair must differ")
    return {**parts, "answer": answers["chosen"], "rejected": answers["rejected"]}


def to_prompt_row(path: Path, line: int, row: Any) -> dict[str, Any]:
    """A row to generate for (no reference): ``messages`` ending with a user turn, ``prompt``
    (text or messages) or ``question`` → an item row with an empty answer."""
    if not isinstance(row, dict):
        raise _error(path, line, "prompt", f"expected an object, got {type(row).__name__}")
    kept = {k: row[k] for k in ("id", "context", "style") if k in row}
    for name in ("messages", "prompt"):
        value = row.get(name)
        if isinstance(value, list):
            return {**kept, **_prompt_parts(path, line, _messages(path, line, value, name), name), "answer": ""}
    text = row.get("prompt", row.get("question"))
    if not isinstance(text, str) or not text.strip():
        raise _error(path, line, "prompt", "missing: give messages, a prompt (text or messages) or a question")
    return {**kept, "question": text, "answer": ""}
