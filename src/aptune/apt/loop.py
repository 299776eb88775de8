"""The APT round loop: mine → retrieve → pairs → train → eval → decide, repeated.

Each stage reads the files earlier stages wrote and writes its own (``run_dir.py`` lists
them); ``run()`` skips every stage whose output exists, so rerunning the same command after
a kill resumes at the first unfinished stage. The model a round starts from is always
rebuilt from disk (base weights + the adapters of accepted rounds), never carried over in
memory, so an interrupted run and an uninterrupted one compute on identical weights and end
with identical metrics.

Assumptions, stated: the retrieval pool is the mined pool (so similar cases are items the
model already answers correctly, and their rejected side comes from ``pairs.similar_negative``);
the general-capability gate compares each round with the starting model (round 0), so drift
cannot accumulate in steps each under the tolerance.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from aptune.adapters import attach_adapter, load_adapter, merge_adapter
from aptune.apt.mining import load_answers, mine
from aptune.apt.pair_builder import build_pairs
from aptune.apt.run_dir import RunDir
from aptune.config import RunConfig, TaskSet
from aptune.data import load_task
from aptune.data.example import Example
from aptune.distributed import barrier, device, is_main
from aptune.evaluate.metrics import bootstrap_mean
from aptune.evaluate.runner import EvalSettings, evaluate
from aptune.io import read_json, read_jsonl, write_json_atomic, write_jsonl_atomic
from aptune.models import load_model, load_tokenizer, resolve_precision
from aptune.prompts import PromptFormat, render_answer, render_prompt
from aptune.provenance import provenance
from aptune.train.pairs import PreferencePair
from aptune.train.trainer import reference_logps_for_pairs, train_preference

log = logging.getLogger(__name__)

#: evaluation task-name prefixes: one eval call covers all three views of a round
VIEWS = ("domain", "general", "dev")


def load_taskset(ts: TaskSet, seed: int) -> dict[str, list[Example]]:
    return {name: load_task(name, split=ts.split, limit=ts.limit, seed=seed) for name in ts.tasks}


def eval_settings(cfg: RunConfig) -> EvalSettings:
    return EvalSettings(
        prompt=PromptFormat(cfg.prompt.template, cfg.prompt.mc_format, cfg.prompt.system_prompt),
        mc_metric=cfg.mining.mc_metric,
        max_new_tokens=cfg.mining.max_new_tokens,
        seed=cfg.seed,
        judge=cfg.mining.judge,
        generation_backend=cfg.mining.generation_backend,
        too_long=cfg.prompt.too_long,
    )


def summarize_views(items_by_task: dict[str, list[dict[str, Any]]], seed: int) -> dict[str, Any]:
    """Pooled accuracy per view (domain / general / dev) with bootstrap intervals."""
    summary: dict[str, Any] = {}
    for view in VIEWS:
        correct = [row["correct"] for task, rows in items_by_task.items() if task.startswith(view + "/") for row in rows]
        if correct:
            iv = bootstrap_mean(correct, seed=seed)
            summary[view] = {"accuracy": iv.value, "low": iv.low, "high": iv.high, "n": len(correct)}
    return summary


class APTRun:
    """One APT run over a run directory; each ``stage_*`` method is one resumable stage."""

    #: the stages of one round, in order; a baseline (``aptune.methods``) runs a subset
    round_stages: tuple[str, ...] = ("mine", "retrieve", "pairs", "train", "eval")

    def __init__(self, cfg: RunConfig, root: str | Path, *, progress: bool = True) -> None:
        self.cfg = cfg
        self.dir = RunDir(Path(root))
        self.progress = progress
        self.dtype = resolve_precision(cfg.precision)
        self.settings = eval_settings(cfg)
        self._tokenizer: Any = None
        self._judge_lm: tuple[torch.nn.Module, Any] | None = None  # mining.judge_model, loaded once

    # ----------------------------------------------------------------- models
    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.cfg.model, trust_remote_code=self.cfg.trust_remote_code)
        return self._tokenizer

    def base_model(self) -> torch.nn.Module:
        return load_model(self.cfg.model, trust_remote_code=self.cfg.trust_remote_code, device=str(device()))

    def accepted_rounds(self, before: int) -> list[int]:
        return [
            r for r in range(1, before)
            if self.dir.is_done(r, "decide") and read_json(self.dir.stage_output(r, "decide"))["accepted"]
        ]

    def start_model(self, round_index: int) -> torch.nn.Module:
        """The model round ``round_index`` starts from, rebuilt from the base and saved adapters."""
        model = self.base_model()
        accepted = self.accepted_rounds(round_index)
        if self.cfg.rounds.between == "merge":
            for r in accepted:
                model = merge_adapter(load_adapter(model, self.dir.adapter_dir(r)))
        elif accepted:
            model = load_adapter(model, self.dir.adapter_dir(accepted[-1]))
        return model

    def trainable_model(self, round_index: int) -> torch.nn.Module:
        """The round's starting model with the adapter to train attached.

        The RNG is seeded right before the adapter is created: its random init (LoRA's A) must
        not depend on what else this process happened to do first (a resumed run does less).
        """
        from transformers import set_seed

        set_seed(self._train_cfg(round_index).seed)
        if self.cfg.rounds.between == "stack":
            accepted = self.accepted_rounds(round_index)
            if accepted:  # one adapter, trained on across rounds
                return load_adapter(self.base_model(), self.dir.adapter_dir(accepted[-1]), trainable=True)
            return attach_adapter(self.base_model(), self.cfg.adapter)
        return attach_adapter(self.start_model(round_index), self.cfg.adapter)

    def trained_model(self, round_index: int) -> torch.nn.Module:
        """The round's starting model with its freshly trained adapter loaded (not merged)."""
        if self.cfg.rounds.between == "stack":
            return load_adapter(self.base_model(), self.dir.adapter_dir(round_index))
        return load_adapter(self.start_model(round_index), self.dir.adapter_dir(round_index))

    # ----------------------------------------------------------------- stages
    def stage_eval(self, round_index: int, model: torch.nn.Module | None = None) -> dict[str, Any]:
        """Evaluate domain (held-out), general and dev views; round 0 is the starting model."""
        if model is None:
            model = self.start_model(1) if round_index == 0 else self.trained_model(round_index)
        tasks: dict[str, list[Example]] = {}
        for view, ts in (("domain", self.cfg.domain_eval), ("general", self.cfg.general_eval), ("dev", self.cfg.dev)):
            for name, examples in load_taskset(ts, self.cfg.seed).items():
                tasks[f"{view}/{name}"] = examples
        report = evaluate(model, self.tokenizer, tasks, self.settings, self.dtype, judge=self.judge(model),
                          progress=self.progress)
        rows = {t: [r.to_row() for r in rs] for t, rs in report.items.items()}
        summary = summarize_views(rows, self.cfg.seed)
        report.write(self.dir.round_dir(round_index) / "eval", extra={"summary": summary, "round": round_index})
        self.dir.mark(round_index, "eval", **{v: s["accuracy"] for v, s in summary.items()})
        return summary

    def judge(self, policy: torch.nn.Module) -> Any:
        """The mining judge; an ``llm`` judge runs ``mining.judge_model`` (default: the policy)."""
        from aptune.evaluate.generation import make_generate_fn
        from aptune.evaluate.judges import get_judge

        m = self.cfg.mining
        if m.judge != "llm":
            return get_judge(m.judge or "auto")
        if m.judge_model:
            if self._judge_lm is None:  # a separate judge never changes: load it once per run
                self._judge_lm = (load_model(m.judge_model, trust_remote_code=self.cfg.trust_remote_code,
                                             device=str(device())),
                                  load_tokenizer(m.judge_model, trust_remote_code=self.cfg.trust_remote_code))
            judge_model, judge_tok = self._judge_lm
        else:
            judge_model, judge_tok = policy, self.tokenizer
        generate = make_generate_fn(judge_model, judge_tok, dtype=self.dtype)
        return get_judge("llm", generate=generate, threshold=m.judge_threshold)

    def stage_mine(self, round_index: int) -> None:
        model = self.start_model(round_index)
        pool = [ex for exs in load_taskset(self.cfg.pool, self.cfg.seed).values() for ex in exs]
        _, weakness = mine(model, self.tokenizer, pool, self.settings, self.dtype,
                           self.dir.round_dir(round_index), judge=self.judge(model), progress=self.progress)
        self.dir.mark(round_index, "mine", pool=len(pool), weakness=len(weakness),
                      sft_pool_tokens=self._sft_tokens(pool))

    def _sft_tokens(self, pool: list[Example]) -> int:
        """Tokens one SFT epoch on the whole pool would process (prompt + gold answer): the
        data-efficiency yardstick the report sets APT's training tokens against."""
        fmt = self.settings.prompt
        texts = [render_prompt(ex, self.tokenizer, fmt) + render_answer(
            ex, ex.gold if ex.is_multiple_choice else ex.reference, self.tokenizer, fmt) for ex in pool]
        return sum(len(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"])

    def stage_retrieve(self, round_index: int) -> None:
        from aptune.retrieval import retrieve_similar

        rows, weakness = load_answers(self.dir.round_dir(round_index))
        r = self.cfg.retrieval
        retrieved: list[dict[str, Any]] = []
        if weakness and r.strategy != "none":
            pool = [Example.from_dict(row["example"]) for row in rows]
            cases = retrieve_similar(
                pool, [w["id"] for w in weakness], strategy=r.strategy, s=r.s,
                cache_dir=self.dir.root / "cache", encoder=r.encoder, embed=r.embed,
                seed=self.cfg.seed + round_index,
            )
            retrieved = [dataclasses.asdict(c) for c in cases]
        write_jsonl_atomic(self.dir.stage_output(round_index, "retrieve"), retrieved)
        self.dir.mark(round_index, "retrieve", retrieved=len(retrieved), strategy=r.strategy)

    def stage_pairs(self, round_index: int) -> None:
        rd = self.dir.round_dir(round_index)
        rows, weakness = load_answers(rd)
        by_id = {row["id"]: row for row in rows}
        similar = [by_id[c["id"]] for c in read_jsonl(self.dir.stage_output(round_index, "retrieve"))]
        pc = self.cfg.pairs
        built = build_pairs(
            weakness, similar, self.tokenizer, self.settings.prompt,
            similar_negative=pc.similar_negative, permute_options=pc.permute_options,
            mc_metric=self.cfg.mining.mc_metric, seed=self.cfg.seed + round_index,
            sampled_negatives=self._sampled_negatives(round_index, similar),
        )
        write_jsonl_atomic(
            self.dir.stage_output(round_index, "pairs"),
            [{**dataclasses.asdict(b.pair), "source": b.source, "negative": b.negative} for b in built],
        )
        n_weak = sum(b.source == "weakness" for b in built)
        negatives = dict(Counter(b.negative for b in built))
        self.dir.mark(round_index, "pairs", pairs=len(built), weakness_pairs=n_weak, similar_pairs=len(built) - n_weak,
                      negatives=negatives)

    def _sampled_negatives(self, round_index: int, similar: list[dict[str, Any]]) -> dict[str, str] | None:
        """Wrong sampled answers for the generative similar cases the model gets right
        (``pairs.similar_negative: model_sample``); None when that rule is not in use."""
        from aptune.apt.negatives import sample_negatives

        pc = self.cfg.pairs
        if pc.similar_negative != "model_sample":
            return None
        need = [row for row in similar if row["correct"] and not row["example"].get("choices")]
        if not need:
            return {}
        model = self.start_model(round_index)
        return sample_negatives(model, self.tokenizer, need, self.settings, self.judge(model),
                                pc.sampling(seed=self.cfg.seed + round_index), dtype=self.dtype, progress=self.progress)

    def _reference(self, round_index: int, pairs: list[PreferencePair]) -> tuple[dict[str, Any] | None, str]:
        """Precomputed reference log-probs (or None: the trainer uses the disabled adapter)."""
        rounds = self.cfg.rounds
        if rounds.reference == "round_start" or rounds.between == "stack" or not self.accepted_rounds(round_index):
            what = "round-start model (adapter disabled)" if rounds.between == "merge" else "original model (adapter disabled)"
            return None, what
        base = self.base_model()
        logps = reference_logps_for_pairs(base, self.tokenizer, pairs, self._train_cfg(round_index),
                                          reference_context=lambda m: contextlib.nullcontext(m))
        return logps, "original model (separate copy)"

    def _train_cfg(self, round_index: int):  # noqa: ANN202
        return dataclasses.replace(self.cfg.train, seed=self.cfg.seed * 1000 + round_index, progress=self.progress)

    def stage_train(self, round_index: int) -> None:
        rows = read_jsonl(self.dir.stage_output(round_index, "pairs"))
        pairs = [PreferencePair(r["id"], r["prompt"], r["chosen"], r["rejected"]) for r in rows]
        reference, what = self._reference(round_index, pairs)
        log.info("round %d: training on %d pairs; DPO reference = %s", round_index, len(pairs), what)
        model = self.trainable_model(round_index)
        result = train_preference(
            model, self.tokenizer, pairs, self._train_cfg(round_index), self.dir.round_dir(round_index) / "train",
            reference_logps=reference,
        )
        self.dir.mark(round_index, "train", reference=what, steps=result.steps, tokens=result.tokens,
                      examples=result.examples, mean_loss=result.mean_loss, mean_margin=result.mean_margin,
                      resumed_s=result.resumed_s)

    def stage_decide(self, round_index: int, no_work_reason: str | None = None) -> dict[str, Any]:
        """Accept or roll back the round (general-capability gate) and decide whether to stop."""
        rounds = self.cfg.rounds
        if no_work_reason is not None:
            decision = {"accepted": False, "stop": True, "reason": no_work_reason}
        else:
            base = read_json(self.dir.stage_output(0, "eval"))["summary"]
            now = read_json(self.dir.stage_output(round_index, "eval"))["summary"]
            general_drop = base["general"]["accuracy"] - now["general"]["accuracy"] if "general" in base else 0.0
            if general_drop > rounds.general_tolerance:
                decision = {"accepted": False, "stop": True,
                            "reason": f"general-capability gate: general accuracy fell {100 * general_drop:.1f} points "
                                      f"(tolerance {100 * rounds.general_tolerance:.1f}); round rolled back"}
            else:
                decision = {"accepted": True, "stop": False, "reason": "within the general-capability tolerance"}
                if round_index >= rounds.max_rounds:
                    decision.update(stop=True, reason=f"reached max_rounds={rounds.max_rounds}")
                elif self._dev_stalled(round_index, now):
                    decision.update(stop=True, reason=f"dev accuracy did not improve for {rounds.patience} round(s)")
        write_json_atomic(self.dir.stage_output(round_index, "decide"), decision)
        self.dir.mark(round_index, "decide", **decision)
        log.info("round %d: %s — %s", round_index, "accepted" if decision["accepted"] else "not accepted", decision["reason"])
        return decision

    def _dev_stalled(self, round_index: int, now: dict[str, Any]) -> bool:
        """True when the last ``patience`` rounds beat no earlier dev accuracy by ``min_delta``."""
        if "dev" not in now:
            return False
        summaries = [read_json(self.dir.stage_output(r, "eval"))["summary"]
                     for r in [0, *self.accepted_rounds(round_index)]]
        devs = [s["dev"]["accuracy"] for s in summaries] + [now["dev"]["accuracy"]]
        patience = self.cfg.rounds.patience
        if len(devs) <= patience:
            return False
        return max(devs[-patience:]) <= max(devs[:-patience]) + self.cfg.rounds.min_delta

    # ----------------------------------------------------------------- driver
    def rounds(self) -> Iterator[int]:
        return iter(range(1, self.cfg.rounds.max_rounds + 1))

    def validate(self) -> None:
        """Load every task set and check the model path before any work: bad data or a
        missing model fails here with its one-line error, not an hour into the run."""
        from aptune.models import resolve_model_path

        for label, ts in (("pool", self.cfg.pool), ("dev", self.cfg.dev), ("domain_eval", self.cfg.domain_eval),
                          ("general_eval", self.cfg.general_eval)):
            sets = load_taskset(ts, self.cfg.seed)
            if label == "pool" and not any(sets.values()):
                raise ValueError(f"pool: no items in split {ts.split!r} of {', '.join(ts.tasks)}: nothing to mine")
        resolve_model_path(self.cfg.model)

    def open(self) -> None:
        """Create the run directory, or reopen it when this config (under today's schema
        defaults) is the one it was started with."""
        self.dir.start(self.cfg.to_dict(), provenance(), defaults=RunConfig().to_dict())

    def run(self, on_stage: Callable[[int, str], None] | None = None) -> dict[str, Any]:
        """Run (or resume) every round until a stopping rule fires; then write the report."""
        self.validate()
        self.open()
        if not self.dir.is_done_everywhere(0, "eval"):
            self.stage_eval(0)
        last: dict[str, Any] = {}
        for t in self.rounds():
            if self.dir.is_done_everywhere(t, "decide"):
                last = read_json(self.dir.stage_output(t, "decide"))
                if last["stop"]:
                    break
                continue
            for stage in self.round_stages:
                if self.dir.is_done_everywhere(t, stage):
                    continue
                if stage == "retrieve" and not read_jsonl(self.dir.stage_output(t, "mine")):
                    last = self.stage_decide(t, "no weakness cases: the model answers every pool item correctly")
                    break
                if stage == "train" and not read_jsonl(self.dir.stage_output(t, "pairs")):
                    last = self.stage_decide(t, "no preference pairs could be built")
                    break
                if on_stage:
                    on_stage(t, stage)
                getattr(self, f"stage_{stage}")(t)
            else:
                last = self.stage_decide(t)
            if last.get("stop"):
                break
        from aptune.report.apt_report import write_report

        if is_main():
            write_report(self.dir.root)
        barrier()
        return last
