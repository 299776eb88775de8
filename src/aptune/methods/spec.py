"""What a method is: a kind (one of the baselines or APT), a name, and RunConfig overrides.

A method never copies the APT loop. Its kind picks (1) a preset of RunConfig overrides
(adapter kind, rounds) and (2) a small subclass of ``APTRun`` that changes how a round's
training set is built (``aptune.methods.runs``). Everything else — model, data, prompt format,
evaluation, learning rate, batch, seed, run directory, resume, report — is the shared run's.

The kinds:

==================  ==========================================================================
``base``            the starting model, untrained (round 0 evaluated, no rounds)
``sft-lora``        SFT (token-mean NLL of the gold answer) with LoRA on the whole domain pool
``sft-lora+replay`` the same, with general-task TRAIN-split items mixed in (``replay``)
``sft-alora``       ``sft-lora`` with an ALoRA adapter
``dpo-all``         DPO+NLL on every pool item: rejected = the model's own answer when wrong,
                    else the wrong option it finds most likely (APT without weakness
                    selection or retrieval; close to SPIN)
``apt-lora``        APT (SPEC-APT.md) with LoRA, merged between rounds
``apt-alora``       APT with ALoRA, one adapter stacked across rounds, reference = original
==================  ==========================================================================

A compare config's ``versus:`` entries name pairs of methods as ``A:B`` (``parse_pair``), for
the report's head-to-head table (``aptune.report.compare_versus``).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

MethodKind = Literal["base", "sft-lora", "sft-lora+replay", "sft-alora", "dpo-all", "apt-lora", "apt-alora"]
METHOD_KINDS: tuple[str, ...] = ("base", "sft-lora", "sft-lora+replay", "sft-alora", "dpo-all", "apt-lora", "apt-alora")
T = TypeVar("T")

_ALORA = {"adapter": {"kind": "alora"}, "rounds": {"between": "stack", "reference": "original"}}
_LORA = {"adapter": {"kind": "lora"}}
_ONE_ROUND = {"rounds": {"max_rounds": 1}}

#: RunConfig overrides each kind applies on top of the compare config's ``base`` section
#: (and under the method's own ``overrides``). Baselines train one round: SFT on the whole
#: pool, or DPO on every item; a second round of either would repeat the same data.
PRESETS: dict[str, dict[str, Any]] = {
    "base": {},
    "sft-lora": {**_LORA, **_ONE_ROUND},
    "sft-lora+replay": {**_LORA, **_ONE_ROUND},
    "sft-alora": {"adapter": {"kind": "alora"}, "rounds": {"max_rounds": 1, "between": "stack", "reference": "original"}},
    "dpo-all": {**_LORA, **_ONE_ROUND},
    "apt-lora": _LORA,
    "apt-alora": _ALORA,
}

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


@dataclass
class ReplayConfig:
    """General data mixed into SFT (``sft-lora+replay``): ``ratio`` general items per domain item.

    Items come from ``split`` (default train) of ``tasks`` (default: the run's general_eval
    tasks), so they never overlap the general evaluation, which reads another split.
    """

    tasks: list[str] | None = None
    split: str = "train"
    ratio: float = 0.25

    def __post_init__(self) -> None:
        if self.ratio < 0:
            raise ValueError(f"replay.ratio must be >= 0, not {self.ratio}")
        if self.split not in ("train", "dev", "test"):
            raise ValueError(f"replay.split must be train, dev or test, not {self.split!r}")


@dataclass
class MethodSpec:
    """One method of a comparison: ``kind`` plus optional ``name`` and RunConfig ``overrides``."""

    kind: MethodKind
    name: str | None = None  # label and run-directory name; default: the kind
    overrides: dict[str, Any] = field(default_factory=dict)  # RunConfig keys, merged section by section
    replay: ReplayConfig = field(default_factory=ReplayConfig)  # sft-lora+replay only

    def __post_init__(self) -> None:
        if self.kind not in METHOD_KINDS:
            raise ValueError(f"unknown method {self.kind!r} (known: {', '.join(METHOD_KINDS)})")
        if self.name is None:
            self.name = self.kind
        if not _NAME.match(self.name):
            raise ValueError(f"method name {self.name!r} must be letters, digits and _.+- (it names a folder)")

    @property
    def label(self) -> str:
        return self.name or self.kind

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.label, "overrides": copy.deepcopy(self.overrides),
                "replay": {"tasks": self.replay.tasks, "split": self.replay.split, "ratio": self.replay.ratio}}


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``override`` applied: mappings merge key by key, anything else replaces."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def method_overrides(spec: MethodSpec) -> dict[str, Any]:
    """The kind's preset with the method's own overrides on top."""
    return deep_merge(PRESETS[spec.kind], spec.overrides)


def chosen_methods(names: Sequence[str], wanted: Collection[str] | None, where: object) -> list[str]:
    """``names`` (in their order) restricted to ``wanted`` (``--methods``; None = all of them);
    a name ``where`` does not have is a one-line error."""
    return _restrict(names, wanted, lambda name: (
        f"--methods: {name!r} is not a method of {where} (its methods: {', '.join(names)})"))


def chosen_seeds(seeds: Sequence[int], wanted: Collection[int] | None, where: object) -> list[int]:
    """``seeds`` (in their order) restricted to ``wanted`` (``--seeds``; None = all of them);
    a seed ``where`` does not have is a one-line error."""
    return _restrict(seeds, wanted, lambda seed: f"--seeds: seed {seed} is not in {where}'s seeds {list(seeds)}")


def _restrict(items: Sequence[T], wanted: Collection[T] | None, stray_error: Callable[[T], str]) -> list[T]:
    """``items`` in their order, only those in ``wanted`` (None = all); the first wanted value
    ``items`` lacks (in sorted order) raises ``ValueError(stray_error(value))``."""
    strays = sorted(set(wanted or ()) - set(items))
    if strays:
        raise ValueError(stray_error(strays[0]))
    return [x for x in items if wanted is None or x in wanted]


def parse_pair(text: str) -> tuple[str, str]:
    """``"A:B"`` -> ``("A", "B")``; method names cannot hold ``:`` (they name folders)."""
    parts = [p.strip() for p in text.split(":")]
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"versus: expected METHOD:METHOD (e.g. apt-lora:sft-lora), got {text!r}")
    if parts[0] == parts[1]:
        raise ValueError(f"versus: {text!r} sets a method against itself")
    return parts[0], parts[1]


def check_pairs(pairs: Iterable[str], methods: Sequence[str], where: object) -> None:
    """Every ``A:B`` parses and names two of ``methods``; otherwise a one-line ``ValueError``."""
    for text in pairs:
        for name in parse_pair(text):
            if name not in methods:
                raise ValueError(f"versus: {name!r} (in {text!r}) is not a method of {where} "
                                 f"(its methods: {', '.join(methods)})")
