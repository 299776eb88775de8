"""Several merged LoRA rounds as one PEFT adapter, exactly.

Round k's adapter was trained on the weights with rounds 1..k-1 merged in, and merging adds its
update: W' = W + Σ_k s_k B_k A_k, with s_k its scaling (alpha/r, or alpha/√r with rsLoRA). That
sum is itself one low-rank update: stack the A's (rows) and the scaled B's (columns) into
A = [A_1; A_2; …] and B = [s_1 B_1, s_2 B_2, …] of rank Σ r_k, and give the adapter scaling 1
(lora_alpha = r). PEFT applies W x + B A x, the same numbers up to float rounding.

Refused, with the reason, where that does not hold: adapters on different modules, with
biases, DoRA's magnitude vectors, or extra trained modules.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

CONFIG = "adapter_config.json"
WEIGHTS = "adapter_model.safetensors"


class ComposeError(ValueError):
    """The rounds do not compose into one LoRA adapter (the message says why)."""


def _scaling(cfg: dict[str, Any]) -> float:
    r, alpha = int(cfg["r"]), float(cfg["lora_alpha"])
    return alpha / math.sqrt(r) if cfg.get("use_rslora") else alpha / r


def _read(folder: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    from safetensors.torch import load_file

    cfg = json.loads((folder / CONFIG).read_text())
    return cfg, load_file(str(folder / WEIGHTS))


def compose_lora_rounds(folders: list[Path], out: Path) -> dict[str, Any]:
    """Write one PEFT adapter to ``out`` equal to merging ``folders`` in order; return its config."""
    from safetensors.torch import save_file

    if not folders:
        raise ComposeError("no accepted round: there is no adapter to export (the model is the base model)")
    loaded = [_read(f) for f in folders]
    first_cfg, first_weights = loaded[0]
    for folder, (cfg, weights) in zip(folders, loaded):
        if cfg.get("peft_type") != "LORA":
            raise ComposeError(f"{folder}: not a LoRA adapter ({cfg.get('peft_type')})")
        if cfg.get("use_dora"):
            raise ComposeError(f"{folder}: DoRA rescales each weight's norm, so rounds do not add up")
        if cfg.get("bias", "none") != "none" or cfg.get("modules_to_save"):
            raise ComposeError(f"{folder}: trains biases or whole modules, which a LoRA adapter cannot sum")
        if cfg.get("rank_pattern") or cfg.get("alpha_pattern"):
            raise ComposeError(f"{folder}: per-module ranks are not composed here")
        if set(weights) != set(first_weights):
            raise ComposeError(f"{folder}: adapts other modules than {folders[0]}")
    scales = [_scaling(cfg) for cfg, _ in loaded]
    composed: dict[str, torch.Tensor] = {}
    for key in sorted(first_weights):
        if ".lora_A." in key:
            composed[key] = torch.cat([w[key].float() for _, w in loaded], dim=0).contiguous()
        elif ".lora_B." in key:
            composed[key] = torch.cat([s * w[key].float() for s, (_, w) in zip(scales, loaded)], dim=1).contiguous()
        else:
            raise ComposeError(f"{folders[0]}: unexpected tensor {key!r} in a LoRA adapter")
    rank = sum(int(cfg["r"]) for cfg, _ in loaded)
    cfg = {**first_cfg, "r": rank, "lora_alpha": rank, "use_rslora": False, "lora_dropout": 0.0}
    out.mkdir(parents=True, exist_ok=True)
    save_file(composed, str(out / WEIGHTS), metadata={"format": "pt"})
    (out / CONFIG).write_text(json.dumps(cfg, indent=2, sort_keys=True))
    return cfg
