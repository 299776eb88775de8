"""The model to talk to: a registry name, a Hub id or folder (an ``aptune export``), or a run
directory (its final model: the base with the accepted rounds), with optional extra adapters."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch


def is_run_dir(name: str) -> bool:
    return (Path(name) / "manifest.json").is_file()


def load_for_inference(name: str, adapters: Sequence[str | Path] = (), device: str = "auto",
                       trust_remote_code: bool = False) -> tuple[torch.nn.Module, Any, torch.dtype]:
    """(model in eval mode, tokenizer, compute dtype) on the resolved device."""
    from aptune.adapters import apply_adapters
    from aptune.devices import resolve_device
    from aptune.model_config import ModelConfig, runtime_dtypes
    from aptune.models import load_model, load_tokenizer

    where = resolve_device(device)
    if is_run_dir(name):
        from aptune.run.finished import open_run, rounds_upto

        run = open_run(name, device=str(where))
        last, _ = rounds_upto(run)
        model, tokenizer = run.start_model(last + 1), run.tokenizer
        _, dtype = runtime_dtypes(run.cfg.model, run.cfg.precision, where)
    else:
        options = ModelConfig(name=name)
        _, dtype = runtime_dtypes(options, "auto", where)
        model = load_model(name, trust_remote_code=trust_remote_code, device=str(where), options=options)
        tokenizer = load_tokenizer(name, trust_remote_code=trust_remote_code)
    if adapters:
        model = apply_adapters(model, list(adapters))
    return model.eval(), tokenizer, dtype
