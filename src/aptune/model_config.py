"""How a model is loaded: ``model: NAME`` or a ``model:`` section with the weights' dtype, the
attention implementation and 4/8-bit quantization.

    model: smollm2-135m                 # the short form: only the name
    model:
      name: Qwen/Qwen2.5-7B-Instruct
      dtype: auto                       # auto | bf16 | fp16 | fp32
      attn_implementation: auto         # auto | sdpa | eager | flash_attention_2
      quantization: none                # none | 4bit | 8bit (QLoRA, bitsandbytes: aptune[qlora])

``dtype: auto`` loads bf16 weights on a GPU that has bf16, fp16 on an older GPU, and fp32 on the
CPU and MPS (where the compute precision keeps its own measured rule, ``models.bf16_supported``).
With half-precision weights the forward runs in that dtype; adapters and their optimizer state
stay fp32 whatever the weights (PEFT's ``autocast_adapter_dtype``; aptune's ALoRA the same), so
the small trained part keeps full precision, as QLoRA does.

A choice this machine cannot honour (4-bit without bitsandbytes or without a CUDA GPU, flash
attention without ``flash_attn``) is refused before anything loads, with one line naming what to
install or change: never a traceback from inside transformers.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch

from aptune.models import DEFAULT_MODEL, Precision, resolve_precision

WeightDtype = Literal["auto", "bf16", "fp16", "fp32"]
AttnImplementation = Literal["auto", "sdpa", "eager", "flash_attention_2"]
Quantization = Literal["none", "4bit", "8bit"]

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
DTYPE_NAMES = {dtype: name for name, dtype in _DTYPES.items()}
QLORA_INSTALL = "pip install \"aptune[qlora]\" (bitsandbytes)"


class ModelOptionError(ValueError):
    """A ``model:`` option this machine or this installation cannot honour."""


@dataclass
class ModelConfig:
    """Which model, and how its weights are loaded."""

    #: the config loader reads ``model: NAME`` as ``model: {name: NAME}``
    SCALAR_KEY: ClassVar[str] = "name"

    name: str = field(default=DEFAULT_MODEL, metadata={
        "help": "Registry name (see `aptune models`), Hub id or local folder"})
    dtype: WeightDtype = field(default="auto", metadata={
        "help": "Weights' dtype: auto (bf16 on a GPU with bf16, fp16 on an older GPU, fp32 on CPU/MPS), bf16, fp16, fp32"})
    attn_implementation: AttnImplementation = field(default="auto", metadata={
        "help": "Attention kernel: auto (transformers' default), sdpa, eager, flash_attention_2 (CUDA, flash-attn)"})
    quantization: Quantization = field(default="none", metadata={
        "help": "Load the weights in 4bit (QLoRA, NF4) or 8bit with bitsandbytes (CUDA; aptune[qlora]), or none"})

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError("model.name is empty: give a registry name, a Hub id or a local folder")
        if self.quantization != "none" and self.dtype == "fp32":
            raise ValueError(f"model.quantization: {self.quantization} computes in half precision; "
                             "set model.dtype to auto, bf16 or fp16")


def model_label(saved: Any) -> str:
    """A saved config's model as a reader names it: the name, with non-default loading options
    (``Qwen/Qwen2.5-7B, 4bit``); older runs saved a plain name."""
    if not isinstance(saved, dict):
        return str(saved)
    extras = [saved.get("quantization") if saved.get("quantization") not in (None, "none") else None,
              saved.get("dtype") if saved.get("dtype") not in (None, "auto") else None,
              saved.get("attn_implementation") if saved.get("attn_implementation") not in (None, "auto") else None]
    return ", ".join([str(saved.get("name"))] + [e for e in extras if e])


def resolve_weight_dtype(choice: WeightDtype, device: torch.device) -> torch.dtype:
    """The dtype the weights load in on ``device`` (see the module docstring for ``auto``)."""
    if choice != "auto":
        try:
            return _DTYPES[choice]
        except KeyError:
            raise ValueError(f"model.dtype must be auto, bf16, fp16 or fp32, not {choice!r}") from None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def compute_dtype(precision: Precision, weights: torch.dtype, device: torch.device) -> torch.dtype:
    """What the forward computes in: half-precision (or quantized) weights in their own dtype,
    fp32 weights by the ``precision`` rule (bf16 autocast where the hardware is measured faster)."""
    return weights if weights != torch.float32 else resolve_precision(precision, device)


def weights_name(options: ModelConfig, weights: torch.dtype) -> str:
    """What the weights are, as the console, the manifest and the plan name them: ``4bit`` /
    ``8bit`` when quantized, else the floating dtype (``bf16``)."""
    return options.quantization if options.quantization != "none" else DTYPE_NAMES[weights]


def runtime_dtypes(options: ModelConfig, precision: Precision, device: torch.device) -> tuple[torch.dtype, torch.dtype]:
    """(weights, compute) for loading ``options`` on ``device``, after refusing in one line what
    this machine cannot do (``check_model_options``): what a run and ``aptune eval`` both resolve."""
    check_model_options(options, device)
    weights = resolve_weight_dtype(options.dtype, device)
    return weights, compute_dtype(precision, weights, device)


def check_model_options(options: ModelConfig, device: torch.device) -> None:
    """Refuse, in one line, what ``device`` or this installation cannot do (before loading)."""
    if options.quantization != "none":
        if importlib.util.find_spec("bitsandbytes") is None:
            raise ModelOptionError(f"model.quantization: {options.quantization} needs bitsandbytes: {QLORA_INSTALL}")
        if device.type != "cuda":
            raise ModelOptionError(f"model.quantization: {options.quantization} runs on a CUDA GPU (bitsandbytes); "
                                   f"this run computes on {device}: use --device cuda or quantization: none")
    if options.attn_implementation == "flash_attention_2":
        if importlib.util.find_spec("flash_attn") is None:
            raise ModelOptionError("model.attn_implementation: flash_attention_2 needs the flash-attn package "
                                   "(pip install flash-attn); or use sdpa")
        if device.type != "cuda":
            raise ModelOptionError(f"model.attn_implementation: flash_attention_2 runs on a CUDA GPU; this run "
                                   f"computes on {device}: use sdpa")
        if resolve_weight_dtype(options.dtype, device) == torch.float32:
            raise ModelOptionError("model.attn_implementation: flash_attention_2 needs bf16 or fp16 weights; "
                                   "set model.dtype: bf16 (or fp16)")


def from_pretrained_kwargs(options: ModelConfig, device: torch.device) -> dict[str, Any]:
    """The keyword arguments of ``AutoModelForCausalLM.from_pretrained`` that ``options`` set.

    A quantized model is placed on its GPU by ``device_map`` while loading (bitsandbytes
    quantizes as the weights arrive); every other model loads on the CPU and is moved."""
    dtype = resolve_weight_dtype(options.dtype, device)
    kwargs: dict[str, Any] = {"dtype": dtype}
    if options.attn_implementation != "auto":
        kwargs["attn_implementation"] = options.attn_implementation
    if options.quantization != "none":
        from transformers import BitsAndBytesConfig

        if options.quantization == "4bit":
            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=dtype)
        else:
            kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
        kwargs["device_map"] = {"": device.index if device.index is not None else 0}
    return kwargs


def loaded_dtype_name(model: torch.nn.Module) -> str:
    """What the loaded weights are, for the manifest: ``4bit``/``8bit`` or the floating dtype."""
    if getattr(model, "is_loaded_in_4bit", False):
        return "4bit"
    if getattr(model, "is_loaded_in_8bit", False):
        return "8bit"
    for p in model.parameters():
        if p.is_floating_point():
            return DTYPE_NAMES.get(p.dtype, str(p.dtype))
    return "unknown"
