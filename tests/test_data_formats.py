"""Users' instruction data in the formats they arrive with: messages, Alpaca, ShareGPT,
preference pairs, and renamed columns; each format in the file types it fits, and every
malformed row named by file, line and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aptune.data import load_task
from aptune.data.files import DataError, load_file
from aptune.prompts import PromptFormat, render_prompt

MESSAGES = [
    {"messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Capital of France?"},
                  {"role": "assistant", "content": "Paris."}, {"role": "user", "content": "And of Italy?"},
                  {"role": "assistant", "content": "Rome."}]},
    {"messages": [{"role": "user", "content": "2 + 2?"}, {"role": "assistant", "content": "4"}], "id": "sum"},
]
ALPACA = [{"instruction": "Translate to French.", "input": "cat", "output": "chat"},
          {"instruction": "Name a colour.", "input": "", "output": "red"}]
SHAREGPT = [{"conversations": [{"from": "human", "value": "Hi, what is 3 * 3?"}, {"from": "gpt", "value": "9"}]}]
PREFERENCE = [{"prompt": "Best pet?", "chosen": "A cat.", "rejected": "A rock."},
              {"prompt": [{"role": "user", "content": "Say hi"}], "chosen": [{"role": "assistant", "content": "Hi!"}],
               "rejected": [{"role": "assistant", "content": "No."}]}]


def _jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_messages_last_assistant_turn_is_the_answer_and_earlier_turns_the_history(tmp_path: Path):
    first, second = load_file(_jsonl(tmp_path / "chat.jsonl", MESSAGES))
    assert (first.question, first.answer) == ("And of Italy?", "Rome.")
    assert first.meta["system"] == "You are terse."
    assert first.meta["history"] == [{"role": "user", "content": "Capital of France?"},
                                      {"role": "assistant", "content": "Paris."}]
    assert second.id == "sum" and "history" not in second.meta and "system" not in second.meta


def test_messages_render_with_the_chat_template_system_and_history_kept(tmp_path: Path, tokenizer):
    item = load_file(_jsonl(tmp_path / "chat.jsonl", MESSAGES))[0]
    text = render_prompt(item, tokenizer, PromptFormat(template="chat"))
    expected = tokenizer.apply_chat_template(
        [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Capital of France?"},
         {"role": "assistant", "content": "Paris."}, {"role": "user", "content": "And of Italy?"}],
        tokenize=False, add_generation_prompt=True)
    assert text == expected
    plain = render_prompt(item, tokenizer, PromptFormat(template="plain"))
    assert plain == ("You are terse.\n\nQuestion: Capital of France?\nAnswer: Paris.\n\n"
                     "Question: And of Italy?\nAnswer:")


def test_alpaca_in_json_array_jsonl_and_csv(tmp_path: Path):
    (tmp_path / "a.json").write_text(json.dumps(ALPACA, indent=2), encoding="utf-8")
    _jsonl(tmp_path / "a.jsonl", ALPACA)
    (tmp_path / "a.csv").write_text("instruction,input,output\nTranslate to French.,cat,chat\nName a colour.,,red\n",
                                    encoding="utf-8")
    for name in ("a.json", "a.jsonl", "a.csv"):
        items = load_file(tmp_path / name)
        assert [(i.question, i.answer) for i in items] == [("Translate to French.\n\ncat", "chat"),
                                                           ("Name a colour.", "red")], name


def test_sharegpt_and_parquet_messages(tmp_path: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (item,) = load_file(_jsonl(tmp_path / "s.jsonl", SHAREGPT))
    assert (item.question, item.answer) == ("Hi, what is 3 * 3?", "9")
    pq.write_table(pa.Table.from_pylist(MESSAGES[1:]), tmp_path / "m.parquet")
    (row,) = load_file(tmp_path / "m.parquet")
    assert (row.question, row.answer) == ("2 + 2?", "4")


def test_preference_rows_keep_the_rejected_answer(tmp_path: Path):
    first, second = load_file(_jsonl(tmp_path / "p.jsonl", PREFERENCE))
    assert (first.question, first.answer, first.meta["rejected"]) == ("Best pet?", "A cat.", "A rock.")
    assert (second.question, second.answer, second.meta["rejected"]) == ("Say hi", "Hi!", "No.")


def test_fields_rename_columns_and_format_can_be_named(tmp_path: Path):
    rows = [{"prompt_text": "Why is the sky blue?", "response": "Rayleigh scattering", "k": 1}]
    path = _jsonl(tmp_path / "custom.jsonl", rows)
    (item,) = load_task(str(path), split="source", fields={"question": "prompt_text", "answer": "response"})
    assert (item.question, item.answer) == ("Why is the sky blue?", "Rayleigh scattering")
    with pytest.raises(DataError, match=r"custom.jsonl:1: field 'messages': must be a non-empty list"):
        load_file(path, format="messages")
    with pytest.raises(DataError, match="unknown format 'chatml'"):
        load_file(path, format="chatml")


BAD_ROWS = [
    ({"messages": [{"role": "user", "content": "q"}]}, "messages", "the last turn must be the assistant's answer"),
    ({"messages": [{"role": "bot", "content": "q"}]}, "messages", "turn 0: role must be system, user, assistant, got 'bot'"),
    ({"messages": [{"role": "user", "content": 3}, {"role": "assistant", "content": "a"}]}, "messages",
     "turn 0: content must be text, got int"),
    ({"messages": [{"role": "assistant", "content": "a"}]}, "messages", "the prompt must end with a user turn"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "system", "content": "s"},
                   {"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}, "messages",
     "a system message is allowed only as the first turn"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": " "}]}, "messages",
     "the last assistant turn (the reference) is empty"),
    ({"messages": "hello"}, "messages", "must be a non-empty list of {role, content} turns"),
    ({"instruction": "", "output": "x"}, "instruction", "missing or empty"),
    ({"instruction": "do", "input": 5, "output": "x"}, "input", "must be text, got int"),
    ({"conversations": [{"from": "robot", "value": "x"}]}, "conversations", "turn 0: from must be one of"),
    ({"prompt": "q", "chosen": "a", "rejected": ""}, "rejected", "missing or empty"),
    ({"prompt": "q", "chosen": "same", "rejected": "same"}, "rejected", "the same as chosen"),
    ({"prompt": None, "chosen": "a", "rejected": "b"}, "prompt", "missing or empty"),
]


@pytest.mark.parametrize("row,field,message", BAD_ROWS, ids=[f"{i}-{b[1]}" for i, b in enumerate(BAD_ROWS)])
def test_a_malformed_row_names_file_line_and_field(tmp_path: Path, row: dict, field: str, message: str):
    good = {"messages": MESSAGES[1]["messages"]} if "messages" in row else None
    rows = ([good] if good else []) + [row]
    path = _jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(DataError) as info:
        load_file(path, format="auto" if good else {"instruction": "alpaca", "input": "alpaca",
                                                      "conversations": "sharegpt"}.get(field, "preference"))
    assert str(info.value).startswith(f"{path}:{len(rows)}: field '{field}': {message}")


def test_a_json_array_error_names_the_row(tmp_path: Path):
    path = tmp_path / "arr.json"
    path.write_text(json.dumps([ALPACA[0], {"instruction": "x"}]), encoding="utf-8")
    with pytest.raises(DataError, match=r"arr.json:2: field 'output': missing or empty"):
        load_file(path)
