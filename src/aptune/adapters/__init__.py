"""Adapters: LoRA (from PEFT) and ALoRA (attention LoRA, aptune's own) behind one API."""

from aptune.adapters.api import (
    adapter_kind,
    apply_adapters,
    attach_adapter,
    disabled_adapter,
    load_adapter,
    merge_adapter,
    save_adapter,
    trainable_parameter_count,
)
from aptune.adapters.attention_lora import AdapterMergeError, AttnLoraCacheError
from aptune.adapters.config import AdapterConfig

__all__ = [
    "AdapterConfig",
    "AdapterMergeError",
    "AttnLoraCacheError",
    "adapter_kind",
    "apply_adapters",
    "attach_adapter",
    "disabled_adapter",
    "load_adapter",
    "merge_adapter",
    "save_adapter",
    "trainable_parameter_count",
]
