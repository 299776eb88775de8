"""Training: DPO-family, KTO and SFT losses, pair tokenisation and batching, the accelerate trainer.

The names below load on first use (PEP 562): ``aptune.train.config`` is read by the run schema,
which the command line imports to build its options, and importing the trainer (accelerate,
peft, transformers) there would add seconds to ``aptune --help``.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "TrainConfig": "config", "TrainingDivergedError": "config", "TrainResult": "config",
    "PreferenceLoss": "losses", "PreferenceLossOutput": "losses", "SFTLoss": "losses", "KTOLoss": "losses",
    "KTOExample": "kto",
    "PreferencePair": "pairs", "SFTItem": "pairs",
    "adapter_disabled": "reference", "compute_reference_logps": "reference",
    "reference_logps_for_pairs": "trainer", "train_preference": "trainer", "train_sft": "trainer",
    "train_kto": "trainer",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'aptune.train' has no attribute {name!r}")
    return getattr(importlib.import_module(f"aptune.train.{_WHERE[name]}"), name)
