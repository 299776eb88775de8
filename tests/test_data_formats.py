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


def test_a_save_to_disk_folder_is_a_task_in_any_format(tmp_path: Path):
    from datasets import Dataset, DatasetDict

    Dataset.from_list(MESSAGES).save_to_disk(str(tmp_path / "chat_ds"))
    items = load_task(str(tmp_path / "chat_ds"), split="source")
    assert [(i.question, i.answer) for i in items] == [("And of Italy?", "Rome."), ("2 + 2?", "4")]
    assert items[0].task == "chat_ds" and items[0].meta["history"][0]["content"] == "Capital of France?"
    DatasetDict({"train": Dataset.from_list(ALPACA), "validation": Dataset.from_list(ALPACA[:1])}).save_to_disk(
        str(tmp_path / "alpaca_dd"))
    every = load_task(str(tmp_path / "alpaca_dd"), split="source")
    assert len(every) == 3 and len({i.id for i in every}) == 3
    (val,) = load_task(str(tmp_path / "alpaca_dd"), split="source:validation")
    assert val.answer == "chat"
    hashed = sum(len(load_task(str(tmp_path / "alpaca_dd"), split=s)) for s in ("train", "dev", "test"))
    assert hashed == 3, "aptune's own split covers every row once"


def test_a_config_names_a_dataset_folder_relative_to_itself(tmp_path: Path):
    from datasets import Dataset

    from aptune.config import load_run_config

    Dataset.from_list(ALPACA).save_to_disk(str(tmp_path / "data" / "mine"))
    cfg_path = tmp_path / "run.yaml"
    cfg_path.write_text("pool: {tasks: [data/mine], split: train, format: alpaca}\n")
    cfg = load_run_config(cfg_path)
    assert cfg.pool.tasks == [str((tmp_path / "data" / "mine").resolve())] and cfg.pool.format == "alpaca"


def test_a_hub_id_that_cannot_be_read_fails_at_once_in_one_line(monkeypatch):
    import time

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    started = time.perf_counter()
    with pytest.raises(DataError) as info:
        load_task("hf:aptune-tests/no-such-dataset-0:main:train")
    assert time.perf_counter() - started < 60
    message = str(info.value)
    assert "\n" not in message and message.startswith("hf:aptune-tests/no-such-dataset-0:main:train: cannot read")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # offline: the cache is asked, and misses
    with pytest.raises(DataError, match=r"^hf:aptune-tests/no-such-dataset-0: cannot load"):
        load_task("hf:aptune-tests/no-such-dataset-0")
    with pytest.raises(DataError, match="expected hf:ORG/NAME"):
        load_task("hf:org/name:cfg:split:extra")
