"""Talking to a tuned model: the chat loop (conversation kept, /reset, /exit, streamed) and
batched generation over a prompts file."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aptune.data.files import DataError
from aptune.evaluate.generation import generate_greedy
from aptune.inference.batch import generate_file, read_prompts
from aptune.inference.chat import ChatSession, repl
from aptune.io import read_jsonl
from tiny import save_tiny, tiny_tokenizer


def test_the_conversation_is_kept_and_reset(model, tokenizer):
    chat = ChatSession(model, tokenizer, max_new_tokens=6)
    streamed: list[str] = []
    first = chat.reply("what is the sun?", on_text=streamed.append)
    assert "".join(streamed).strip() == first
    chat.reply("and the moon?")
    assert [m["role"] for m in chat.messages] == ["user", "assistant", "user", "assistant"]
    prompt = chat.prompt()
    assert "what is the sun?" in prompt and "and the moon?" in prompt, "earlier turns stay in the prompt"
    assert prompt == tokenizer.apply_chat_template(chat.messages, tokenize=False, add_generation_prompt=True)
    chat.reset()
    assert chat.messages == [] and chat.reply("what is the sun?") == first, "greedy: the same start, the same reply"


def test_a_model_without_a_chat_template_gets_a_plain_transcript(model):
    chat = ChatSession(model, tiny_tokenizer(chat=False), max_new_tokens=6, system="Be brief.")
    chat.reply("the cat")
    assert chat.prompt().startswith("Be brief.\nUser: the cat\nAssistant:")


def test_the_loop_reads_turns_until_exit(model, tokenizer):
    stdin = io.StringIO("what is the sun?\n\n/reset\nthe cat\n/exit\nnever read\n")
    stdout = io.StringIO()
    chat = ChatSession(model, tokenizer, max_new_tokens=4)
    assert repl(chat, stdin, stdout) == 2
    text = stdout.getvalue()
    assert text.count("model> ") == 2 and "(conversation reset)" in text
    assert [m["content"] for m in chat.messages if m["role"] == "user"] == ["the cat"]


def test_aptune_chat_from_a_stdin_script(tmp_path: Path):
    folder = save_tiny(tmp_path / "model")
    proc = subprocess.run([sys.executable, "-m", "aptune.cli", "chat", folder, "--max-new-tokens", "4"],
                          input="what is the sun?\nthe cat\n/exit\n", capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-1500:]
    assert proc.stdout.count("model> ") == 2 and "/reset forgets" in proc.stdout


def _prompts(path: Path) -> Path:
    rows = [{"id": "a", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "the sun"}]},
            {"prompt": "what is the moon?"},
            {"question": "red blue green", "id": "c"},
            {"prompt": [{"role": "user", "content": "the cat"}, {"role": "assistant", "content": "a dog"},
                        {"role": "user", "content": "and?"}]}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_generate_answers_every_prompt_as_batched_greedy_generation_does(model, tokenizer, tmp_path: Path):
    out = generate_file(model, tokenizer, _prompts(tmp_path / "p.jsonl"), tmp_path / "out.jsonl", model_name="tiny",
                        max_new_tokens=5, batch_size=2, progress=False)
    rows = read_jsonl(out)
    assert [r["id"] for r in rows] == ["a", "p-2", "c", "p-4"]
    assert rows[0]["rendered_prompt"].startswith("<|im_start|>system\nBe brief.")
    assert "a dog" in rows[3]["rendered_prompt"], "earlier turns are kept"
    expected = generate_greedy(model, tokenizer, [r["rendered_prompt"] for r in rows], max_new_tokens=5,
                               progress=False)
    assert [r["output"] for r in rows] == expected
    assert rows[0]["settings"] == {"model": "tiny", "template": "chat", "max_new_tokens": 5, "decoding": "greedy",
                                   "precision": "float32"}


def test_a_bad_prompts_row_is_named(tmp_path: Path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"prompt": "ok"}) + "\n" + json.dumps({"messages": [{"role": "user", "content": "x"},
                                                                                   {"role": "assistant", "content": "y"}]}) + "\n")
    with pytest.raises(DataError, match=r"bad.jsonl:2: field 'messages': the prompt must end with a user turn"):
        read_prompts(path)
    path.write_text(json.dumps({"text": "no prompt here"}) + "\n")
    with pytest.raises(DataError, match=r"bad.jsonl:1: field 'prompt': missing"):
        read_prompts(path)


def test_aptune_generate_writes_the_file(tmp_path: Path):
    folder = save_tiny(tmp_path / "model")
    out = tmp_path / "gen.jsonl"
    proc = subprocess.run([sys.executable, "-m", "aptune.cli", "generate", folder, "--prompts",
                           str(_prompts(tmp_path / "p.jsonl")), "--out", str(out), "--max-new-tokens", "3",
                           "--temperature", "0.7"], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-1500:]
    rows = read_jsonl(out)
    assert len(rows) == 4 and rows[0]["settings"]["decoding"] == "sampling (temperature 0.7, seed 0)"
