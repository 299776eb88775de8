"""The stages that preference-training methods share: mine the pool, build pairs, train DPO.

APT (``apt.py``) and dpo-all (``dpo_all.py``) differ only in which items beyond the mistakes
they train on (``similar_rows``); both answer the pool with the evaluator's own code, build
pairs with gold = chosen and the model's own wrong answer = rejected, and train the adapter
with the configured preference loss (DPO family + NLL).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections import Counter
from typing import Any

import torch

from aptune.apt.judge_check import JudgeCheckError, check_answers, failure_message
from aptune.apt.mining import mine
from aptune.adapters import attach_adapter
from aptune.adapters.api import DECOMPOSING
from aptune.apt.pair_builder import BuiltPair, build_pairs, pairs_from_preference_items
from aptune.data import load_task
from aptune.data.example import Example
from aptune.prompts import encode_prompt, gold_answer, render_answer, render_prompt
from aptune.run.driver import Run, train_record
from aptune.run.evaluation import load_taskset
from aptune.train.pairs import PreferencePair
from aptune.train.kto import examples_from_pair_rows, with_kl_completions
from aptune.train.trainer import reference_logps_for_pairs, train_kto, train_preference

log = logging.getLogger(__name__)


class PreferenceRun(Run):
    """Mining, pairs and preference training; a subclass says what besides the mistakes to pair."""

    def similar_rows(self, round_index: int) -> list[dict[str, Any]]:
        """Mining rows of the items to pair besides the weakness cases."""
        raise NotImplementedError

    def no_work(self, round_index: int, stage: str) -> str | None:
        if stage in ("retrieve", "select", "pairs") and not self.dir.read_rows(round_index, "mine"):
            return "no weakness cases: the model answers every pool item correctly"
        if stage == "train" and not self.dir.read_rows(round_index, "pairs"):
            return "no preference pairs could be built"
        return None

    def stage_mine(self, round_index: int) -> None:
        model = self.start_model(round_index)
        pool = [ex for exs in load_taskset(self.cfg.pool, self.cfg.seed, self.cfg.prompt.shots).values() for ex in exs]
        rows = mine(model, self.tokenizer, pool, self.settings, self.dtype, judge=self.judge(model),
                    progress=self.progress)
        self.dir.write_answers(round_index, rows)
        self.dir.mark(round_index, "mine", pool=len(pool), weakness=sum(not r["correct"] for r in rows),
                      sft_pool_tokens=self._sft_tokens(pool))

    def check_before(self, round_index: int, stage: str) -> None:
        """The judge check (``apt/judge_check.py``) before the first stage after mining."""
        stages = self.round_stages
        after_mine = stages[stages.index("mine") + 1] if "mine" in stages[:-1] else None
        if stage != after_mine:
            return
        m = self.cfg.mining
        rows, _ = self.dir.read_answers(round_index)
        check = check_answers(rows, round_index, max_wrong_share=m.max_wrong_share, max_length_ratio=m.max_length_ratio)
        checks = {**self.dir.manifest().get("judge_checks", {}),
                  str(round_index): {**check.to_dict(), "accepted_by_user": not check.passed and m.accept_judge}}
        self.dir.record("judge_checks", checks)
        if check.passed:
            return
        if m.accept_judge:
            log.warning("round %d: judge check failed (%s); going on (mining.accept_judge)", round_index,
                        "; ".join(check.problems))
            return
        raise JudgeCheckError(failure_message(check, m.judge), check)

    def _sft_tokens(self, pool: list[Example]) -> int:
        """Tokens one SFT epoch on the whole pool would process (prompt + gold answer): the
        data-efficiency yardstick the report sets preference training's tokens against."""
        fmt = self.settings.prompt
        texts = [render_prompt(ex, self.tokenizer, fmt) + render_answer(
            ex, gold_answer(ex, fmt), self.tokenizer, fmt) for ex in pool]
        return sum(len(encode_prompt(self.tokenizer, text)) for text in texts)

    def stage_pairs(self, round_index: int) -> None:
        _, weakness = self.dir.read_answers(round_index)
        similar = self.similar_rows(round_index)
        pc = self.cfg.pairs
        built = build_pairs(
            weakness, similar, self.tokenizer, self.settings.prompt,
            similar_negative=pc.similar_negative, permute_options=pc.permute_options,
            mc_metric=self.cfg.mining.mc_metric, seed=self.cfg.seed + round_index,
            sampled_negatives=self._sampled_negatives(round_index, similar),
        )
        built += self.user_pairs()
        self.dir.write_rows(round_index, "pairs", [{**dataclasses.asdict(b.pair), "source": b.source,
                                                    "negative": b.negative} for b in built])
        by_source = Counter(b.source for b in built)
        self.dir.mark(round_index, "pairs", pairs=len(built), weakness_pairs=by_source["weakness"],
                      similar_pairs=by_source["similar"], **({"user_pairs": by_source["user"]} if by_source["user"] else {}),
                      negatives=dict(Counter(b.negative for b in built)))

    def user_pairs(self) -> list[BuiltPair]:
        """``pairs.extra``: the user's own preference rows, every one, as pairs (source ``user``)."""
        items = [ex for name in self.cfg.pairs.extra for ex in load_task(name, split="source", seed=self.cfg.seed)]
        return pairs_from_preference_items(items, self.tokenizer, self.settings.prompt)

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

    def _model_and_reference(self, round_index: int,
                             pairs: list[PreferencePair]) -> tuple[torch.nn.Module, dict[str, Any] | None, str]:
        """The model to train, its precomputed reference log-probs (None: the trainer uses the
        disabled adapter) and what the reference is, for the manifest.

        ``reference: original`` after merged rounds is the one case where switching the adapter
        off does not give the reference: the original weights score the pairs first, then the
        same copy takes the accepted rounds' merges and the new adapter, so one set of weights
        is ever in memory (and loaded once), not a policy and a reference model side by side."""
        from aptune.train.losses import REFERENCE_FREE

        rounds = self.cfg.rounds
        if self.cfg.train.loss in REFERENCE_FREE:
            return self.trainable_model(round_index), None, f"none: the {self.cfg.train.loss} loss reads no reference " \
                                                            "(reference pass skipped)"
        if rounds.reference == "original" and rounds.between == "merge" and self.accepted_rounds(round_index):
            original = self.base_model()
            logps = reference_logps_for_pairs(original, self.tokenizer, pairs, self.train_config(round_index),
                                              reference_context=lambda m: contextlib.nullcontext(m), device=self.device)
            return self.trainable_model(round_index, base=original), logps, \
                "original model (log-probs scored before the accepted rounds were merged in)"
        if self.cfg.adapter.init in DECOMPOSING and not (rounds.between == "stack" and self.accepted_rounds(round_index)):
            # PiSSA/OLoRA move part of each weight into the new adapter, so switching the adapter
            # off no longer gives the starting model: score the pairs first, then attach to the
            # same copy (a stacked run's later rounds load a converted adapter: off = original)
            from transformers import set_seed

            start = self.start_model(round_index)
            logps = reference_logps_for_pairs(start, self.tokenizer, pairs, self.train_config(round_index),
                                              reference_context=lambda m: contextlib.nullcontext(m), device=self.device)
            set_seed(self.train_config(round_index).seed)
            return attach_adapter(start, self.cfg.adapter), logps, \
                f"starting model (scored before the {self.cfg.adapter.init} init moved part of the weights into the adapter)"
        what = "round-start model (adapter disabled)" if rounds.between == "merge" else "original model (adapter disabled)"
        return self.trainable_model(round_index), None, what

    def stage_train(self, round_index: int) -> None:
        rows = self.dir.read_rows(round_index, "pairs")
        cfg = self.train_config(round_index)
        if cfg.loss == "kto":  # unpaired: each pair's sides as examples, scored with their mismatched completions
            examples = examples_from_pair_rows(rows)
            scored, _ = with_kl_completions(examples, cfg.seed)
            model, reference, what = self._model_and_reference(round_index, scored)
            log.info("round %d: KTO on %d examples (%d desirable) from %d pairs; reference = %s", round_index,
                     len(examples), sum(e.desirable for e in examples), len(rows), what)
            result = train_kto(model, self.tokenizer, examples, cfg, self.dir.train_dir(round_index),
                               reference_logps=reference, device=self.device)
            self.dir.mark(round_index, "train", reference=what, kto_examples=len(examples),
                          kto_desirable=sum(e.desirable for e in examples), **train_record(result))
            return
        pairs = [PreferencePair(r["id"], r["prompt"], r["chosen"], r["rejected"]) for r in rows]
        model, reference, what = self._model_and_reference(round_index, pairs)
        log.info("round %d: training on %d pairs; DPO reference = %s", round_index, len(pairs), what)
        result = train_preference(model, self.tokenizer, pairs, cfg, self.dir.train_dir(round_index),
                                  reference_logps=reference, device=self.device)
        self.dir.mark(round_index, "train", reference=what, **train_record(result))
