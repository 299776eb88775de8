"""Wrap a transformers causal LM with attention-LoRA layers, in place.

The model stays the same object and the same class, so ``model(**batch)``, ``generate``,
accelerate and the trainer see nothing new; only the adapted linears are replaced by
``AttnLoraLinear`` and every other parameter is frozen. Adapters have names and stack: a
second ``attach`` wraps the first (frozen) one, which is how the APT round loop keeps an
unmergeable adapter (see ``merge``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from torch import nn

from aptune.adapters.attention_lora.context import CallContext
from aptune.adapters.attention_lora.layer import AttnLoraLinear
from aptune.adapters.config import AdapterConfig
from aptune.adapters.targets import find_target_modules

log = logging.getLogger(__name__)

CONTEXT_ATTR = "_aptune_attn_lora_context"
CONFIGS_ATTR = "_aptune_attn_lora_configs"


class AdapterMergeError(RuntimeError):
    """Raised when asked to fold an adapter into base weights where that is impossible."""


def _decoder(model: nn.Module) -> nn.Module:
    """The module that receives attention_mask/past_key_values: the decoder, else the model."""
    getter = getattr(model, "get_decoder", None)
    if callable(getter):
        with contextlib.suppress(Exception):
            decoder = getter()
            if isinstance(decoder, nn.Module):
                return decoder
    return model


def context_of(model: nn.Module) -> CallContext | None:
    """The model's attention-LoRA call context, or None when it has no attention LoRA."""
    return getattr(model, CONTEXT_ATTR, None)


def adapter_configs(model: nn.Module) -> dict[str, tuple[AdapterConfig, list[str]]]:
    """Attached attention-LoRA adapters in attach order: name -> (config, wrapped module names)."""
    return getattr(model, CONFIGS_ATTR, {})


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def attach(
    model: nn.Module, cfg: AdapterConfig, name: str = "default", module_names: list[str] | None = None
) -> nn.Module:
    """Add attention-LoRA adapter ``name`` to ``model`` in place; only its parameters train.

    ``module_names`` overrides ``cfg.target_modules`` with exact names (used by the loader so
    a saved adapter lands on exactly the layers it was trained on).
    """
    if cfg.kind != "alora":
        raise ValueError(f"attention_lora.attach needs adapter.kind 'alora', not {cfg.kind!r}")
    configs = dict(adapter_configs(model))
    if name in configs:
        raise ValueError(f"attention LoRA adapter {name!r} is already attached; pick another name")
    context = context_of(model)
    if context is None:
        context = CallContext()
        context.install(_decoder(model))
        object.__setattr__(model, CONTEXT_ATTR, context)
    targets = module_names or find_target_modules(model, cfg.target_modules, wrapper_types=(AttnLoraLinear,))
    for param in model.parameters():
        param.requires_grad_(False)
    for target in targets:
        try:
            original = model.get_submodule(target)
        except AttributeError as exc:
            raise ValueError(f"adapter module {target!r} does not exist in {type(model).__name__}") from exc
        wrapped = AttnLoraLinear(original, cfg, context, name, f"{name}:{target}")
        wrapped.train(original.training)  # a fresh module defaults to training mode (dropout on)
        _set_module(model, target, wrapped)
    context.enabled[name] = True
    configs[name] = (cfg, list(targets))
    object.__setattr__(model, CONFIGS_ATTR, configs)
    log.info("attention LoRA %r on %d modules (r=%d, heads=%d)", name, len(targets), cfg.r, cfg.heads)
    return model


def adapter_parameters(model: nn.Module, name: str | None = None) -> dict[str, nn.Parameter]:
    """Named parameters of adapter ``name`` (default: all attention-LoRA adapters)."""
    found = {}
    for module_name, module in model.named_modules():
        if isinstance(module, AttnLoraLinear) and (name is None or module.adapter_name == name):
            for pname, param in module.named_parameters(recurse=True):
                if pname.startswith("attn_lora_"):
                    found[f"{module_name}.{pname}" if module_name else pname] = param
    return found


def set_trainable(model: nn.Module, name: str) -> None:
    """Make adapter ``name`` the only trainable parameters of ``model``."""
    for param in model.parameters():
        param.requires_grad_(False)
    for param in adapter_parameters(model, name).values():
        param.requires_grad_(True)


def active_name(model: nn.Module) -> str:
    """The most recently attached adapter (the one being trained)."""
    configs = adapter_configs(model)
    if not configs:
        raise ValueError(f"{type(model).__name__} has no attention LoRA adapter")
    return list(configs)[-1]


@contextlib.contextmanager
def disabled(model: nn.Module, name: str | None = None) -> Iterator[nn.Module]:
    """Inside the block, adapter ``name`` (default: the newest) adds nothing: the model below it.

    With a single adapter that is exactly the base model (the DPO reference).
    """
    context = context_of(model)
    if context is None:
        raise ValueError(f"{type(model).__name__} has no attention LoRA adapter")
    name = name or active_name(model)
    previous = context.enabled[name]
    context.enabled[name] = False
    try:
        yield model
    finally:
        context.enabled[name] = previous


def merge(model: nn.Module) -> nn.Module:
    """Always raises: attention LoRA mixes tokens, so no weight matrix can absorb it."""
    raise AdapterMergeError(
        "an ALoRA adapter cannot be merged into the base weights (its attention mixes tokens); "
        "keep it stacked and attach the next adapter on top"
    )
