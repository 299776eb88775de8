"""Save and load attention-LoRA adapters: safetensors weights + a JSON config, nothing pickled.

Folder layout:
  attn_lora_config.json        format version, base model id, adapters in attach order
                               (name, AdapterConfig fields, exact wrapped module names)
  attn_lora_model.safetensors  every ``attn_lora_*`` tensor, keyed by its module path

Loading re-attaches the adapters in order on a freshly loaded base model, then copies the
tensors in; any missing or unexpected key is an error, so a partial load cannot pass silently.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from aptune.adapters.attention_lora import model as attn_model
from aptune.adapters.config import AdapterConfig
from aptune.io import write_atomic

log = logging.getLogger(__name__)

CONFIG_NAME = "attn_lora_config.json"
WEIGHTS_NAME = "attn_lora_model.safetensors"
FORMAT = "aptune-attention-lora"
VERSION = 1


def is_attn_lora_folder(folder: str | os.PathLike) -> bool:
    return (Path(folder) / CONFIG_NAME).exists()


def save(model: nn.Module, folder: str | os.PathLike, state_dict: dict[str, torch.Tensor] | None = None) -> Path:
    """Write all attached attention-LoRA adapters of ``model`` to ``folder`` (atomic per file);
    with ``state_dict`` (gathered from FSDP shards), its values of the adapter's tensors."""
    configs = attn_model.adapter_configs(model)
    if not configs:
        raise ValueError(f"{type(model).__name__} has no attention LoRA adapter to save")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    own = attn_model.adapter_parameters(model)
    if state_dict is not None:
        missing = [k for k in own if k not in state_dict]
        if missing:
            raise ValueError(f"the gathered state has no {missing[0]!r}: not this model's state dict")
        own = {k: state_dict[k] for k in own}
    tensors = {k: p.detach().to("cpu").contiguous() for k, p in own.items()}
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "base_model_name_or_path": getattr(getattr(model, "config", None), "_name_or_path", None),
        "adapters": [
            {"name": name, "config": cfg.to_dict(), "modules": modules} for name, (cfg, modules) in configs.items()
        ],
    }
    write_atomic(folder / WEIGHTS_NAME, lambda p: save_file(tensors, str(p), metadata={"format": "pt"}))
    write_atomic(folder / CONFIG_NAME, lambda p: p.write_text(json.dumps(meta, indent=2) + "\n"))
    log.info("saved %d attention LoRA tensors to %s", len(tensors), folder)
    return folder


def load(base_model: nn.Module, folder: str | os.PathLike, trainable: bool = False) -> nn.Module:
    """Attach the adapters saved in ``folder`` to ``base_model`` (in place) and load their weights.

    ``trainable=True`` makes the newest adapter trainable (resuming); otherwise all are frozen.
    """
    folder = Path(folder)
    config_path = folder / CONFIG_NAME
    try:
        meta = json.loads(config_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{config_path}: cannot read attention LoRA config ({exc})") from exc
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise ValueError(f"{config_path}: not an aptune attention LoRA config of version {VERSION}")
    if attn_model.adapter_configs(base_model):
        raise ValueError("load_adapter needs a fresh base model; this one already has attention LoRA adapters")
    for entry in meta["adapters"]:
        cfg = AdapterConfig.from_dict(entry["config"])
        attn_model.attach(base_model, cfg, entry["name"], module_names=list(entry["modules"]))
    params = attn_model.adapter_parameters(base_model)
    tensors = load_file(str(folder / WEIGHTS_NAME))
    missing, unexpected = sorted(set(params) - set(tensors)), sorted(set(tensors) - set(params))
    if missing or unexpected:
        which = f"missing {missing[0]!r}" if missing else f"unexpected {unexpected[0]!r}"
        raise ValueError(f"{folder / WEIGHTS_NAME}: does not fit this model ({which})")
    with torch.no_grad():
        for key, param in params.items():
            if tensors[key].shape != param.shape:
                raise ValueError(f"{folder / WEIGHTS_NAME}: {key} has shape {tuple(tensors[key].shape)}, "
                                 f"model expects {tuple(param.shape)}")
            param.copy_(tensors[key])
    if trainable:
        attn_model.set_trainable(base_model, attn_model.active_name(base_model))
    else:
        for param in base_model.parameters():
            param.requires_grad_(False)
    return base_model
