"""ALoRA (attention on the LoRA path), implemented as aptune's own adapter; see SPEC-ALORA.md."""

from aptune.adapters.attention_lora.context import AttnLoraCacheError, CallContext
from aptune.adapters.attention_lora.layer import PREFIX, AttnLoraLinear
from aptune.adapters.attention_lora.model import (
    AdapterMergeError,
    adapter_configs,
    adapter_parameters,
    attach,
    disabled,
    merge,
)

__all__ = [
    "PREFIX",
    "AdapterMergeError",
    "AttnLoraCacheError",
    "AttnLoraLinear",
    "CallContext",
    "adapter_configs",
    "adapter_parameters",
    "attach",
    "disabled",
    "merge",
]
