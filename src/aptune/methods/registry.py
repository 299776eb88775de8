"""The table of methods: one entry per method kind, read by compare, the config checks and the CLI.

An entry names the run class that implements the method (a :class:`aptune.run.driver.Run`
subclass in its own module), the RunConfig overrides its kind applies (the preset: adapter
kind, number of rounds), and one line saying what it is. The compare config's ``methods:``
entries pick kinds from here. Adding a method is one new module and one line in ``METHODS``
(or :func:`register_method` from outside the package).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aptune.config import RunConfig
from aptune.config_loader import deep_merge
from aptune.methods.apt import APTRun
from aptune.methods.base import BaseRun
from aptune.methods.dpo_all import DPOAllRun
from aptune.methods.pairs_data import PairsDataRun
from aptune.methods.sft import ReplayConfig, SFTRun, check_replay
from aptune.run.driver import Run

#: builds the run object of one (method, seed): (run config with the method's overrides, folder, spec, progress)
RunFactory = Callable[[RunConfig, Path, "MethodSpec", bool], Run]
#: checks the method's own settings against its run config; raises ValueError with one line
SpecCheck = Callable[[RunConfig, "MethodSpec"], None]


@dataclass(frozen=True)
class Method:
    """One row of the table: a method kind and how to run it."""

    kind: str  # the name compare configs use (``methods: [sft-lora, apt-lora]``)
    about: str  # one line for `aptune methods` and the docs
    make: RunFactory
    preset: dict[str, Any] = field(default_factory=dict)
    check: SpecCheck | None = None
    trains: bool = True  # False: the method only evaluates the starting model (its round 0 is shared first)


def _plain(cls: type[Run]) -> RunFactory:
    return lambda cfg, root, spec, progress: cls(cfg, root, progress=progress)


def _sft_with_replay(cfg: RunConfig, root: Path, spec: MethodSpec, progress: bool) -> Run:
    return SFTRun(cfg, root, replay=spec.replay, progress=progress)


def _check_replay(cfg: RunConfig, spec: MethodSpec) -> None:
    check_replay(cfg, spec.replay)


_LORA = {"adapter": {"kind": "lora"}}
_ONE_ROUND = {"rounds": {"max_rounds": 1}}
# ALoRA mixes tokens, so it cannot merge: one adapter trained on across rounds, reference = original
_ALORA = {"adapter": {"kind": "alora"}, "rounds": {"between": "stack", "reference": "original"}}
_ALORA_ONE_ROUND = {"adapter": {"kind": "alora"}, "rounds": {"max_rounds": 1, "between": "stack", "reference": "original"}}

#: Baselines train one round: SFT on the whole pool, or DPO on every item; a second round of
#: either would repeat the same data.
METHODS: dict[str, Method] = {m.kind: m for m in (
    Method("base", "the starting model, untrained (round 0 evaluated, no rounds)", _plain(BaseRun), trains=False),
    Method("sft-lora", "SFT (token-mean NLL of the gold answer) with LoRA on the whole domain pool",
           _plain(SFTRun), {**_LORA, **_ONE_ROUND}),
    Method("sft-lora+replay", "sft-lora with general-task train-split items mixed in (replay:)",
           _sft_with_replay, {**_LORA, **_ONE_ROUND}, _check_replay),
    Method("sft-alora", "sft-lora with an ALoRA adapter", _plain(SFTRun), _ALORA_ONE_ROUND),
    Method("dpo-all", "DPO+NLL on every pool item: rejected = the model's own answer when wrong, else its "
           "most likely wrong option (APT without weakness selection or retrieval)", _plain(DPOAllRun),
           {**_LORA, **_ONE_ROUND}),
    Method("dpo-pairs", "DPO+NLL with LoRA on the user's own preference pairs (pool rows with prompt, chosen and "
           "rejected; no mining)", _plain(PairsDataRun), {**_LORA, **_ONE_ROUND}),
    Method("apt-lora", "APT with LoRA, merged between rounds", _plain(APTRun), _LORA),
    Method("apt-alora", "APT with ALoRA, one adapter stacked across rounds, reference = original",
           _plain(APTRun), _ALORA),
    Method("apt-orpo", "apt-lora trained with ORPO (odds ratio + NLL, no reference model: no reference pass)",
           _plain(APTRun), {**_LORA, "train": {"loss": "orpo", "nll_weight": 1.0}}),
    Method("apt-simpo", "apt-lora trained with SimPO (length-normalised margin, no reference model)",
           _plain(APTRun), {**_LORA, "train": {"loss": "simpo", "beta": 2.0, "simpo_gamma": 0.5}}),
    Method("apt-kto", "apt-lora trained with KTO (unpaired: gold answers desirable, the model's own wrong "
           "answers undesirable) + NLL", _plain(APTRun), {**_LORA, "train": {"loss": "kto"}}),
    Method("dpo-all-kto", "dpo-all's examples trained with KTO + NLL", _plain(DPOAllRun),
           {**_LORA, **_ONE_ROUND, "train": {"loss": "kto"}}),
)}


def register_method(method: Method) -> None:
    """Add a method kind (e.g. from a plug-in or a test); a kind already in the table is refused."""
    if method.kind in METHODS:
        raise ValueError(f"method {method.kind!r} is already registered")
    METHODS[method.kind] = method


def get_method(kind: str) -> Method:
    try:
        return METHODS[kind]
    except KeyError:
        raise ValueError(f"unknown method {kind!r} (known: {', '.join(METHODS)})") from None


def make_run(spec: MethodSpec, cfg: RunConfig, root: str | Path, *, progress: bool = True) -> Run:
    """The run object of one method (``cfg`` already carries the method's overrides)."""
    method = get_method(spec.kind)
    if method.check is not None:
        method.check(cfg, spec)
    return method.make(cfg, Path(root), spec, progress)


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


@dataclass
class MethodSpec:
    """One method of a comparison: ``kind`` plus optional ``name`` and RunConfig ``overrides``."""

    kind: str  # a key of aptune.methods.registry.METHODS
    name: str | None = None  # label and run-directory name; default: the kind
    overrides: dict[str, Any] = field(default_factory=dict)  # RunConfig keys, merged section by section
    replay: ReplayConfig = field(default_factory=ReplayConfig)  # sft-lora+replay only

    def __post_init__(self) -> None:
        get_method(self.kind)  # an unknown kind is a one-line error naming the known ones
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


def method_overrides(spec: MethodSpec) -> dict[str, Any]:
    """The kind's preset with the method's own overrides on top."""
    return deep_merge(get_method(spec.kind).preset, spec.overrides)


