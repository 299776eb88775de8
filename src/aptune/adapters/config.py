"""The adapter options of a training config: one dataclass for both LoRA and ALoRA.

``kind: lora`` is plain PEFT LoRA; ``kind: alora`` is LoRA with a causal multi-head attention
over the rank-space activations (SPEC-ALORA.md). Every other stage of aptune takes the same
config, so switching a run between the two is one word in the YAML.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

AdapterKind = Literal["lora", "alora"]
LoraInit = Literal["default", "gaussian", "pissa", "olora"]
Combine = Literal["residual", "gated", "replace"]
Placement = Literal["bottleneck", "parallel"]

KINDS: tuple[str, ...] = ("lora", "alora")
COMBINES: tuple[str, ...] = ("residual", "gated", "replace")
INITS: tuple[str, ...] = ("default", "gaussian", "pissa", "olora")
PLACEMENTS: tuple[str, ...] = ("bottleneck", "parallel")


@dataclass(frozen=True)
class AdapterConfig:
    """What adapter to train and where.

    Fields shared by both kinds:
      kind: ``lora`` or ``alora``.
      r: rank of the low-rank path.
      alpha: the update is scaled by ``alpha / r`` (as in LoRA).
      dropout: dropout on the adapter input ``x`` (training only).
      target_modules: ``"all-linear"`` (every ``nn.Linear`` except the output head), a list of
        module-name suffixes such as ``["q_proj", "v_proj"]``, or a regex string matched
        against full module names. Modules are found by name, never by model class.

    PEFT's LoRA variants (LoRA only, except ``use_rslora``):
      use_rslora: scale the update by ``alpha / sqrt(r)`` (rank-stabilised LoRA) instead of
        ``alpha / r``; ALoRA takes it too.
      use_dora: DoRA, the weight decomposed into magnitude and direction, LoRA on the direction.
      init: ``default`` (A random, B zero), ``gaussian``, or ``pissa`` / ``olora``, which start
        the adapter from the weights' principal singular vectors / a QR decomposition (and take
        that part out of the base weights; see ``adapters/api.py`` for what that means for the
        reference and for saving).
      rank_pattern: per-module ranks, ``{name regex or suffix: r}`` (PEFT's ``rank_pattern``).
      modules_to_save: modules trained in full beside the adapter (e.g. ``["lm_head"]``).

    ALoRA only (ignored for LoRA):
      heads: attention heads in rank space; must divide ``r``.
      combine: how the attention output ``ẑ`` joins the LoRA activation ``z``:
        ``residual`` z + ẑ (default; the spec's design), ``gated`` z + g⊙ẑ with a learned
        per-channel gate starting at 0 (training starts as plain LoRA), ``replace`` ẑ alone.
      placement: where the attention sits: ``bottleneck`` attends over ``z = A·x`` itself
        (default); ``parallel`` attends over a second down-projection ``A_attn·x`` beside the
        LoRA path (costs another ``r·d_in`` per layer, keeps the LoRA path untouched).
    """

    kind: AdapterKind = "lora"
    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: str | tuple[str, ...] = "all-linear"
    heads: int = 2
    combine: Combine = "residual"
    placement: Placement = "bottleneck"
    use_rslora: bool = False
    use_dora: bool = False
    init: LoraInit = "default"
    rank_pattern: dict[str, int] | None = None
    modules_to_save: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.target_modules, list):
            object.__setattr__(self, "target_modules", tuple(self.target_modules))
        if isinstance(self.modules_to_save, list):
            object.__setattr__(self, "modules_to_save", tuple(self.modules_to_save))
        self.validate()

    def validate(self) -> None:
        """Raise ValueError with a one-line message naming the bad field."""
        if self.kind not in KINDS:
            raise ValueError(f"adapter.kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if not isinstance(self.r, int) or isinstance(self.r, bool) or self.r <= 0:
            raise ValueError(f"adapter.r must be a positive integer, not {self.r!r}")
        if not isinstance(self.alpha, (int, float)) or self.alpha <= 0:
            raise ValueError(f"adapter.alpha must be a positive number, not {self.alpha!r}")
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"adapter.dropout must be in [0, 1), not {self.dropout!r}")
        targets = self.target_modules
        if isinstance(targets, tuple):
            if not targets or not all(isinstance(t, str) and t for t in targets):
                raise ValueError("adapter.target_modules must be 'all-linear', a regex, or a non-empty list of names")
        elif not isinstance(targets, str) or not targets:
            raise ValueError("adapter.target_modules must be 'all-linear', a regex, or a non-empty list of names")
        if self.init not in INITS:
            raise ValueError(f"adapter.init must be one of {', '.join(INITS)}, not {self.init!r}")
        if self.rank_pattern is not None and not all(
                isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v > 0
                for k, v in self.rank_pattern.items()):
            raise ValueError("adapter.rank_pattern maps module names to positive integer ranks")
        if not all(isinstance(m, str) and m for m in self.modules_to_save):
            raise ValueError("adapter.modules_to_save is a list of module names")
        if self.kind == "alora":
            lora_only = [name for name, on in (("use_dora", self.use_dora), ("init", self.init != "default"),
                                               ("rank_pattern", bool(self.rank_pattern)),
                                               ("modules_to_save", bool(self.modules_to_save))) if on]
            if lora_only:
                raise ValueError(f"adapter.{lora_only[0]} is a PEFT LoRA option; ALoRA (its own adapter) takes "
                                 "use_rslora but not DoRA, PiSSA/OLoRA init, per-module ranks or modules_to_save")
            if not isinstance(self.heads, int) or self.heads <= 0 or self.r % self.heads:
                raise ValueError(f"adapter.heads must be a positive divisor of r={self.r}, not {self.heads!r}")
            if self.combine not in COMBINES:
                raise ValueError(f"adapter.combine must be one of {', '.join(COMBINES)}, not {self.combine!r}")
            if self.placement not in PLACEMENTS:
                raise ValueError(
                    f"adapter.placement must be one of {', '.join(PLACEMENTS)}, not {self.placement!r}"
                )

    @property
    def scaling(self) -> float:
        """The factor applied to the adapter's output: alpha / r (alpha / sqrt(r) with rsLoRA)."""
        return float(self.alpha) / (self.r ** 0.5 if self.use_rslora else self.r)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (lists, not tuples)."""
        data = dataclasses.asdict(self)
        if isinstance(self.target_modules, tuple):
            data["target_modules"] = list(self.target_modules)
        data["modules_to_save"] = list(self.modules_to_save)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AdapterConfig:
        """Build from a YAML/JSON mapping; an unknown key is a one-line error naming it.

        Accepts ``adapter: alora`` style shorthands via ``kind``; the other keys are the fields.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"adapter: unknown option {unknown[0]!r} (known: {', '.join(sorted(known))})")
        return cls(**dict(data))
