"""One adapted linear layer: LoRA whose rank-space activation attends to preceding tokens.

    z  = A · dropout(x)                           (rank r)
    ẑ  = O · MHA_causal(Q z, K z, V z)             (h heads, r×r projections, padding masked)
    h  = W0 · x + (alpha / r) · B · combine(z, ẑ)  (combine: z + ẑ | z + g⊙ẑ | ẑ)

B starts at zero, so a fresh adapter is exactly the base model. Parameters are named with the
prefix ``attn_lora_`` (PEFT already uses ``alora`` for its unrelated "Activated LoRA").
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from aptune.adapters.attention_lora.context import CallContext, CallState
from aptune.adapters.config import AdapterConfig

PREFIX = "attn_lora_"


def _as(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``t`` in ``dtype``; a no-op ``.to()`` still costs ~2 µs, and this layer runs per token."""
    return t if t.dtype == dtype else t.to(dtype)


class AttnLoraLinear(nn.Module):
    """Wraps a linear-like module (``in_features``/``out_features``) with an attention LoRA."""

    def __init__(
        self, base_layer: nn.Module, cfg: AdapterConfig, context: CallContext, adapter_name: str, key: str
    ) -> None:
        super().__init__()
        base = base_layer
        while isinstance(base, AttnLoraLinear):  # stacking on a previous adapter
            base = base.base_layer
        d_in, d_out = getattr(base, "in_features", None), getattr(base, "out_features", None)
        if d_in is None or d_out is None:
            raise TypeError(f"{key}: attention LoRA wraps linear layers only, not {type(base).__name__}")
        weight = next(base.parameters())
        r = cfg.r
        self.base_layer = base_layer
        self.in_features, self.out_features = d_in, d_out
        self.r, self.heads, self.scaling = r, cfg.heads, cfg.scaling
        self.combine, self.placement = cfg.combine, cfg.placement
        self.adapter_name, self.key = adapter_name, key
        self.attn_lora_dropout = nn.Dropout(cfg.dropout) if cfg.dropout > 0 else nn.Identity()
        # fp32 whatever the base weights (bf16, fp16, 4-bit): the trained part keeps full
        # precision, as PEFT's LoRA does (its autocast_adapter_dtype); the update is cast to the
        # base output's dtype in forward
        factory = {"device": weight.device, "dtype": torch.float32}
        self.attn_lora_A = nn.Linear(d_in, r, bias=False, **factory)
        self.attn_lora_B = nn.Linear(r, d_out, bias=False, **factory)
        self.attn_lora_qkv = nn.Linear(r, 3 * r, bias=False, **factory)
        self.attn_lora_o = nn.Linear(r, r, bias=False, **factory)
        if cfg.placement == "parallel":
            self.attn_lora_A_attn = nn.Linear(d_in, r, bias=False, **factory)
        if cfg.combine == "gated":
            self.attn_lora_gate = nn.Parameter(torch.zeros(r, **factory))
        nn.init.kaiming_uniform_(self.attn_lora_A.weight, a=math.sqrt(5))  # LoRA's own A init
        nn.init.zeros_(self.attn_lora_B.weight)
        object.__setattr__(self, "_context", context)  # plain attribute: not a submodule

    @property
    def enabled(self) -> bool:
        return self._context.enabled.get(self.adapter_name, False)

    def forward(self, x: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        result = self.base_layer(x, *args, **kwargs)
        if not self.enabled:
            return result
        return result + _as(self.delta(x), result.dtype)

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        """The adapter's additive update (alpha/r)·B·combine(z, ẑ) for input x of shape (B, T, d_in)."""
        if x.dim() != 3:
            raise ValueError(f"{self.key}: attention LoRA needs (batch, seq, features) input, got {tuple(x.shape)}")
        # F.linear on the submodules' weights, not module calls: on the decode path this layer
        # runs once per adapted linear and token, and module-call overhead adds up (docs/alora.md, "Measured cost").
        x = _as(x, self.attn_lora_A.weight.dtype)
        if not isinstance(self.attn_lora_dropout, nn.Identity):
            x = self.attn_lora_dropout(x)
        z = F.linear(x, self.attn_lora_A.weight)
        source = F.linear(x, self.attn_lora_A_attn.weight) if self.placement == "parallel" else z
        attended = self.attend(source)
        if self.combine == "residual":
            mixed = z + attended
        elif self.combine == "gated":
            mixed = z + self.attn_lora_gate * attended
        else:
            mixed = attended
        return F.linear(mixed, self.attn_lora_B.weight) * self.scaling

    def attend(self, source: torch.Tensor) -> torch.Tensor:
        """Causal multi-head attention in rank space, reading/writing the call's rank-space cache."""
        batch, new_len, r = source.shape
        state = self._context.state
        if state is None or state.batch != batch or state.new_len != new_len:
            state = CallState(batch, new_len)  # a bare call (no hooked forward): plain causal
        # The rank-space part is tiny (r×r), so it runs outside autocast in the adapter's own
        # dtype: more precise softmax, and measured faster on CPU than bf16 SDPA at head_dim <= 8.
        source = _as(source, self.attn_lora_qkv.weight.dtype)
        if not torch.is_autocast_enabled(source.device.type):  # no context switch on the fp32 path
            return self._attend(source, state)
        with torch.autocast(device_type=source.device.type, enabled=False):
            return self._attend(source, state)

    def _attend(self, source: torch.Tensor, state: CallState) -> torch.Tensor:
        batch, new_len, r = source.shape
        head_dim = r // self.heads
        qkv = F.linear(source, self.attn_lora_qkv.weight).view(batch, new_len, 3, self.heads, head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, T, head_dim)
        if state.past_len:
            past = state.past.get(self.key)
            if past is None:
                raise RuntimeError(f"{self.key}: no cached rank-space keys for a continued call")
            k = torch.cat([_as(past[0], k.dtype), k], dim=2)
            v = torch.cat([_as(past[1], v.dtype), v], dim=2)
        state.present[self.key] = (k, v)
        mask = state.attention_mask(source.device)
        causal = mask is None and state.past_len == 0 and new_len > 1
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
        return F.linear(out.transpose(1, 2).reshape(batch, new_len, r), self.attn_lora_o.weight)

    def extra_repr(self) -> str:
        return f"r={self.r}, heads={self.heads}, combine={self.combine}, placement={self.placement}"
