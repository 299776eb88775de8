"""An interactive chat with a model in the terminal: the conversation is kept and rendered with
the model's chat template each turn, the reply streams as it is generated.

Commands: ``/reset`` forgets the conversation, ``/exit`` (or end of input) leaves. A model
without a chat template gets a plain "User: …\\nAssistant:" transcript, with generation stopped
at the next "User:".
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

import torch

from aptune.models import autocast
from aptune.prompts import encode_prompt, end_of_turn_id

RESET, EXIT = "/reset", "/exit"


@dataclass
class ChatSession:
    """One conversation with a loaded model: ``reply`` adds a user turn and returns the answer."""

    model: torch.nn.Module
    tokenizer: Any
    dtype: torch.dtype = torch.float32
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0: greedy
    system: str | None = None
    messages: list[dict[str, str]] = field(default_factory=list)

    def reset(self) -> None:
        self.messages.clear()

    def prompt(self) -> str:
        """The conversation so far, rendered up to where the assistant's next turn starts."""
        turns = ([{"role": "system", "content": self.system}] if self.system else []) + self.messages
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
        lines = [t["content"] if t["role"] == "system" else f"{t['role'].capitalize()}: {t['content']}" for t in turns]
        return "\n".join(lines) + "\nAssistant:"

    def reply(self, text: str, on_text: Callable[[str], None] | None = None) -> str:
        """Answer ``text`` (streamed to ``on_text`` piece by piece) and keep both turns."""
        from transformers import TextStreamer

        self.messages.append({"role": "user", "content": text})
        ids = torch.tensor([encode_prompt(self.tokenizer, self.prompt())], device=next(self.model.parameters()).device)
        pieces: list[str] = []

        class _Collect(TextStreamer):
            def on_finalized_text(self, chunk: str, stream_end: bool = False) -> None:  # noqa: D401
                pieces.append(chunk)
                if on_text is not None and chunk:
                    on_text(chunk)

        stops = sorted({self.tokenizer.eos_token_id, end_of_turn_id(self.tokenizer)} - {None})
        sampling = {"do_sample": True, "temperature": self.temperature, "top_p": 1.0} if self.temperature > 0 else \
            {"do_sample": False}
        extra = {} if getattr(self.tokenizer, "chat_template", None) else {"stop_strings": ["\nUser:"],
                                                                              "tokenizer": self.tokenizer}
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        with torch.no_grad(), autocast(self.dtype, ids.device):
            self.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=self.max_new_tokens,
                                eos_token_id=stops, pad_token_id=pad,
                                streamer=_Collect(self.tokenizer, skip_prompt=True, skip_special_tokens=True),
                                **sampling, **extra)
        answer = "".join(pieces).removesuffix("\nUser:").strip()
        self.messages.append({"role": "assistant", "content": answer})
        return answer


def repl(session: ChatSession, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> int:
    """Read user turns from ``stdin`` until ``/exit`` or end of input; return the turns answered."""
    interactive = stdin.isatty()
    print(f"chat: {RESET} forgets the conversation, {EXIT} leaves", file=stdout)
    answered = 0
    while True:
        if interactive:
            print("you> ", end="", file=stdout, flush=True)
        line = stdin.readline()
        if not line:
            break
        text = line.strip()
        if not text:
            continue
        if text == EXIT:
            break
        if text == RESET:
            session.reset()
            print("(conversation reset)", file=stdout, flush=True)
            continue
        print("model> ", end="", file=stdout, flush=True)
        session.reply(text, on_text=lambda chunk: print(chunk, end="", file=stdout, flush=True))
        print(file=stdout, flush=True)
        answered += 1
    return answered
