"""Train an attached adapter on preference pairs (DPO family + NLL), KTO examples or SFT items.

One readable loop on ``accelerate.Accelerator``, so the same call runs on one CPU, one GPU or
under ``accelerate launch`` (each process takes every world-size-th batch). Assumptions:

- ``model`` already carries its adapter (PEFT LoRA, or aptune's ALoRA) and only the adapter's
  parameters require grad; the reference is the same model with the adapter disabled
  (``reference_context``), computed once per call before the first step.
- Compute runs under autocast in ``cfg.precision`` (bf16 where the hardware has it with
  ``auto``; the weights' own dtype when they are loaded in half precision, ``model.dtype``);
  the adapter and the optimizer state stay fp32. fp16 scales the loss (``torch.amp.GradScaler``)
  so small gradients do not underflow; a step the scaler finds overflowed is skipped and the
  scale lowered, which is not counted as divergence while the scale is still above 1.
- Batches group similar lengths and are left-padded so only response positions go through the
  LM head (see ``batching.py``); chosen and rejected share one forward pass.
- A non-finite loss or gradient skips that step and is logged; ``max_nonfinite_steps`` in a row
  raises ``TrainingDivergedError`` after saving the adapter as it was before those steps.
- Every ``checkpoint_every`` steps the loop saves its whole state (``checkpoint.py``); a call
  into an ``out_dir`` that holds a checkpoint of the same job carries on from it.

Outputs in ``out_dir``: ``train_metrics.jsonl`` (one record per ``log_every`` steps),
``train_result.json`` (with the reference pass and the optimisation loop timed apart:
``reference_s``, ``train_s``) and ``adapter/`` (``save_pretrained``, safetensors).

The loop itself is ``_Loop``: ``_step`` (one optimisation step over a group of micro-batches),
``_restore`` / ``_save_checkpoint`` (the checkpoint round trip), ``_finish`` (adapter, result).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, set_seed
from tqdm.auto import tqdm
from transformers import get_scheduler

from aptune.modeling import accepts_logits_to_keep, innermost, unwrap
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
from aptune.train.logprobs import response_logps
from aptune.train.kto import KTOExample, with_kl_completions
from aptune.train.losses import KTOLoss, PreferenceLoss, SFTLoss
from aptune.train.peak_memory import PeakMemory
from aptune.train.pairs import PreferencePair, SFTItem, tokenize_items, tokenize_pairs
from aptune.train.tracking import log_row, open_tracker
from aptune.train.reference import ReferenceContext, ReferenceLogps, compute_reference_logps

log = logging.getLogger(__name__)

#: Saves the trained adapter into a folder (default: ``aptune.adapters.save_adapter``).
#: (model, folder, the full state gathered from shards or None) -> writes the adapter
SaveFn = Callable[[Any, Path, "dict[str, Any] | None"], None]
#: One micro-batch -> (loss, metrics); runs under autocast with grad enabled.
StepFn = Callable[[Any, Batch], tuple[torch.Tensor, dict[str, float]]]


def default_save(model: Any, folder: Path, state_dict: dict[str, Any] | None = None) -> None:
    """The adapter alone (LoRA or ALoRA), as safetensors plus its config."""
    from aptune.adapters import save_adapter

    save_adapter(unwrap(model), folder, state_dict=state_dict)


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


def _mean(rows: Sequence[dict[str, float | None]]) -> dict[str, float | None]:
    """Each key's mean over the rows' finite values; None where a key has none (KTO's margin in a
    batch of one label only), so the JSONL row stays valid JSON."""
    out: dict[str, float | None] = {}
    for k in rows[0]:
        values = [v for r in rows if (v := r.get(k)) is not None and math.isfinite(v)]
        out[k] = sum(values) / len(values) if values else None
    return out


def make_accelerator(device: torch.device | str | None = None) -> Accelerator:
    """accelerate's Accelerator on ``device`` (None: accelerate's own choice, the launcher's device
    or the first GPU). A plain process asked for the CPU on a GPU machine stays on the CPU, and
    ``cuda:N`` becomes the current CUDA device, which accelerate then uses."""
    if device is None:
        return Accelerator()
    device = torch.device(device)
    if device.type == "cuda" and device.index is not None and torch.cuda.is_available():
        torch.cuda.set_device(device)
    return Accelerator(cpu=device.type == "cpu")


def _sharded(accelerator: Accelerator) -> bool:
    """Whether parameters (or their optimizer state) are split across processes."""
    return accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)


def _checkpoints_supported(accelerator: Accelerator) -> bool:
    """Checkpoints copy replicated tensors; a sharded plan would need accelerate's ``save_state``."""
    if _sharded(accelerator):
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


@dataclass(frozen=True)
class TrainJob:
    """One training call's fixed inputs, built by ``train_preference`` / ``train_sft``."""

    model: Any  # carries its adapter; only the adapter's parameters require grad
    n_examples: int
    lengths: Sequence[int]  # token length of each example (for length-grouped batches)
    make_batch: Callable[[list[int]], Batch]  # example indices -> a collated micro-batch
    step_fn: StepFn
    cfg: TrainConfig
    out_dir: Path
    accelerator: Accelerator
    save_fn: SaveFn
    data: str  # digest of the tokenised examples: part of the checkpoints' fingerprint
    before_training: Callable[[Any], float] | None = None  # the reference pass; returns its seconds


def _train_loop(job: TrainJob) -> TrainResult:
    """The shared optimisation loop: set up (and run the reference pass), resume from a
    checkpoint of the same job if there is one, train, then save the adapter and the result."""
    memory = PeakMemory(job.accelerator.device).start()
    try:
        return _Loop(job, memory).run()
    finally:
        memory.stop()


class _Loop:
    """One training call in progress: the prepared model, optimizer and schedule, the loop's
    position (a ``LoopState``, the record a checkpoint saves) and two clocks (the call's, for
    ``wall_s``; the optimisation loop's, for ``train_s``)."""

    def __init__(self, job: TrainJob, memory: PeakMemory) -> None:
        cfg, accelerator = job.cfg, job.accelerator
        self.job, self.cfg, self.accelerator, self.memory = job, cfg, accelerator, memory
        self.started = time.perf_counter()
        job.out_dir.mkdir(parents=True, exist_ok=True)
        self.named = [(name, p) for name, p in job.model.named_parameters() if p.requires_grad]
        self.params = [p for _, p in self.named]
        if not self.params:
            raise ValueError("the model has no trainable parameters; attach an adapter before training")

        self.world, self.rank = accelerator.num_processes, accelerator.process_index
        self.per_epoch = math.ceil(len(job.lengths) / cfg.batch_size) // self.world  # micro-batches per process
        if self.per_epoch < 1:
            raise ValueError(f"{job.n_examples} examples are too few for batch_size={cfg.batch_size} "
                             f"on {self.world} processes")
        self.steps_per_epoch = math.ceil(self.per_epoch / cfg.grad_accum)
        self.total_steps = self.steps_per_epoch * cfg.epochs

        if accelerator.distributed_type == DistributedType.FSDP:
            kinds = {p.dtype for p in job.model.parameters() if p.is_floating_point()}
            if len(kinds) > 1:  # FSDP flattens each wrapped block into one tensor of one dtype
                raise ValueError(f"FSDP cannot shard a model whose parameters mix dtypes ({', '.join(sorted(map(str, kinds)))}"
                                 "): load fp32 weights (model.dtype: fp32) and compute in bf16 with the launcher's "
                                 "mixed_precision")
        optimizer = torch.optim.AdamW(self.params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.scheduler = get_scheduler(
            cfg.scheduler,
            optimizer,
            num_warmup_steps=round(cfg.warmup_ratio * self.total_steps),
            num_training_steps=self.total_steps,
        )
        self.model, self.optimizer = accelerator.prepare(job.model, optimizer)
        self.compute = resolve_precision(cfg.precision, accelerator.device)
        # a no-op (scale 1, steps pass straight through) unless the compute is fp16
        self.scaler = torch.amp.GradScaler(accelerator.device.type, enabled=self.compute == torch.float16)
        self.reference_s = job.before_training(self.model) if job.before_training else 0.0

        self.checkpoints = cfg.checkpoint_every > 0 and _checkpoints_supported(accelerator)
        self.fingerprint = fingerprint(cfg.to_dict(), self.named, job.data, self.world)
        self.resumed = self._restore()
        self.state = self.resumed or LoopState()
        self.started -= self.state.elapsed_s  # wall_s counts the interrupted calls' time too
        self.loop_started = 0.0  # set when the optimisation loop starts
        self.nonfinite_run = 0  # consecutive non-finite steps
        self.metrics_path = job.out_dir / "train_metrics.jsonl"
        self.adapter_dir = job.out_dir / "adapter"
        self.metrics_file: IO[str] | None = None
        self.tracker: Any = None  # train.tracking: an accelerate tracker beside the JSONL (main process)
        self.bar: Any = None

    # --- checkpoints ---------------------------------------------------------------------------

    def _restore(self) -> LoopState | None:
        """The newest checkpoint of this job, loaded into the parameters, optimizer, scheduler
        and RNG; None when checkpoints are off or there is none to carry on from."""
        if not self.checkpoints:
            return None
        return load_checkpoint(self.job.out_dir, self.named, self.optimizer, self.scheduler, self.fingerprint)

    def _checkpoint_due(self) -> bool:
        step = self.state.step
        return self.checkpoints and step % self.cfg.checkpoint_every == 0 and step < self.total_steps

    def _save_checkpoint(self, epoch: int, next_batch: int) -> None:
        """Save the loop's whole state after this step (main process; the others hold the same)."""
        if not self.accelerator.is_main_process:
            return
        assert self.metrics_file is not None
        now = time.perf_counter()
        state = replace(
            self.state, epoch=epoch, next_batch=next_batch,
            elapsed_s=now - self.started, train_s=self._train_s(now),
            metrics_bytes=os.fstat(self.metrics_file.fileno()).st_size,  # flushed by _record()
        )
        save_checkpoint(self.job.out_dir, state, self.named, self.optimizer, self.scheduler, self.fingerprint)

    # --- the loop ------------------------------------------------------------------------------

    def run(self) -> TrainResult:
        """Train from the loop's position to the last step, then finish."""
        cfg, state = self.cfg, self.state
        log.info(
            "training %d trainable params on %d examples: %d epochs x %d steps (batch %d x accum %d, %d process(es))",
            sum(p.numel() for p in self.params), self.job.n_examples, cfg.epochs, self.steps_per_epoch,
            cfg.batch_size, cfg.grad_accum, self.world,
        )
        self.bar = tqdm(total=self.total_steps, initial=state.step, desc="train",
                        disable=not (cfg.progress and self.accelerator.is_main_process))
        unwrap(self.model).train()
        resume_epoch, resume_batch = state.epoch, state.next_batch
        self.loop_started = time.perf_counter()
        self.tracker = (open_tracker(cfg.tracking, self.job.out_dir, self.job.out_dir.parent.name or "train",
                                     cfg.to_dict()) if self.accelerator.is_main_process else None)
        with (
            _open_metrics(self.metrics_path, state.metrics_bytes, self.accelerator.is_main_process) as self.metrics_file,
            dropout_disabled(self.model, cfg.disable_dropout),
            _checkpointing(self.model, cfg.gradient_checkpointing),
        ):
            for epoch in range(resume_epoch, cfg.epochs):
                local = self._epoch_batches(epoch)
                first = resume_batch if epoch == resume_epoch else 0  # a resumed epoch skips what was consumed
                for group_start in range(first, len(local), cfg.grad_accum):
                    if not self._step(local[group_start : group_start + cfg.grad_accum], epoch):
                        continue
                    if state.step % cfg.log_every == 0 or state.step == self.total_steps:
                        self._log_window(epoch)
                    if self._checkpoint_due():
                        self._save_checkpoint(epoch, group_start + cfg.grad_accum)
        train_s = self._train_s(time.perf_counter())
        self.bar.close()
        if self.tracker is not None:
            self.tracker.finish()
        return self._finish(train_s)

    def _train_s(self, now: float) -> float:
        """Seconds in the optimisation loop: this call's, plus interrupted calls' (checkpoint)."""
        return (self.resumed.train_s if self.resumed else 0.0) + now - self.loop_started

    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        """This process's micro-batches of ``epoch``: a pure function of the seed and the epoch."""
        generator = torch.Generator().manual_seed(self.cfg.seed * 1000 + epoch)
        batches = length_grouped_batches(self.job.lengths, self.cfg.batch_size, generator)
        return batches[: self.per_epoch * self.world][self.rank :: self.world]

    def _step(self, group: list[list[int]], epoch: int) -> bool:
        """One optimisation step over ``group``'s micro-batches (gradient accumulation); False
        when it was skipped for a non-finite loss or gradient."""
        rows = []
        for i, idx in enumerate(group):
            row = self._micro_batch(idx, last=i == len(group) - 1, group_size=len(group))
            if row is not None:
                rows.append(row)
        if not rows:
            self.optimizer.zero_grad(set_to_none=True)
            self.state.skipped += 1
            return False
        self.scaler.unscale_(self.optimizer)
        grad_norm = self._clip_gradients()
        if not torch.isfinite(torch.as_tensor(grad_norm)):
            self.optimizer.zero_grad(set_to_none=True)
            self.state.skipped += 1
            if self.scaler.is_enabled():
                self.scaler.update()  # lowers the scale: fp16 overflow at too high a scale is expected
                if self.scaler.get_scale() >= 1.0:
                    log.info("step %d: fp16 gradients overflowed; loss scale lowered to %g", self.state.step,
                             self.scaler.get_scale())
                    return False
            self.nonfinite_run += 1
            self._nonfinite(f"non-finite gradient norm {float(grad_norm)}")
            return False
        lr = self.scheduler.get_last_lr()[0]
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.nonfinite_run = 0
        state = self.state
        state.step += 1
        row = _mean(rows)
        state.losses.append(row["loss"])
        if row.get("margin") is not None:
            state.margins.append(row["margin"])
        state.window.append({**row, "grad_norm": float(grad_norm), "lr": lr})
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{row['loss']:.4f}", epoch=epoch)
        return True

    def _micro_batch(self, idx: list[int], *, last: bool, group_size: int) -> dict[str, float] | None:
        """Forward and backward one micro-batch (gradients synchronised on the group's last);
        its metrics, or None when its loss is not finite (nothing is back-propagated)."""
        accelerator, state = self.accelerator, self.state
        batch = self.job.make_batch(idx).to(accelerator.device)
        with contextlib.nullcontext() if last else accelerator.no_sync(self.model):
            with autocast(self.compute, accelerator.device):
                loss, row = self.job.step_fn(self.model, batch)
            state.examples += len(idx)
            state.tokens += batch.n_tokens
            if not torch.isfinite(loss):
                self.nonfinite_run += 1
                self._nonfinite(f"non-finite loss {float(loss.detach())}")
                return None
            accelerator.backward(self.scaler.scale(loss / group_size))
        return row

    def _clip_gradients(self) -> Any:
        """The gradients' norm, clipped to ``max_grad_norm`` when that is set."""
        if self.cfg.max_grad_norm > 0:
            return self.accelerator.clip_grad_norm_(self.params, self.cfg.max_grad_norm)
        return torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in self.params if p.grad is not None]))

    def _nonfinite(self, reason: str) -> None:
        """Record a skipped step; after ``max_nonfinite_steps`` in a row, save the adapter as it
        was before them and raise ``TrainingDivergedError``."""
        step = self.state.step
        self._record({"step": step, "event": "nonfinite", "reason": reason})
        log.warning("step %d: %s; step skipped (%d in a row)", step, reason, self.nonfinite_run)
        if self.nonfinite_run < self.cfg.max_nonfinite_steps:
            return
        saved = ""
        if self.cfg.save_adapter and not _sharded(self.accelerator):
            # (sharded: gathering is collective, and the processes need not all be here now)
            if self.accelerator.is_main_process:
                self.job.save_fn(self.accelerator.unwrap_model(self.model), self.adapter_dir, None)
            saved = f"; last good adapter saved to {self.adapter_dir}"
        raise TrainingDivergedError(
            f"training diverged: {self.nonfinite_run} non-finite steps in a row at step {step} "
            f"(lower lr or use precision fp32){saved}"
        )

    def _log_window(self, epoch: int) -> None:
        """One metrics row: the mean of the steps since the last row, and the running counters."""
        state = self.state
        self._record({"step": state.step, "epoch": epoch, **_mean(state.window), "examples": state.examples,
                      "tokens": state.tokens, "elapsed_s": round(time.perf_counter() - self.started, 3)})
        state.window = []

    def _record(self, row: dict[str, Any]) -> None:
        if self.accelerator.is_main_process and self.metrics_file is not None:
            self.metrics_file.write(json.dumps(row) + "\n")
            self.metrics_file.flush()
            log_row(self.tracker, row)

    # --- the end -------------------------------------------------------------------------------

    def _peak_rss(self) -> float:
        self.memory.stop()  # the adapter is saved: the call's memory peak is behind it
        return round(self.memory.rss_mb(), 1)

    def _finish(self, train_s: float) -> TrainResult:
        """Save the adapter, write ``train_result.json``, remove the checkpoints, log the timing."""
        cfg, accelerator, state = self.cfg, self.accelerator, self.state
        saved_dir = None
        if cfg.save_adapter:
            # sharded (FSDP, DeepSpeed): every process takes part in gathering the full state,
            # the main process writes its adapter tensors; otherwise each holds the whole adapter
            gathered = accelerator.get_state_dict(self.model) if _sharded(accelerator) else None
            if accelerator.is_main_process:
                self.job.save_fn(accelerator.unwrap_model(self.model), self.adapter_dir, gathered)
            saved_dir = str(self.adapter_dir)
        accelerator.wait_for_everyone()
        losses = state.losses
        if not losses:
            raise TrainingDivergedError("no optimizer step succeeded")
        rose = loss_rose(losses)
        if rose:
            first, last = loss_start_end(losses)
            log.warning("training loss ended above where it started (%.4f over the first steps, %.4f over the "
                        "last tenth): the learning rate is likely past the stable range", first, last)
        result = TrainResult(
            steps=state.step,
            examples=state.examples,
            tokens=state.tokens,
            final_loss=losses[-1],
            mean_loss=sum(losses) / len(losses),
            mean_margin=sum(state.margins) / len(state.margins) if state.margins else None,
            wall_s=time.perf_counter() - self.started,
            peak_rss_mb=self._peak_rss(),
            peak_device_mb=self.memory.device_mb(),
            skipped_steps=state.skipped,
            reference_s=self.reference_s,
            train_s=train_s,
            resumed_s=self.resumed.elapsed_s if self.resumed else 0.0,
            adapter_dir=saved_dir,
            metrics_path=str(self.metrics_path),
            extra={"trainable_params": sum(p.numel() for p in self.params), "world_size": self.world,
                   "device": str(accelerator.device), "precision": str(self.compute).removeprefix("torch."),
                   "loss_rose": rose, "peak_rss_scope": self.memory.scope},
        )
        if accelerator.is_main_process:
            result.write(self.job.out_dir / "train_result.json")
            clear_checkpoints(self.job.out_dir)
        reference = f"reference pass {result.reference_s:.1f} s; " if result.reference_s else ""
        log.info("%strained %d steps in %.1f s (%.2f examples/s), final loss %.4f",
                 reference, result.steps, result.train_s, result.examples_per_s, result.final_loss)
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
    device: torch.device | str | None = None,
) -> TrainResult:
    """Train the model's adapter on preference pairs with ``cfg.loss`` (+ NLL on the chosen side).

    ``reference_logps`` maps pair id -> summed (chosen, rejected) reference log-probs computed
    with the same tokenisation (e.g. by ``compute_reference_logps``); pairs missing from it are
    scored once before training under ``reference_context(model)`` (default: the PEFT adapter
    disabled). Returns a TrainResult; writes metrics, result and adapter under ``out_dir``.
    ``cfg.packed`` lays each pair out behind one shared prompt wherever that is exact. ``device``:
    where to train (None: accelerate's choice; see ``make_accelerator``).
    """
    if cfg.loss == "kto":
        raise ValueError("train.loss kto learns from unpaired examples: train_kto")
    loss_fn = PreferenceLoss(cfg.loss, cfg.beta, cfg.nll_weight, cfg.label_smoothing, cfg.simpo_gamma)

    def loss_on(logps: torch.Tensor, lengths: torch.Tensor, ref: torch.Tensor | None,
                ids: list[str]) -> tuple[torch.Tensor, dict[str, float]]:
        n = len(ids)
        if ref is None:
            result = loss_fn(logps[:n], logps[n:], None, None, lengths[:n], lengths[n:])
        else:
            result = loss_fn(logps[:n], logps[n:], ref[:, 0], ref[:, 1], lengths[:n], lengths[n:])
        return result.loss, result.metrics()

    return _train_on_pairs(model, tokenizer, pairs, cfg, out_dir, loss_on, loss_fn.needs_reference,
                           reference_logps, reference_context, save_fn, device)


def train_kto(
    model: Any,
    tokenizer: Any,
    examples: Sequence[KTOExample],
    cfg: TrainConfig,
    out_dir: str | Path,
    reference_logps: ReferenceLogps | None = None,
    reference_context: ReferenceContext | None = None,
    save_fn: SaveFn = default_save,
    device: torch.device | str | None = None,
) -> TrainResult:
    """Train the model's adapter with KTO on unpaired desirable / undesirable examples
    (``aptune.train.kto``: each example carries a mismatched completion for the KL estimate,
    so it trains through the same pair machinery, packing and reference pass as DPO).
    ``reference_logps``: by example id, (completion, mismatched completion), as
    ``reference_logps_for_pairs`` gives for ``with_kl_completions(examples, cfg.seed)``."""
    pairs, desirable = with_kl_completions(examples, cfg.seed)
    loss_fn = KTOLoss(cfg.beta, cfg.kto_desirable_weight, cfg.kto_undesirable_weight, cfg.nll_weight)

    def loss_on(logps: torch.Tensor, lengths: torch.Tensor, ref: torch.Tensor | None,
                ids: list[str]) -> tuple[torch.Tensor, dict[str, float]]:
        assert ref is not None
        n = len(ids)
        labels = torch.tensor([desirable[i] for i in ids], device=logps.device)
        result = loss_fn(logps[:n], ref[:, 0], logps[n:], ref[:, 1], labels, lengths[:n])
        return result.loss, result.metrics()

    return _train_on_pairs(model, tokenizer, pairs, cfg, out_dir, loss_on, True, reference_logps,
                           reference_context, save_fn, device)


#: (summed response log-probs of the batch's chosen rows then rejected rows, their token counts,
#: the (B, 2) reference log-probs or None, the batch's ids) -> (loss, metrics)
PairLoss = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None", list[str]], tuple[torch.Tensor, dict[str, float]]]


def _train_on_pairs(model: Any, tokenizer: Any, pairs: Sequence[PreferencePair], cfg: TrainConfig, out_dir: str | Path,
                    loss_on: PairLoss, needs_reference: bool, reference_logps: ReferenceLogps | None,
                    reference_context: ReferenceContext | None, save_fn: SaveFn,
                    device: torch.device | str | None) -> TrainResult:
    """The pair-shaped training job both ``train_preference`` and ``train_kto`` run: tokenise,
    score the reference once (unless the loss reads none), then the loop with ``loss_on``."""
    if not pairs:
        raise ValueError("no preference pairs to train on")
    out = Path(out_dir)
    accelerator = make_accelerator(device)
    set_seed(cfg.seed)
    tokenized = tokenize_pairs(tokenizer, list(pairs), cfg.max_length, cfg.eos)
    pad_id = _pad_id(tokenizer)
    use_ltk = accepts_logits_to_keep(model)
    reference: ReferenceLogps = dict(reference_logps or {})
    collate = pair_collator(innermost(model), pad_id, cfg.packed)

    def before_training(prepared: Any) -> float:
        missing = [p for p in tokenized if p.id not in reference]
        if not missing or not needs_reference:  # simpo, orpo: no reference pass at all
            return 0.0
        t0 = time.perf_counter()
        reference.update(
            compute_reference_logps(
                prepared, missing, pad_id, cfg.batch_size, resolve_precision(cfg.precision, accelerator.device),
                accelerator.device, reference_context, cfg.packed,
            )
        )
        seconds = time.perf_counter() - t0
        log.info("reference log-probs for %d pairs in %.1f s", len(missing), seconds)
        return seconds

    def step_fn(m: Any, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        logps, lengths = response_logps(m, batch, use_ltk)
        ref = None
        if needs_reference:
            ref = torch.tensor([reference[i] for i in batch.ids], dtype=torch.float32, device=logps.device)
        return loss_on(logps, lengths, ref, list(batch.ids))

    return _train_loop(TrainJob(
        model=model, n_examples=len(tokenized), lengths=[p.length for p in tokenized],
        make_batch=lambda idx: collate([tokenized[i] for i in idx]), step_fn=step_fn, cfg=cfg, out_dir=out,
        accelerator=accelerator, save_fn=save_fn, data=data_digest(tokenized), before_training=before_training,
    ))


def train_sft(
    model: Any,
    tokenizer: Any,
    items: Sequence[SFTItem],
    cfg: TrainConfig,
    out_dir: str | Path,
    save_fn: SaveFn = default_save,
    device: torch.device | str | None = None,
) -> TrainResult:
    """Train the model's adapter on (prompt, response) items with token-mean NLL (the SFT baseline).

    Uses the same config, batching, precision, device, logging and NaN handling as
    ``train_preference``; the preference fields (loss, beta, nll_weight, label_smoothing) are ignored.
    """
    if not items:
        raise ValueError("no SFT items to train on")
    out = Path(out_dir)
    accelerator = make_accelerator(device)
    set_seed(cfg.seed)
    tokenized = tokenize_items(tokenizer, list(items), cfg.max_length, cfg.eos)
    pad_id = _pad_id(tokenizer)
    loss_fn = SFTLoss()
    use_ltk = accepts_logits_to_keep(model)

    def step_fn(m: Any, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        logps, lengths = response_logps(m, batch, use_ltk)
        loss = loss_fn(logps, lengths)
        return loss, {"loss": float(loss.detach()), "nll": float(loss.detach())}

    return _train_loop(TrainJob(
        model=model, n_examples=len(tokenized), lengths=[i.length for i in tokenized],
        make_batch=lambda idx: collate_items([tokenized[i] for i in idx], pad_id), step_fn=step_fn, cfg=cfg,
        out_dir=out, accelerator=accelerator, save_fn=save_fn, data=data_digest(tokenized),
    ))


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
        model, tokenized, _pad_id(tokenizer), cfg.batch_size, resolve_precision(cfg.precision, device),
        device, reference_context, cfg.packed,
    )
