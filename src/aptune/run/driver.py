"""The round driver every method shares: rounds, resume, evaluation, the general gate.

A method (``aptune.methods``) is a subclass of :class:`Run` that names the stages a round runs
(``round_stages``) and implements each as ``stage_<name>(round_index)``; the driver runs them
in order, then evaluates the round and decides it. Each stage reads the files earlier stages
wrote and writes its own through the run directory (``run_dir.py``); ``run()`` skips every stage
whose output exists, so rerunning the same command after a kill resumes at the first
unfinished stage. The model a round starts from is always rebuilt from disk (base weights +
the adapters of accepted rounds), never carried over in memory, so an interrupted run and an
uninterrupted one compute on identical weights and end with identical metrics.

The general-capability gate compares each round with the starting model (round 0), so drift
cannot accumulate in steps each under the tolerance, on the general tasks' dev items
(``general_dev``): a gate that read the test items would pick the model on the figures it is
then reported by. The driver writes no report: the caller
(the CLI, compare) draws it from the finished folder.
"""

from __future__ import annotations

import dataclasses
import logging
import platform
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from aptune.adapters import attach_adapter, load_adapter, merge_adapter
from aptune.config import RunConfig
from aptune.data.example import Example
from aptune.devices import device_name, resolve_device
from aptune.distributed import is_main
from aptune.evaluate.judges import Judge
from aptune.evaluate.metrics import Interval
from aptune.evaluate.runner import evaluate
from aptune.model_config import DTYPE_NAMES, ModelConfig, runtime_dtypes, weights_name
from aptune.models import load_model, load_tokenizer
from aptune.provenance import provenance
from aptune.run.evaluation import (build_judge, eval_settings, load_judge_model, load_taskset, paired_change,
                                   summarize_views, view_sets, view_tasks)
from aptune.run.gate import general_gate, gate_view
from aptune.run.run_dir import STAGES, RunDir
from aptune.train.config import TrainConfig, TrainResult

log = logging.getLogger(__name__)

#: called before each stage with (round, stage); the CLI prints a header from it
StageHook = Callable[[int, str], None]
#: called after each round is decided with (round, decision)
RoundHook = Callable[[int, dict[str, Any]], None]


def runtime_info(device: torch.device, dtype: torch.dtype, model: ModelConfig | None = None,
                 weights: torch.dtype = torch.float32) -> dict[str, str]:
    """Where and in what precision this process computes (and, for a run, what its weights are
    loaded as), for the manifest, report and console."""
    info = {"device": str(device), "device_name": device_name(device), "precision": str(dtype).removeprefix("torch."),
            "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, {platform.system()}"}
    if model is not None:
        info["weights"] = weights_name(model, weights)
        info["attn_implementation"] = model.attn_implementation
    return info


def train_record(result: TrainResult) -> dict[str, Any]:
    """A training stage's manifest entry from its ``TrainResult``: work done, loss, and the
    reference pass and training loop timed apart where the trainer measured them."""
    return {"steps": result.steps, "tokens": result.tokens, "examples": result.examples,
            "mean_loss": result.mean_loss, "mean_margin": result.mean_margin, "resumed_s": result.resumed_s,
            "reference_s": round(result.reference_s, 1), "train_s": round(result.train_s, 1)}


class Run:
    """One method's run over a run directory; subclasses name their ``round_stages``."""

    #: the stages of one round before its evaluation, in order (names from ``run_dir.STAGES``)
    round_stages: tuple[str, ...] = ()

    def __init__(self, cfg: RunConfig, root: str | Path, *, progress: bool = True) -> None:
        unknown = [s for s in self.round_stages if s not in STAGES]
        if unknown:
            raise ValueError(f"{type(self).__name__}: unknown stage {unknown[0]!r} (known: {', '.join(STAGES)})")
        self.cfg = cfg
        self.dir = RunDir(Path(root))
        self.progress = progress
        self.device = resolve_device(cfg.device)
        #: what the weights load as, and what the forward computes in (half weights: their own dtype);
        #: 4-bit without bitsandbytes fails here, not mid-run
        self.weight_dtype, self.dtype = runtime_dtypes(cfg.model, cfg.precision, self.device)
        self.settings = eval_settings(cfg)
        self._tokenizer: Any = None
        self._judge_lm: tuple[torch.nn.Module, Any] | None = None  # mining.judge_model, loaded once

    # ----------------------------------------------------------------- models
    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.cfg.model.name, trust_remote_code=self.cfg.trust_remote_code)
        return self._tokenizer

    def base_model(self) -> torch.nn.Module:
        return load_model(self.cfg.model.name, trust_remote_code=self.cfg.trust_remote_code, device=str(self.device),
                          options=self.cfg.model)

    def accepted_rounds(self, before: int) -> list[int]:
        return [r for r in range(1, before) if self.dir.is_done(r, "decide") and self.dir.read_output(r, "decide")["accepted"]]

    def start_model(self, round_index: int, base: torch.nn.Module | None = None) -> torch.nn.Module:
        """The model round ``round_index`` starts from, rebuilt from the base (``base``: a freshly
        loaded one the caller already holds) and the saved adapters."""
        model = base if base is not None else self.base_model()
        accepted = self.accepted_rounds(round_index)
        if self.cfg.rounds.between == "merge":
            for r in accepted:
                model = merge_adapter(load_adapter(model, self.dir.adapter_dir(r)))
        elif accepted:
            model = load_adapter(model, self.dir.adapter_dir(accepted[-1]))
        return model

    def trainable_model(self, round_index: int, base: torch.nn.Module | None = None) -> torch.nn.Module:
        """The round's starting model with the adapter to train attached (built on ``base``, a
        freshly loaded base model, when the caller holds one).

        The RNG is seeded right before the adapter is created: its random init (LoRA's A) must
        not depend on what else this process happened to do first (a resumed run does less).
        """
        from transformers import set_seed

        set_seed(self.train_config(round_index).seed)
        base = base if base is not None else self.base_model()
        if self.cfg.rounds.between == "stack":
            accepted = self.accepted_rounds(round_index)
            if accepted:  # one adapter, trained on across rounds
                return load_adapter(base, self.dir.adapter_dir(accepted[-1]), trainable=True)
            return attach_adapter(base, self.cfg.adapter)
        return attach_adapter(self.start_model(round_index, base), self.cfg.adapter)

    def trained_model(self, round_index: int) -> torch.nn.Module:
        """The round's starting model with its freshly trained adapter loaded (not merged); a
        method whose rounds train nothing evaluates its starting model."""
        if "train" not in self.round_stages:
            return self.start_model(round_index)
        if self.cfg.rounds.between == "stack":
            return load_adapter(self.base_model(), self.dir.adapter_dir(round_index))
        return load_adapter(self.start_model(round_index), self.dir.adapter_dir(round_index))

    def train_config(self, round_index: int) -> TrainConfig:
        """The training settings of one round: a seed of its own, the run's progress setting, and
        half-precision weights' own dtype as the compute precision."""
        precision = self.cfg.train.precision
        if self.weight_dtype != torch.float32:
            precision = DTYPE_NAMES[self.weight_dtype]
        return dataclasses.replace(self.cfg.train, seed=self.cfg.seed * 1000 + round_index, progress=self.progress,
                                   precision=precision)

    def judge(self, policy: torch.nn.Module) -> Judge:
        """The grading judge; an ``llm`` judge runs ``mining.judge_model`` (default: the policy)."""
        if self.cfg.mining.judge == "llm" and self.cfg.mining.judge_model and self._judge_lm is None:
            self._judge_lm = load_judge_model(self.cfg, self.device)  # a separate judge never changes: load once
        return build_judge(self.cfg, policy, self.tokenizer, self._judge_lm)

    # ----------------------------------------------------------------- the shared stages
    def stage_eval(self, round_index: int, model: torch.nn.Module | None = None) -> dict[str, Any]:
        """Evaluate domain (held-out), general and dev views; round 0 is the starting model."""
        if model is None:
            model = self.start_model(1) if round_index == 0 else self.trained_model(round_index)
        report = evaluate(model, self.tokenizer, view_tasks(self.cfg), self.settings, self.dtype,
                          judge=self.judge(model), progress=self.progress)
        rows = {t: [r.to_row() for r in rs] for t, rs in report.items.items()}
        summary = summarize_views(rows, self.cfg.seed)
        extra: dict[str, Any] = {}
        if self.cfg.lm_eval.tasks:  # lm-evaluation-harness on the same model, beside the general set
            from aptune.evaluate.lm_eval_bridge import run_lm_eval

            extra["lm_eval"] = run_lm_eval(model, self.tokenizer, self.cfg.lm_eval, self.dtype, self.cfg.seed)
            if extra["lm_eval"]["mean"] is not None:
                summary["lm_eval"] = {"accuracy": extra["lm_eval"]["mean"], "n": len(extra["lm_eval"]["tasks"])}
        if is_main():  # every process holds the same results (the evaluator gathers its shards)
            report.write(self.dir.eval_dir(round_index), extra={"summary": summary, "round": round_index, **extra})
        self.dir.mark(round_index, "eval", **{v: s["accuracy"] for v, s in summary.items()})
        return summary

    def stage_decide(self, round_index: int, no_work_reason: str | None = None) -> dict[str, Any]:
        """Accept or roll back the round (general-capability gate) and decide whether to stop."""
        rounds = self.cfg.rounds
        if no_work_reason is not None:
            decision = {"accepted": False, "stop": True, "reason": no_work_reason}
        else:
            base = self.dir.read_output(0, "eval")["summary"]
            now = self.dir.read_output(round_index, "eval")["summary"]
            view, items = gate_view(base)
            general_drop = base[view]["accuracy"] - now[view]["accuracy"] if view else 0.0
            change = self._gate_change(round_index, view)
            verdict = general_gate(rounds.gate, rounds.general_tolerance, items, general_drop, change)
            lm_drop = (base["lm_eval"]["accuracy"] - now["lm_eval"]["accuracy"]
                       if self.cfg.lm_eval.gate and "lm_eval" in base and "lm_eval" in now else None)
            if lm_drop is not None and lm_drop > rounds.general_tolerance and not verdict.rolled_back:
                decision = {"accepted": False, "stop": True,
                            "reason": f"general-capability gate: the mean lm-eval metric ({', '.join(self.cfg.lm_eval.tasks)}) "
                                      f"fell {100 * lm_drop:.1f} points (tolerance {100 * rounds.general_tolerance:.1f}); "
                                      "round rolled back"}
            elif verdict.rolled_back:
                decision = {"accepted": False, "stop": True, "reason": verdict.reason}
            else:
                decision = {"accepted": True, "stop": False,
                            "reason": verdict.reason if view else "no general items: no general-capability gate"}
                if round_index >= rounds.max_rounds:
                    decision.update(stop=True, reason=f"reached max_rounds={rounds.max_rounds}")
                elif self._dev_stalled(round_index, now):
                    decision.update(stop=True, reason=f"dev accuracy did not improve for {rounds.patience} round(s)")
            if view:
                decision["gate"] = verdict.reason  # kept beside a stopping rule's reason
            if verdict.change is not None:
                decision["general_change"] = verdict.change.to_dict()
        self.dir.write_output(round_index, "decide", decision)
        self.dir.mark(round_index, "decide", **decision)
        log.info("round %d: %s — %s", round_index, "accepted" if decision["accepted"] else "not accepted", decision["reason"])
        return decision

    def _gate_change(self, round_index: int, view: str | None) -> Interval | None:
        """The paired change (round ``round_index`` minus round 0) on the gate's view; None
        where either round has no item rows (a decision rebuilt from summaries alone)."""
        if view is None or not all(self.dir.predictions(r).exists() for r in (0, round_index)):
            return None
        return paired_change(self.dir, round_index, self.cfg.seed).get(view)

    def _dev_stalled(self, round_index: int, now: dict[str, Any]) -> bool:
        """True when the last ``patience`` rounds beat no earlier dev accuracy by ``min_delta``."""
        if "dev" not in now:
            return False
        summaries = [self.dir.read_output(r, "eval")["summary"] for r in [0, *self.accepted_rounds(round_index)]]
        devs = [s["dev"]["accuracy"] for s in summaries] + [now["dev"]["accuracy"]]
        patience = self.cfg.rounds.patience
        if len(devs) <= patience:
            return False
        return max(devs[-patience:]) <= max(devs[:-patience]) + self.cfg.rounds.min_delta

    def check_before(self, round_index: int, stage: str) -> None:
        """Raise to stop the run before ``stage`` runs (e.g. the judge check before training);
        asked on every (re)run, so a stop holds until its cause or its setting changes."""

    def no_work(self, round_index: int, stage: str) -> str | None:
        """Why round ``round_index`` should end before ``stage`` (e.g. no weakness cases left),
        or None to run it. Asked on every (re)run, so a resumed run ends the same way."""
        return None

    # ----------------------------------------------------------------- driver
    def rounds(self) -> Iterator[int]:
        return iter(range(1, self.cfg.rounds.max_rounds + 1))

    def validate(self) -> None:
        """Load every task set and check the model path before any work: bad data or a
        missing model fails here with its one-line error, not an hour into the run."""
        from aptune.models import resolve_model_path

        for label, ts in (("pool", self.cfg.pool), *view_sets(self.cfg).items()):
            sets = load_taskset(ts, self.cfg.seed, self.cfg.prompt.shots)
            if label == "pool" and not any(sets.values()):
                raise ValueError(f"pool: no items in split {ts.split!r} of {', '.join(ts.tasks)}: nothing to mine")
            if label == "pool":
                self.check_pool(sets)
        resolve_model_path(self.cfg.model.name)

    def check_pool(self, sets: dict[str, list[Example]]) -> None:
        """Refuse a pool this method cannot use, given its items per task (loaded once, by
        ``validate``). Every method keys items by id across the pool's tasks (mining, retrieval,
        pairs), so ids must be unique; a method adds its own checks by extending this."""
        seen: dict[str, str] = {}
        for name, items in sets.items():
            for ex in items:
                if seen.setdefault(ex.id, name) != name:
                    raise ValueError(f"pool: item id {ex.id!r} is in both {seen[ex.id]} and {name}; ids must "
                                     "be unique across the pool's tasks (give one file's rows other ids)")

    def open(self) -> None:
        """Create the run directory, or reopen it when this config (under today's schema
        defaults) is the one it was started with; record where and how this invocation computes."""
        kept = self.dir.start(self.cfg.to_dict(), provenance(), defaults=RunConfig().to_dict())
        for path, value in kept.items():  # a default changed since the run began: it goes on as it started
            section, key = path.split(".")
            setattr(getattr(self.cfg, section), key, value)
            log.info("%s: %s keeps %r, its value when the run began", self.dir.root, path, value)
        if kept:
            self.settings = eval_settings(self.cfg)
        self.dir.record("runtime", runtime_info(self.device, self.dtype, self.cfg.model, self.weight_dtype))

    def run(self, on_stage: StageHook | None = None, on_round: RoundHook | None = None) -> dict[str, Any]:
        """Run (or resume) every round until a stopping rule fires; return the last decision."""
        self.validate()
        self.open()
        if not self.dir.is_done_everywhere(0, "eval"):
            if on_stage:
                on_stage(0, "eval")
            self.stage_eval(0)
        last: dict[str, Any] = {}
        for t in self.rounds():
            if self.dir.is_done_everywhere(t, "decide"):
                last = self.dir.read_output(t, "decide")
                if last["stop"]:
                    break
                continue
            last = self._run_round(t, on_stage)
            if on_round:
                on_round(t, last)
            if last.get("stop"):
                break
        return last

    def _run_round(self, t: int, on_stage: StageHook | None) -> dict[str, Any]:
        for stage in (*self.round_stages, "eval"):
            if self.dir.is_done_everywhere(t, stage):
                continue
            reason = self.no_work(t, stage)
            if reason is not None:
                return self.stage_decide(t, reason)
            self.check_before(t, stage)
            if on_stage:
                on_stage(t, stage)
            getattr(self, f"stage_{stage}")(t)
        return self.stage_decide(t)
