"""One adapter API for the trainer, the round loop and the CLI, whatever the adapter kind.

LoRA comes from PEFT (``get_peft_model``, ``disable_adapter``, ``save_pretrained``,
``PeftModel.from_pretrained``, ``merge_and_unload``); ALoRA is aptune's own
(``adapters.attention_lora``). Callers never branch on the kind themselves.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from torch import nn

from aptune.adapters.attention_lora import io as attn_io
from aptune.adapters.attention_lora import model as attn_model
from aptune.adapters.attention_lora.model import AdapterMergeError
from aptune.adapters.config import AdapterConfig

log = logging.getLogger(__name__)

PEFT_CONFIG_NAME = "adapter_config.json"
#: LoRA inits that move part of each weight into the adapter: W = W_res + B0 A0, so the base
#: weights under the adapter are no longer the model's own
DECOMPOSING = ("pissa", "olora")


def _keep_initial_adapter(model: nn.Module, name: str) -> None:
    """Save a PiSSA/OLoRA adapter's initial state beside the model (a temporary folder that
    lives as long as the model), so that ``save_adapter`` can write the trained adapter as a
    plain LoRA on the *original* weights (PEFT's ``path_initial_model_for_weight_conversion``:
    rank 2r, loadable on a freshly loaded base like any other round's adapter)."""
    import tempfile

    folder = tempfile.TemporaryDirectory(prefix="aptune-lora-init-")
    config = model.peft_config[name]
    init = config.init_lora_weights
    config.init_lora_weights = True  # PEFT's recipe: the saved initial state must load as-is
    with _peft_deprecations_silenced(), warnings.catch_warnings():
        # PEFT warns that this initial state needs converting: save_adapter does exactly that
        warnings.filterwarnings("ignore", message=".*changes the base weights of the model", category=UserWarning)
        model.save_pretrained(folder.name, safe_serialization=True)
    config.init_lora_weights = init
    model._aptune_initial_adapter = folder  # noqa: SLF001 - kept alive with the model


@contextlib.contextmanager
def _peft_deprecations_silenced() -> Iterator[None]:
    """PEFT 0.21 reads ``model.is_gradient_checkpointing``, which transformers 5 deprecates with
    a FutureWarning on every attach and load; the user cannot act on it, so it is hidden here
    (that one message only)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        yield


def _is_peft(model: nn.Module) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)


def adapter_kind(model: nn.Module) -> Literal["lora", "alora"] | None:
    """Which adapter ``model`` carries: "lora" (PEFT), "alora" (attention LoRA) or None."""
    if _is_peft(model):
        return "lora"
    if attn_model.adapter_configs(model):
        return "alora"
    return None


def attach_adapter(model: nn.Module, cfg: AdapterConfig, name: str = "default") -> nn.Module:
    """Return ``model`` with a fresh adapter whose parameters are the only trainable ones.

    LoRA returns a ``PeftModel`` wrapping ``model``; ALoRA modifies ``model`` in place and
    returns it (stacking on a previous ALoRA adapter if there is one). A fresh adapter of
    either kind leaves the outputs exactly the base model's (B = 0).
    """
    current = adapter_kind(model)
    if cfg.kind == "lora":
        if current is not None:
            raise ValueError(f"model already carries a {current} adapter; merge it first (ALoRA cannot be merged)")
        from peft import LoraConfig, get_peft_model

        targets = cfg.target_modules if isinstance(cfg.target_modules, str) else list(cfg.target_modules)
        lora = LoraConfig(
            r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=targets, task_type="CAUSAL_LM",
            use_rslora=cfg.use_rslora, use_dora=cfg.use_dora, rank_pattern=dict(cfg.rank_pattern or {}),
            modules_to_save=list(cfg.modules_to_save) or None,
            init_lora_weights={"default": True, "gaussian": "gaussian", "pissa": "pissa", "olora": "olora"}[cfg.init],
        )
        with _peft_deprecations_silenced():
            peft_model = get_peft_model(model, lora, adapter_name=name)
        if cfg.init in DECOMPOSING:
            _keep_initial_adapter(peft_model, name)
        return peft_model
    if current == "lora":
        raise ValueError("model carries an unmerged LoRA adapter; merge_adapter() it before attaching ALoRA")
    return attn_model.attach(model, cfg, name)


@contextlib.contextmanager
def disabled_adapter(model: nn.Module) -> Iterator[nn.Module]:
    """Inside the block the newest adapter adds nothing: exactly the model it was attached to."""
    kind = adapter_kind(model)
    if kind == "lora":
        with model.disable_adapter():
            yield model
    elif kind == "alora":
        with attn_model.disabled(model):
            yield model
    else:
        raise ValueError(f"{type(model).__name__} carries no adapter to disable")


def save_adapter(model: nn.Module, folder: str | os.PathLike, state_dict: dict[str, Any] | None = None) -> Path:
    """Write the adapter (safetensors + config) to ``folder``; the base weights are not saved.

    ``state_dict``: the model's full state gathered from its shards (FSDP, DeepSpeed:
    ``accelerator.get_state_dict``), whose adapter tensors are saved instead of the parameters
    this process holds (which are then only its shard)."""
    kind = adapter_kind(model)
    if kind == "lora":
        initial = getattr(model, "_aptune_initial_adapter", None)
        convert = {"path_initial_model_for_weight_conversion": initial.name} if initial is not None else {}
        with _peft_deprecations_silenced(), warnings.catch_warnings():
            # the conversion loads the initial state beside the trained one, and PEFT warns
            # against combining PiSSA/OLoRA with other adapters: that pairing is the conversion
            warnings.filterwarnings("ignore", message=".*changes the base weights of the model", category=UserWarning)
            model.save_pretrained(str(folder), safe_serialization=True, state_dict=state_dict, **convert)
        return Path(folder)
    if kind == "alora":
        return attn_io.save(model, folder, state_dict=state_dict)
    raise ValueError(f"{type(model).__name__} carries no adapter to save")


def load_adapter(base_model: nn.Module, folder: str | os.PathLike, trainable: bool = False) -> nn.Module:
    """Load a saved adapter of either kind onto a freshly loaded base model.

    ``trainable=True`` is for resuming training (the adapter's parameters require grad).
    """
    folder = Path(folder)
    if attn_io.is_attn_lora_folder(folder):
        return attn_io.load(base_model, folder, trainable=trainable)
    if (folder / PEFT_CONFIG_NAME).exists():
        from peft import PeftModel

        with _peft_deprecations_silenced():
            return PeftModel.from_pretrained(base_model, str(folder), is_trainable=trainable)
    raise ValueError(f"{folder}: no adapter found (expected {attn_io.CONFIG_NAME} or {PEFT_CONFIG_NAME})")


def apply_adapters(base_model: nn.Module, folders: Sequence[str | os.PathLike]) -> nn.Module:
    """Rebuild a trained model from its base and saved adapters, in training order.

    Each adapter but the last is merged into the weights first (the ``between: merge`` rounds
    of a run); the last stays attached, so an ALoRA adapter (never mergeable) can be last."""
    model = base_model
    for i, folder in enumerate(folders):
        model = load_adapter(model, folder)
        if i < len(folders) - 1:
            model = merge_adapter(model)
    return model


def merge_adapter(model: nn.Module) -> nn.Module:
    """Fold a LoRA adapter into the base weights and return the plain base model.

    ALoRA raises AdapterMergeError: its attention mixes tokens, so no weight can absorb it;
    the round loop keeps it stacked and attaches the next adapter on top instead.
    """
    kind = adapter_kind(model)
    if kind == "lora":
        return model.merge_and_unload()
    if kind == "alora":
        return attn_model.merge(model)
    raise ValueError(f"{type(model).__name__} carries no adapter to merge")


def trainable_parameter_count(model: nn.Module) -> int:
    """Number of parameters that require grad (the adapter's, after attach_adapter)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = [
    "AdapterConfig",
    "AdapterMergeError",
    "adapter_kind",
    "attach_adapter",
    "disabled_adapter",
    "load_adapter",
    "merge_adapter",
    "save_adapter",
    "trainable_parameter_count",
]
