"""Train an attached adapter on preference pairs (DPO family + NLL) or SFT items.

One readable loop on ``accelerate.Accelerator``, so the same call runs on one CPU, one GPU or
under ``accelerate launch`` (each process takes every world-size-th batch). Assumptions:

- ``model`` already carries its adapter (PEFT LoRA, or aptune's ALoRA) and only the adapter's
  parameters require grad; the reference is the same model with the adapter disabled
  (``reference_context``), computed once per call before the first step.
- Weights stay fp32; compute runs under bf16 autocast where the hardware has it
  (``precision: auto``).
- Batches group similar lengths and are left-padded so only response positions go through the
  LM head (see ``batching.py``); chosen and rejected share one forward pass.
- A non-finite loss or gradient skips that step and is logged; ``max_nonfinite_steps`` in a row
  raises ``TrainingDivergedError`` after saving the adapter as it was before those steps.
- Every ``checkpoint_every`` steps the loop saves its whole state (``checkpoint.py``); a call
  into an ``out_dir`` that holds a checkpoint of the same job carries on from it.

Outputs in ``out_dir``: ``train_metrics.jsonl`` (one record per ``log_every`` steps),
``train_result.json`` and ``adapter/`` (``save_pretrained``, safetensors).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import resource
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, set_seed
from tqdm.auto import tqdm
from transformers import get_scheduler

from aptune.models import autocast, resolve_precision
from aptune.train.batching import Batch, collate_items, length_grouped_batches, pair_collator
from aptune.train.checkpoint import (
    LoopState,
    clear_checkpoints,
    data_digest,
    fingerprint,
    load_checkpoint,
    save_checkpoint,
)
from aptune.train.config import TrainConfig, TrainingDivergedError, TrainResult, loss_rose, loss_start_end
from aptune.train.logprobs import accepts_logits_to_keep, innermost, response_logps
from aptune.train.losses import PreferenceLoss, SFTLoss
from aptune.train.pairs import PreferencePair, SFTItem, tokenize_items, tokenize_pairs
from aptune.train.reference import ReferenceContext, ReferenceLogps, compute_reference_logps, unwrap

log = logging.getLogger(__name__)

#: Saves the trained adapter into a folder (default: ``aptune.adapters.save_adapter``).
SaveFn = Callable[[Any, Path], None]
#: One micro-batch -> (loss, metrics); runs under autocast with grad enabled.
StepFn = Callable[[Any, Batch], tuple[torch.Tensor, dict[str, float]]]


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def default_save(model: Any, folder: Path) -> None:
    """The adapter alone (LoRA or ALoRA), as safetensors plus its config."""
    from aptune.adapters import save_adapter

    save_adapter(unwrap(model), folder)


@contextlib.contextmanager
def dropout_disabled(model: Any, enabled: bool = True) -> Iterator[None]:
    """Set every dropout probability to 0 for the duration, then restore the originals."""
    saved: list[tuple[torch.nn.Dropout, float]] = []
    if enabled:
        for module in unwrap(model).modules():
            if isinstance(module, torch.nn.Dropout) and module.p > 0:
                saved.append((module, module.p))
                module.p = 0.0
    try:
        yield
    finally:
        for module, p in saved:
            module.p = p


@contextlib.contextmanager
def _checkpointing(model: Any, enabled: bool) -> Iterator[None]:
    """Activation checkpointing (non-reentrant) for the duration, if asked and supported."""
    inner = unwrap(model)
    if not enabled:
        yield
        return
    if not hasattr(inner, "gradient_checkpointing_enable"):
        raise ValueError("gradient_checkpointing requested but the model does not support it")
    inner.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    try:
        yield
    finally:
        inner.gradient_checkpointing_disable()


def _mean(rows: Sequence[dict[str, float]]) -> dict[str, float]:
    keys = rows[0].keys()
    return {k: sum(r[k] for r in rows) / len(rows) for k in keys}


def _checkpoints_supported(accelerator: Accelerator) -> bool:
    """Checkpoints copy replicated tensors; a sharded plan would need accelerate's ``save_state``."""
    if accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED):
        log.warning("checkpoint_every is ignored under %s (sharded state): an interrupted training "
                    "call restarts from step 0", accelerator.distributed_type.value)
        return False
    return True


def _open_metrics(path: Path, keep_bytes: int, main: bool) -> IO[str]:
    """The metrics file, cut back to what a resumed checkpoint had written (fresh when none)."""
    if not main:
        return open(os.devnull, "w")
    if keep_bytes and path.exists() and path.stat().st_size >= keep_bytes:
        os.truncate(path, keep_bytes)  # drop rows logged after the checkpoint: they will be logged again
        return open(path, "a")
    return open(path, "w")


def _train_loop(
    model: Any,
    n_examples: int,
    lengths: Sequence[int],
    make_batch: Callable[[list[int]], Batch],
    step_fn: StepFn,
    cfg: TrainConfig,
    out_dir: Path,
    accelerator: Accelerator,
    save_fn: SaveFn,
    data: str,
    before_training: Callable[[Any], float] | None = None,
) -> TrainResult:
    """The shared optimisation loop; ``data`` is a digest of the examples (for checkpoints);
    ``before_training`` (the reference pass) returns its seconds."""
    start = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    if not params:
        raise ValueError("the model has no trainable parameters; attach an adapter before training")
    n_trainable = sum(p.numel() for p in params)

    world, rank = accelerator.num_processes, accelerator.process_index
    per_epoch = math.ceil(len(lengths) / cfg.batch_size) // world
    if per_epoch < 1:
        raise ValueError(f"{n_examples} examples are too few for batch_size={cfg.batch_size} on {world} processes")
    steps_per_epoch = math.ceil(per_epoch / cfg.grad_accum)
    total_steps = steps_per_epoch * cfg.epochs

    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = get_scheduler(
        cfg.scheduler,
        optimizer,
        num_warmup_steps=round(cfg.warmup_ratio * total_steps),
        num_training_steps=total_steps,
    )
    model, optimizer = accelerator.prepare(model, optimizer)
    reference_s = before_training(model) if before_training else 0.0

    checkpoints = cfg.checkpoint_every > 0 and _checkpoints_supported(accelerator)
    job = fingerprint(cfg.to_dict(), named, data, world)
    resumed = load_checkpoint(out_dir, named, optimizer, scheduler, job) if checkpoints else None
    loop = resumed or LoopState()
    start -= loop.elapsed_s

    metrics_path = out_dir / "train_metrics.jsonl"
    adapter_dir = out_dir / "adapter"
    log.info(
        "training %d trainable params on %d examples: %d epochs x %d steps (batch %d x accum %d, %d process(es))",
        n_trainable, n_examples, cfg.epochs, steps_per_epoch, cfg.batch_size, cfg.grad_accum, world,
    )

    step, examples, tokens, skipped, nonfinite_run = loop.step, loop.examples, loop.tokens, loop.skipped, 0
    losses, margins, window = loop.losses, loop.margins, loop.window
    bar = tqdm(total=total_steps, initial=step, desc="train",
               disable=not (cfg.progress and accelerator.is_main_process))
    unwrap(model).train()

    with (
        _open_metrics(metrics_path, loop.metrics_bytes, accelerator.is_main_process) as metrics_file,
        dropout_disabled(model, cfg.disable_dropout),
        _checkpointing(model, cfg.gradient_checkpointing),
    ):

        def record(row: dict[str, Any]) -> None:
            if accelerator.is_main_process:
                metrics_file.write(json.dumps(row) + "\n")
                metrics_file.flush()

        def diverged(reason: str) -> None:
            record({"step": step, "event": "nonfinite", "reason": reason})
            log.warning("step %d: %s; step skipped (%d in a row)", step, reason, nonfinite_run)
            if nonfinite_run >= cfg.max_nonfinite_steps:
                saved = ""
                if cfg.save_adapter and accelerator.is_main_process:
                    save_fn(accelerator.unwrap_model(model), adapter_dir)
                    saved = f"; last good adapter saved to {adapter_dir}"
                raise TrainingDivergedError(
                    f"training diverged: {nonfinite_run} non-finite steps in a row at step {step} "
                    f"(lower lr or use precision fp32){saved}"
                )

        for epoch in range(loop.epoch, cfg.epochs):
            generator = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
            batches = length_grouped_batches(lengths, cfg.batch_size, generator)
            local = batches[: per_epoch * world][rank::world]
            first = loop.next_batch if epoch == loop.epoch else 0  # a resumed epoch skips what was consumed
            for group_start in range(first, len(local), cfg.grad_accum):
                group = local[group_start : group_start + cfg.grad_accum]
                group_rows: list[dict[str, float]] = []
                for i, idx in enumerate(group):
                    batch = make_batch(idx).to(accelerator.device)
                    last = i == len(group) - 1
                    sync = contextlib.nullcontext() if last else accelerator.no_sync(model)
                    with sync:
                        with autocast(resolve_precision(cfg.precision), accelerator.device):
                            loss, row = step_fn(model, batch)
                        examples += len(idx)
                        tokens += batch.n_tokens
                        if not torch.isfinite(loss):
                            nonfinite_run += 1
                            diverged(f"non-finite loss {float(loss.detach())}")
                            continue
                        accelerator.backward(loss / len(group))
                    group_rows.append(row)
                if not group_rows:
                    optimizer.zero_grad(set_to_none=True)
                    skipped += 1
                    continue
                grad_norm = (
                    accelerator.clip_grad_norm_(params, cfg.max_grad_norm)
                    if cfg.max_grad_norm > 0
                    else torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params if p.grad is not None]))
                )
                if not torch.isfinite(torch.as_tensor(grad_norm)):
                    optimizer.zero_grad(set_to_none=True)
                    skipped += 1
                    nonfinite_run += 1
                    diverged(f"non-finite gradient norm {float(grad_norm)}")
                    continue
                lr = scheduler.get_last_lr()[0]
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                nonfinite_run = 0
                step += 1
                row = _mean(group_rows)
                losses.append(row["loss"])
                if "margin" in row:
                    margins.append(row["margin"])
                window.append({**row, "grad_norm": float(grad_norm), "lr": lr})
                bar.update(1)
                bar.set_postfix(loss=f"{row['loss']:.4f}", epoch=epoch)
                if step % cfg.log_every == 0 or step == total_steps:
                    record({"step": step, "epoch": epoch, **_mean(window), "examples": examples, "tokens": tokens,
                            "elapsed_s": round(time.perf_counter() - start, 3)})
                    window = []
                if checkpoints and step % cfg.checkpoint_every == 0 and step < total_steps:
                    if accelerator.is_main_process:
                        state = LoopState(
                            step=step, epoch=epoch, next_batch=group_start + cfg.grad_accum, examples=examples,
                            tokens=tokens, skipped=skipped, losses=losses, margins=margins, window=window,
                            elapsed_s=time.perf_counter() - start,
                            metrics_bytes=os.fstat(metrics_file.fileno()).st_size,  # flushed by record()
                        )
                        save_checkpoint(out_dir, state, named, optimizer, scheduler, job)
    bar.close()

    saved_dir = None
    if cfg.save_adapter:
        if accelerator.is_main_process:
            save_fn(accelerator.unwrap_model(model), adapter_dir)
        saved_dir = str(adapter_dir)
    accelerator.wait_for_everyone()
    if not losses:
        raise TrainingDivergedError("no optimizer step succeeded")
    rose = loss_rose(losses)
    if rose:
        first, last = loss_start_end(losses)
        log.warning("training loss ended above where it started (%.4f over the first steps, %.4f over the "
                    "last tenth): the learning rate is likely past the stable range", first, last)
    result = TrainResult(
        steps=step,
        examples=examples,
        tokens=tokens,
        final_loss=losses[-1],
        mean_loss=sum(losses) / len(losses),
        mean_margin=sum(margins) / len(margins) if margins else None,
        wall_s=time.perf_counter() - start,
        peak_rss_mb=peak_rss_mb(),
        skipped_steps=skipped,
        reference_s=reference_s,
        resumed_s=resumed.elapsed_s if resumed else 0.0,
        adapter_dir=saved_dir,
        metrics_path=str(metrics_path),
        extra={"trainable_params": n_trainable, "world_size": world, "loss_rose": rose},
    )
    if accelerator.is_main_process:
        result.write(out_dir / "train_result.json")
        clear_checkpoints(out_dir)
    log.info("trained %d steps in %.1f s (%.2f examples/s), final loss %.4f",
             result.steps, result.wall_s, result.examples_per_s, result.final_loss)
    return result


def _pad_id(tokenizer: Any) -> int:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        raise ValueError("the tokenizer has neither a pad nor an EOS token")
    return int(pad)


def train_preference(
    model: Any,
    tokenizer: Any,
    pairs: Sequence[PreferencePair],
    cfg: TrainConfig,
    out_dir: str | Path,
    reference_logps: ReferenceLogps | None = None,
    reference_context: ReferenceContext | None = None,
    save_fn: SaveFn = default_save,
) -> TrainResult:
    """Train the model's adapter on preference pairs with ``cfg.loss`` (+ NLL on the chosen side).

    ``reference_logps`` maps pair id -> summed (chosen, rejected) reference log-probs computed
    with the same tokenisation (e.g. by ``compute_reference_logps``); pairs missing from it are
    scored once before training under ``reference_context(model)`` (default: the PEFT adapter
    disabled). Returns a TrainResult; writes metrics, result and adapter under ``out_dir``.
    ``cfg.packed`` lays each pair out behind one shared prompt wherever that is exact.
    """
    if not pairs:
        raise ValueError("no preference pairs to train on")
    out = Path(out_dir)
    accelerator = Accelerator()
    set_seed(cfg.seed)
    tokenized = tokenize_pairs(tokenizer, list(pairs), cfg.max_length, cfg.eos)
    pad_id = _pad_id(tokenizer)
    loss_fn = PreferenceLoss(cfg.loss, cfg.beta, cfg.nll_weight, cfg.label_smoothing)
    use_ltk = accepts_logits_to_keep(model)
    reference: ReferenceLogps = dict(reference_logps or {})
    collate = pair_collator(innermost(model), pad_id, cfg.packed)

    def before_training(prepared: Any) -> float:
        missing = [p for p in tokenized if p.id not in reference]
        if not missing:
            return 0.0
        t0 = time.perf_counter()
        reference.update(
            compute_reference_logps(
                prepared, missing, pad_id, cfg.batch_size, resolve_precision(cfg.precision),
                accelerator.device, reference_context, cfg.packed,
            )
        )
        seconds = time.perf_counter() - t0
        log.info("reference log-probs for %d pairs in %.1f s", len(missing), seconds)
        return seconds

    def step_fn(m: Any, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        logps, lengths = response_logps(m, batch, use_ltk)
        n = len(batch.ids)
        ref = torch.tensor([reference[i] for i in batch.ids], dtype=torch.float32, device=logps.device)
        result = loss_fn(logps[:n], logps[n:], ref[:, 0], ref[:, 1], lengths[:n], lengths[n:])
        return result.loss, result.metrics()

    return _train_loop(
        model, len(tokenized), [p.length for p in tokenized],
        lambda idx: collate([tokenized[i] for i in idx]),
        step_fn, cfg, out, accelerator, save_fn, data_digest(tokenized), before_training,
    )


def train_sft(
    model: Any,
    tokenizer: Any,
    items: Sequence[SFTItem],
    cfg: TrainConfig,
    out_dir: str | Path,
    save_fn: SaveFn = default_save,
) -> TrainResult:
    """Train the model's adapter on (prompt, response) items with token-mean NLL (the SFT baseline).

    Uses the same config, batching, precision, logging and NaN handling as ``train_preference``;
    the preference fields (loss, beta, nll_weight, label_smoothing) are ignored.
    """
    if not items:
        raise ValueError("no SFT items to train on")
    out = Path(out_dir)
    accelerator = Accelerator()
    set_seed(cfg.seed)
    tokenized = tokenize_items(tokenizer, list(items), cfg.max_length, cfg.eos)
    pad_id = _pad_id(tokenizer)
    loss_fn = SFTLoss()
    use_ltk = accepts_logits_to_keep(model)

    def step_fn(m: Any, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        logps, lengths = response_logps(m, batch, use_ltk)
        loss = loss_fn(logps, lengths)
        return loss, {"loss": float(loss.detach()), "nll": float(loss.detach())}

    return _train_loop(
        model, len(tokenized), [i.length for i in tokenized],
        lambda idx: collate_items([tokenized[i] for i in idx], pad_id),
        step_fn, cfg, out, accelerator, save_fn, data_digest(tokenized),
    )


def reference_logps_for_pairs(
    model: Any,
    tokenizer: Any,
    pairs: Sequence[PreferencePair],
    cfg: TrainConfig,
    reference_context: ReferenceContext | None = None,
    device: torch.device | str = "cpu",
) -> ReferenceLogps:
    """Reference log-probs for pairs, tokenised exactly as ``train_preference`` will, to cache or reuse."""
    tokenized = tokenize_pairs(tokenizer, list(pairs), cfg.max_length, cfg.eos)
    return compute_reference_logps(
        model, tokenized, _pad_id(tokenizer), cfg.batch_size, resolve_precision(cfg.precision),
        device, reference_context, cfg.packed,
    )
