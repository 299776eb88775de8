"""Training: DPO-family and SFT losses, pair tokenisation and batching, the accelerate trainer."""

from aptune.train.config import TrainConfig, TrainingDivergedError, TrainResult
from aptune.train.losses import PreferenceLoss, PreferenceLossOutput, SFTLoss
from aptune.train.pairs import PreferencePair, SFTItem
from aptune.train.reference import adapter_disabled, compute_reference_logps
from aptune.train.trainer import reference_logps_for_pairs, train_preference, train_sft

__all__ = [
    "PreferenceLoss",
    "PreferenceLossOutput",
    "PreferencePair",
    "SFTItem",
    "SFTLoss",
    "TrainConfig",
    "TrainResult",
    "TrainingDivergedError",
    "adapter_disabled",
    "compute_reference_logps",
    "reference_logps_for_pairs",
    "train_preference",
    "train_sft",
]
