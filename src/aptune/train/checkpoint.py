"""Mid-training checkpoints: a training call that is interrupted resumes at its last saved step.

The run directory already resumes at the first unfinished *stage*; without this module a stage
killed in its ninth minute of training started again from step 0. Every ``checkpoint_every``
optimizer steps the trainer writes ``out_dir/checkpoint-<step>/``:

- ``state.safetensors``: the trainable (adapter) parameters by name, the optimizer's per-parameter
  tensors (AdamW's moments and step counts) and the torch RNG state(s);
- ``state.json``: the loop's position (epoch and micro-batch), its counters and loss history, the
  scheduler's and optimizer's plain settings, the byte length of ``train_metrics.jsonl`` at that
  step, and a fingerprint of the job.

Safetensors and JSON only: nothing is unpickled on resume. A checkpoint folder is written under
a temporary name and renamed, so a kill mid-write leaves the previous checkpoint in charge; the
previous one is removed once the new one is in place, and all are removed when training ends
(the final adapter supersedes them).

A checkpoint is used only when its fingerprint (the training config, the trainable parameters'
names and shapes, the tokenised data and the number of processes) equals the current call's;
otherwise it is ignored with a warning and training starts from step 0. The batch order is a
pure function of the seed and the epoch, so skipping the micro-batches already consumed and
restoring the weights, optimizer, scheduler and RNG makes the resumed steps the same
computation as an uninterrupted run's (``tests/test_trainer.py`` checks the adapters are equal).

Under several processes the main process writes and every process reads (DDP keeps the
adapter and optimizer replicated); a sharded plan (FSDP, DeepSpeed) would need accelerate's own
``save_state`` and turns checkpoints off with a warning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from aptune.io import write_atomic, write_folder_atomic, write_text_atomic

log = logging.getLogger(__name__)

PREFIX = "checkpoint-"
#: TrainConfig fields that do not change the computation, so a checkpoint survives their change.
NEUTRAL_FIELDS = ("progress", "checkpoint_every", "log_every", "save_adapter", "tracking")


@dataclass
class LoopState:
    """Where the loop stands after an optimizer step: enough to carry on as if never stopped."""

    step: int = 0
    epoch: int = 0
    next_batch: int = 0  # index into this process's micro-batches of ``epoch`` where the next group starts
    examples: int = 0
    tokens: int = 0
    skipped: int = 0
    losses: list[float] = field(default_factory=list)
    margins: list[float] = field(default_factory=list)
    window: list[dict[str, float]] = field(default_factory=list)  # rows not yet written to the metrics file
    elapsed_s: float = 0.0  # the training call's seconds before this point (summed over interruptions)
    train_s: float = 0.0  # of those, seconds inside the optimisation loop (no set-up, no reference pass)
    metrics_bytes: int = 0  # length of train_metrics.jsonl when this state was saved


def fingerprint(cfg: dict[str, Any], params: Sequence[tuple[str, torch.Tensor]], data: Any, world: int) -> str:
    """SHA-256 over what makes two training calls the same job."""
    job = {
        "config": {k: v for k, v in cfg.items() if k not in NEUTRAL_FIELDS},
        "params": [[name, list(p.shape)] for name, p in params],
        "data": data,
        "world": world,
    }
    return hashlib.sha256(json.dumps(job, sort_keys=True, default=str).encode()).hexdigest()


def data_digest(rows: Sequence[Any]) -> str:
    """A digest of tokenised examples (dataclasses of ids and token tuples), in order."""
    h = hashlib.sha256()
    for row in rows:
        h.update(json.dumps(asdict(row), sort_keys=True).encode())
    return h.hexdigest()


def _checkpoints(out_dir: Path) -> list[Path]:
    """Complete checkpoint folders in ``out_dir``, newest (highest step) last."""
    found = []
    for path in out_dir.glob(f"{PREFIX}*"):
        suffix = path.name[len(PREFIX):]
        if path.is_dir() and suffix.isdigit():
            found.append((int(suffix), path))
    return [path for _, path in sorted(found)]


def _tensors(params: Sequence[tuple[str, torch.Tensor]], optim_state: dict[Any, dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Adapter parameters, the optimizer's per-parameter tensors and the RNG state(s), by key."""
    tensors = {f"param.{name}": p.detach().to("cpu").contiguous() for name, p in params}
    for index, state in optim_state.items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{index}.{key}"] = value.detach().to("cpu").contiguous()
    tensors["rng.cpu"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, rng in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = rng
    return tensors


def save_checkpoint(
    out_dir: Path,
    state: LoopState,
    params: Sequence[tuple[str, torch.Tensor]],
    optimizer: Any,
    scheduler: Any,
    job: str,
) -> Path:
    """Write ``checkpoint-<step>`` atomically, then remove the older ones. Main process only."""
    optim = optimizer.state_dict()
    plain_state = {
        str(i): {k: v for k, v in s.items() if not isinstance(v, torch.Tensor)} for i, s in optim["state"].items()
    }
    meta = {
        "fingerprint": job,
        "loop": asdict(state),
        "scheduler": scheduler.state_dict(),
        "optimizer": {"param_groups": optim["param_groups"], "plain_state": plain_state},
    }
    tensors = _tensors(params, optim["state"])

    def write(folder: Path) -> None:  # write_atomic gives each file the umask's mode, as elsewhere
        write_atomic(folder / "state.safetensors", lambda p: save_file(tensors, str(p), metadata={"format": "pt"}))
        write_text_atomic(folder / "state.json", json.dumps(meta, default=_plain))

    target = out_dir / f"{PREFIX}{state.step}"
    if target.exists():  # left by another job (ignored at the start of this one) at the same step
        shutil.rmtree(target)
    write_folder_atomic(target, write)
    for older in _checkpoints(out_dir):
        if older != target:
            shutil.rmtree(older, ignore_errors=True)
    return target


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def load_checkpoint(
    out_dir: Path,
    params: Sequence[tuple[str, torch.Tensor]],
    optimizer: Any,
    scheduler: Any,
    job: str,
) -> LoopState | None:
    """Restore the newest matching checkpoint into params, optimizer, scheduler and RNG.

    Returns the loop state to continue from, or None: no checkpoint, one from another job, or one
    that cannot be read back whole (a damaged or truncated file, a missing tensor, a shape that
    no longer fits). The last case warns and training starts from step 0: a checkpoint only saves
    time, so losing one must never stop a run. Everything is read and checked before anything
    is written into the model or optimizer, so a bad checkpoint leaves them as they were.
    """
    found = _checkpoints(out_dir)
    if not found:
        return None
    folder = found[-1]
    meta_path = folder / "state.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("%s: unreadable (%s); training starts from step 0", meta_path, exc)
        return None
    if meta.get("fingerprint") != job:
        log.warning("%s was written by a different training job (config, data, adapter or process count "
                    "changed); training starts from step 0 and will replace it", folder)
        return None
    try:
        scheduler_state = dict(meta["scheduler"])
        weights, optim_state, loop, rng = _read_state(folder, meta, params)
        optimizer.load_state_dict(optim_state)  # checks the groups against the optimizer's before changing it
    except (OSError, SafetensorError, KeyError, TypeError, ValueError) as exc:
        log.warning("%s: damaged or incomplete (%s: %s); training starts from step 0 and will replace it",
                    folder, type(exc).__name__, exc)
        return None
    scheduler.load_state_dict(scheduler_state)
    with torch.no_grad():
        for (_, p), value in zip(params, weights):
            p.copy_(value)
    torch.set_rng_state(rng["cpu"])
    if rng["cuda"] and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(rng["cuda"])
    log.info("resuming training from %s (step %d, epoch %d)", folder, loop.step, loop.epoch)
    return loop


def _read_state(
    folder: Path, meta: dict[str, Any], params: Sequence[tuple[str, torch.Tensor]],
) -> tuple[list[torch.Tensor], dict[str, Any], LoopState, dict[str, Any]]:
    """Read a checkpoint's tensors and check they fit ``params``, without touching anything.

    Returns the parameter values (in ``params`` order, on their devices), the optimizer state
    dict, the loop state and the RNG states; raises on anything missing or malformed.
    """
    tensors = load_file(str(folder / "state.safetensors"))
    weights = []
    for name, p in params:
        value = tensors[f"param.{name}"]
        if value.shape != p.shape:
            raise ValueError(f"param.{name} has shape {tuple(value.shape)}, the model {tuple(p.shape)}")
        weights.append(value.to(p.device, p.dtype))
    device_of = {i: p.device for i, (_, p) in enumerate(params)}
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value.to(device_of[int(index)])
    for index, plain in meta["optimizer"]["plain_state"].items():
        state.setdefault(int(index), {}).update(plain)
    groups = meta["optimizer"]["param_groups"]
    for group in groups:
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
    cuda = [tensors[k] for k in sorted((k for k in tensors if k.startswith("rng.cuda.")), key=lambda k: int(k[9:]))]
    rng = {"cpu": tensors["rng.cpu"], "cuda": cuda}
    return weights, {"state": state, "param_groups": groups}, LoopState(**meta["loop"]), rng


def clear_checkpoints(out_dir: Path) -> None:
    """Remove every checkpoint folder (training finished; the final adapter supersedes them),
    and any half-written one a kill left under its temporary name."""
    for folder in [*_checkpoints(out_dir), *out_dir.glob(f".{PREFIX}*.partial-*")]:
        shutil.rmtree(folder, ignore_errors=True)
