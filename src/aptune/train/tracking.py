"""Experiment trackers beside the JSONL log, through accelerate's own tracker classes.

``train_metrics.jsonl`` is always written (the report is drawn from it); ``tracking:`` adds one
of accelerate's trackers — ``tensorboard`` (event files under ``<out_dir>/tracking``),
``wandb`` or ``mlflow`` — fed the same rows on the main process. wandb runs offline unless
``WANDB_MODE`` says otherwise, and mlflow writes to a local store under ``<out_dir>/tracking``
unless ``MLFLOW_TRACKING_URI`` is set, so neither needs a server. Each is an optional extra
(``aptune[tensorboard]``, ``[wandb]``, ``[mlflow]``); a missing one is a one-line error before
training starts.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any, Literal

Tracking = Literal["jsonl", "tensorboard", "wandb", "mlflow"]
TRACKERS: tuple[str, ...] = ("jsonl", "tensorboard", "wandb", "mlflow")
#: the package each tracker needs
_NEEDS = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",), "mlflow": ("mlflow",)}


def check_tracking(kind: str) -> None:
    """Refuse an unknown tracker, or one whose package is not installed, in one line."""
    if kind not in TRACKERS:
        raise ValueError(f"tracking must be one of {', '.join(TRACKERS)}, not {kind!r}")
    needs = _NEEDS.get(kind, ())
    if needs and not any(importlib.util.find_spec(p) for p in needs):
        raise ValueError(f"tracking: {kind} needs the {needs[0]} package: pip install 'aptune[{kind}]'")


def open_tracker(kind: str, out_dir: Path, run_name: str, config: dict[str, Any]) -> Any | None:
    """A started accelerate tracker with the run's config stored, or None for ``jsonl``."""
    if kind == "jsonl":
        return None
    check_tracking(kind)
    from accelerate import tracking

    folder = out_dir / "tracking"
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "tensorboard":
        tracker = tracking.TensorBoardTracker(run_name, str(folder))
    elif kind == "wandb":
        os.environ.setdefault("WANDB_MODE", "offline")
        tracker = tracking.WandBTracker(run_name, dir=str(folder))
    else:
        os.environ.setdefault("MLFLOW_TRACKING_URI", (folder / "mlruns").resolve().as_uri())
        tracker = tracking.MLflowTracker(experiment_name="aptune", run_name=run_name)
    tracker.start()
    tracker.store_init_configuration({k: v for k, v in config.items() if isinstance(v, (int, float, str, bool))})
    return tracker


def log_row(tracker: Any | None, row: dict[str, Any]) -> None:
    """One JSONL row's numbers, at its optimizer step."""
    if tracker is None:
        return
    values = {k: v for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "step"}
    tracker.log(values, step=int(row["step"]))
