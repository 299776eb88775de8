"""``aptune generate``: batched generation over a prompts file, one JSONL row out per prompt.

Prompts are rows of a JSONL/JSON/CSV/Parquet file: ``messages`` ending with a user turn (earlier
turns and a system message kept), ``prompt`` (text or messages) or ``question``. Each is
rendered like any item (``prompts.render_prompt``: the chat template where the model has one)
and answered by the evaluator's batched generation; every output row records the settings
that produced it, so a file of outputs says how it was made.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from aptune.data.example import Example
from aptune.data.files import DataError, read_rows
from aptune.data.formats import to_prompt_row
from aptune.evaluate.generation import Sampling, generate_greedy, generate_samples
from aptune.io import write_jsonl_atomic
from aptune.modeling import prompt_budget
from aptune.prompts import PromptFormat, render_prompt


def read_prompts(path: str | Path) -> list[Example]:
    """The prompts of a file as items (empty references); errors name the file, row and field."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    items, seen = [], set()
    for line, raw in read_rows(path):
        row = to_prompt_row(path, line, raw)
        rid = str(row.get("id", f"{path.stem}-{line}"))
        if rid in seen:
            raise DataError(f"{path}:{line}: field 'id': duplicate id {rid!r}")
        seen.add(rid)
        meta = {k: row[k] for k in ("history", "system") if k in row}
        items.append(Example(rid, path.stem, "custom", row["question"], answer="", context=row.get("context"),
                             style=row.get("style", "qa"), meta=meta))
    if not items:
        raise DataError(f"{path}:1: the file has no prompts")
    return items


def generate_file(model: torch.nn.Module, tokenizer: Any, prompts: str | Path, out: str | Path, *,
                  model_name: str, dtype: torch.dtype = torch.float32, template: str = "auto",
                  max_new_tokens: int = 256, temperature: float = 0.0, seed: int = 0, batch_size: int = 16,
                  progress: bool = True) -> Path:
    """Answer every prompt of ``prompts`` and write ``out`` (JSONL: id, prompt, output, settings)."""
    items = read_prompts(prompts)
    fmt = PromptFormat(template=template)  # type: ignore[arg-type]
    rendered = [render_prompt(ex, tokenizer, fmt) for ex in items]
    budget = prompt_budget(model, max_new_tokens)
    if temperature > 0:
        sampled = generate_samples(model, tokenizer, rendered, Sampling(n=1, temperature=temperature, seed=seed),
                                   max_new_tokens=max_new_tokens, batch_size=batch_size, max_prompt_tokens=budget,
                                   dtype=dtype, progress=progress)
        outputs = [texts[0] for texts in sampled]
    else:
        outputs = generate_greedy(model, tokenizer, rendered, max_new_tokens=max_new_tokens, batch_size=batch_size,
                                  max_prompt_tokens=budget, dtype=dtype, progress=progress)
    settings = {"model": model_name, "template": "chat" if fmt.uses_chat(tokenizer) else "plain",
                "max_new_tokens": max_new_tokens, "decoding": "greedy" if temperature <= 0 else
                f"sampling (temperature {temperature}, seed {seed})", "precision": str(dtype).removeprefix("torch.")}
    rows = [{"id": ex.id, "prompt": ex.question, "rendered_prompt": text, "output": output, "settings": settings}
            for ex, text, output in zip(items, rendered, outputs)]
    return write_jsonl_atomic(Path(out), rows)
