"""Per-call state shared by all attention-LoRA layers of one model: mask, positions, cache.

An adapted ``nn.Linear`` only sees its input ``x``; the rank-space attention also needs to
know which positions are padding, where packed sequences start, and (during cached
generation) the rank-space keys/values of earlier tokens. A forward pre-hook on the model's
decoder records the call's ``attention_mask``/``position_ids`` here before any layer runs, and
a forward post-hook keeps or drops the layers' new keys/values depending on whether the call
returned a KV cache. Continuation is recognised by identity of the ``past_key_values`` object
the previous call returned (``generate`` passes the same object every step), so a new call
with a fresh cache always starts clean.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import weakref
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)

KV = tuple[torch.Tensor, torch.Tensor]


class AttnLoraCacheError(RuntimeError):
    """A cached call whose past does not match what the adapter's own cache holds."""


@dataclass
class CallState:
    """What the layers of one forward call need: sizes, masks and the past keys/values."""

    batch: int
    new_len: int
    past_len: int = 0
    key_mask: torch.Tensor | None = None  # (batch, past_len + new_len) bool, True = real token
    segments: torch.Tensor | None = None  # (batch, new_len) packed-sequence ids, or None
    full_mask: torch.Tensor | None = None  # (batch|1, 1, new_len, past_len + new_len) bool: the caller's 4-D mask
    past: dict[str, KV] = field(default_factory=dict)
    present: dict[str, KV] = field(default_factory=dict)
    _mask: torch.Tensor | None = None
    _mask_done: bool = False

    def attention_mask(self, device: torch.device) -> torch.Tensor | None:
        """Boolean (batch|1, 1, new_len, past_len+new_len) mask, True = may attend; None = plain causal.

        Built once per call and shared by every adapted layer. A query always may attend to
        itself, so padded rows never become all-masked (which would give NaN); their outputs
        are ignored downstream anyway.
        """
        if self._mask_done:
            return self._mask
        self._mask_done = True
        total = self.past_len + self.new_len
        q_pos = torch.arange(self.past_len, total, device=device)
        k_pos = torch.arange(total, device=device)
        if self.full_mask is not None:  # the caller said exactly who sees whom (e.g. packed MC scoring)
            self._mask = self.full_mask.to(device) | (k_pos[None, :] == q_pos[:, None])[None, None]
            return self._mask
        if self.key_mask is None and self.segments is None:
            if self.past_len == 0 or self.new_len == 1:
                self._mask = None  # causal without past (is_causal) or one query seeing all keys
                return None
        allowed = (k_pos[None, :] <= q_pos[:, None])[None]  # (1, T, Tk)
        if self.key_mask is not None:
            allowed = allowed & self.key_mask.to(device)[:, None, :]
        if self.segments is not None:  # packed sequences: no attention across a boundary
            seg = self.segments.to(device)
            allowed = allowed & (seg[:, :, None] == seg[:, None, :])
        allowed = allowed | (k_pos[None, :] == q_pos[:, None])[None]
        self._mask = allowed[:, None]
        return self._mask


def _first_present(call: dict[str, Any], *names: str) -> Any:
    """The first of ``names`` the call passed with a value (arguments renamed across versions)."""
    return next((call[n] for n in names if call.get(n) is not None), None)


def _output_cache(output: Any) -> Any:
    """The KV cache a forward returned, read under the name its output class declares.

    transformers >= 5.24 calls the field ``cache`` and keeps ``past_key_values`` as an alias that
    logs a deprecation warning on every read; older versions have only ``past_key_values``.
    """
    fields = getattr(output, "__dataclass_fields__", None) or {}
    name = "past_key_values" if "past_key_values" in fields and "cache" not in fields else "cache"
    return getattr(output, name, None)


def _allowed(mask: torch.Tensor) -> torch.Tensor:
    """A 4-D attention mask as booleans (True = may attend): boolean masks as they are, additive
    float masks (0 where allowed, a large negative number or -inf where not) by their sign."""
    if mask.dtype == torch.bool:
        return mask
    return mask > torch.finfo(mask.dtype).min / 2


def _packed_segments(position_ids: torch.Tensor | None, batch: int, new_len: int) -> torch.Tensor | None:
    """Segment ids where position_ids restart (packed sequences), or None for one sequence per row."""
    if position_ids is None or position_ids.dim() != 2 or new_len < 2:
        return None
    pos = position_ids.expand(batch, new_len) if position_ids.shape[0] == 1 else position_ids
    restarts = pos[:, 1:] != pos[:, :-1] + 1
    if not bool(restarts.any()):
        return None
    first = torch.zeros(batch, 1, dtype=torch.long, device=pos.device)
    return torch.cumsum(torch.cat([first, restarts.long()], dim=1), dim=1)


class CallContext:
    """Owns the per-call state and the adapter's own rank-space KV cache for one model."""

    def __init__(self) -> None:
        self.state: CallState | None = None
        self.enabled: dict[str, bool] = {}  # adapter name -> enabled
        self._cache: dict[str, KV] = {}
        self._cached_len = 0
        self._owner: weakref.ReferenceType | None = None
        self._signature: inspect.Signature | None = None
        self._handles: list[Any] = []

    # --- hooks -------------------------------------------------------------------------
    def install(self, decoder: nn.Module) -> None:
        """Register the pre/post hooks on the module that receives attention_mask and the cache."""
        self._signature = inspect.signature(decoder.forward)
        self._handles.append(decoder.register_forward_pre_hook(self._pre_hook, with_kwargs=True))
        self._handles.append(decoder.register_forward_hook(self._post_hook, with_kwargs=True))

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self.reset()

    def reset(self) -> None:
        """Forget the rank-space cache (a new generation starts from scratch)."""
        self._cache = {}
        self._cached_len = 0
        self._owner = None

    def _bind(self, args: tuple, kwargs: dict) -> dict[str, Any]:
        assert self._signature is not None
        try:
            bound = self._signature.bind_partial(*args, **kwargs)
        except TypeError:
            return dict(kwargs)
        call = dict(bound.arguments)
        for param in self._signature.parameters.values():  # names that landed in **kwargs
            if param.kind is param.VAR_KEYWORD:
                call.update(call.pop(param.name, {}))
        return call

    def _pre_hook(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        if not any(self.enabled.values()):
            return  # adapters disabled (e.g. the DPO reference pass): leave state for backward
        call = self._bind(args, kwargs)
        ids, embeds = call.get("input_ids"), call.get("inputs_embeds")
        ref = ids if ids is not None else embeds
        if ref is None:
            raise AttnLoraCacheError("attention LoRA needs input_ids or inputs_embeds in the forward call")
        batch, new_len = int(ref.shape[0]), int(ref.shape[1])
        mask = call.get("attention_mask")
        if mask is not None and mask.dim() not in (2, 4):
            raise AttnLoraCacheError(
                "attention LoRA needs a 2-D (batch, length) or 4-D (batch, 1, queries, keys) attention_mask, "
                f"got shape {tuple(mask.shape)}"
            )
        past_kv = _first_present(call, "cache", "past_key_values")  # transformers >= 5.24 names it cache
        past_len, past = self._resolve_past(past_kv, mask, new_len, batch)
        key_mask = full_mask = None
        if mask is not None:
            if mask.shape[-1] != past_len + new_len or (mask.dim() == 4 and mask.shape[-2] != new_len):
                raise AttnLoraCacheError(
                    f"attention_mask of shape {tuple(mask.shape)} does not cover the adapter's "
                    f"{past_len} cached + {new_len} new tokens"
                )
            if mask.dim() == 4:
                full_mask = _allowed(mask)
            else:
                key_mask = mask.bool()
                if bool(key_mask.all()):
                    key_mask = None
        segments = None
        if mask is None and past_len == 0:
            segments = _packed_segments(call.get("position_ids"), batch, new_len)
        self.state = CallState(batch, new_len, past_len, key_mask, segments, full_mask, past=past)

    def _resolve_past(
        self, past_kv: Any, mask: torch.Tensor | None, new_len: int, batch: int
    ) -> tuple[int, dict[str, KV]]:
        """Continue the adapter cache when the call continues the previous one; else start clean."""
        owner = self._owner() if self._owner is not None else None
        if past_kv is not None and owner is past_kv and self._cached_len > 0:
            past_len = self._cached_len
            if mask is not None and mask.shape[-1] - new_len < past_len:  # cache was cropped
                past_len = mask.shape[-1] - new_len
                self._cache = {k: (a[:, :, :past_len], b[:, :, :past_len]) for k, (a, b) in self._cache.items()}
            some = next(iter(self._cache.values()), None)
            if some is not None and some[0].shape[0] != batch:
                raise AttnLoraCacheError(f"cached batch {some[0].shape[0]} != call batch {batch}")
            return past_len, self._cache
        seen = 0
        if past_kv is not None and hasattr(past_kv, "get_seq_length"):
            seen = int(past_kv.get_seq_length())
        if seen > 0:
            raise AttnLoraCacheError(
                f"past_key_values holds {seen} tokens this model's attention LoRA did not see; continue "
                "only from the past_key_values returned by the previous call"
            )
        self.reset()
        return 0, {}

    def _follow_reorder(self, past_kv: Any) -> None:
        """Make beam search's ``past_key_values.reorder_cache(beam_idx)`` reorder our cache too."""
        original = getattr(past_kv, "reorder_cache", None)
        if original is None or getattr(original, "_aptune_follows", False):
            return
        context = weakref.ref(self)

        def reorder_cache(beam_idx: torch.Tensor) -> Any:
            result = original(beam_idx)
            owner = context()
            if owner is not None:
                owner._cache = {
                    key: (k.index_select(0, beam_idx.to(k.device)), v.index_select(0, beam_idx.to(v.device)))
                    for key, (k, v) in owner._cache.items()
                }
            return result

        reorder_cache._aptune_follows = True  # type: ignore[attr-defined]
        with contextlib.suppress(AttributeError):
            past_kv.reorder_cache = reorder_cache

    def _post_hook(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        state = self.state
        if state is None or not any(self.enabled.values()):
            return
        past_kv = _output_cache(output)
        if past_kv is None and isinstance(output, tuple) and len(output) > 1:
            past_kv = output[1] if hasattr(output[1], "get_seq_length") else None
        if past_kv is not None:
            self._cache = state.present
            self._cached_len = state.past_len + state.new_len
            self._owner = weakref.ref(past_kv)
            self._follow_reorder(past_kv)
        else:
            self.reset()
        # Keep sizes and masks (gradient-checkpointing recomputation reads them during
        # backward) but drop references to keys/values.
        state.past, state.present = {}, {}
