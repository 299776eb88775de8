"""The baselines as small subclasses of ``APTRun``: each changes only how a round builds its
training set, or which stages a round has. Stages, files, resume, evaluation and report are
the APT run's own (``aptune.apt.loop``), so every method is measured by the same code.

- ``BaseRun``: no rounds; the run is round 0 (the starting model evaluated).
- ``SFTRun``: a round is ``pairs → train → eval``; the "pairs" stage writes the SFT training
  set (every domain pool item, prompt = ``render_prompt``, response = the gold answer via
  ``render_answer`` — the format evaluation scores — plus replay items) to ``pairs.jsonl``,
  and ``train`` runs ``train_sft``. No mining, no reference model.
- ``DPOAllRun``: APT's stages, but "retrieve" selects every pool item the model already gets
  right, so the pairs cover the whole pool (wrong items: rejected = the model's answer; right
  items: rejected = ``pairs.similar_negative``, by default its most likely wrong option).
"""

from __future__ import annotations

import logging
import random
from dataclasses import replace
from pathlib import Path

from aptune.apt.loop import APTRun
from aptune.apt.mining import load_answers
from aptune.config import RunConfig
from aptune.data import load_task
from aptune.data.example import Example
from aptune.io import read_jsonl, write_jsonl_atomic
from aptune.methods.spec import MethodSpec, ReplayConfig
from aptune.prompts import render_answer, render_prompt
from aptune.train.pairs import SFTItem
from aptune.train.trainer import train_sft

log = logging.getLogger(__name__)


class BaseRun(APTRun):
    """``base``: the starting model, evaluated once as round 0; nothing is trained."""

    round_stages = ()

    def rounds(self):  # noqa: ANN201 - same signature as APTRun.rounds
        return iter(())


class DPOAllRun(APTRun):
    """``dpo-all``: DPO+NLL on every pool item (APT without weakness selection or retrieval)."""

    def stage_retrieve(self, round_index: int) -> None:
        rows, _ = load_answers(self.dir.round_dir(round_index))
        chosen = [{"id": row["id"], "score": 1.0, "source_case_id": "", "strategy": "all"}
                  for row in rows if row["correct"]]
        write_jsonl_atomic(self.dir.stage_output(round_index, "retrieve"), chosen)
        self.dir.mark(round_index, "retrieve", retrieved=len(chosen), strategy="all (dpo-all)")


def check_replay(cfg: RunConfig, replay: ReplayConfig) -> None:
    """Refuse replay items that the general evaluation also reads (same task, same split)."""
    tasks = replay.tasks if replay.tasks is not None else cfg.general_eval.tasks
    shared = sorted(set(tasks) & set(cfg.general_eval.tasks))
    if shared and replay.split == cfg.general_eval.split:
        raise ValueError(f"replay.split {replay.split!r} is general_eval's split for {', '.join(shared)}: "
                         "replayed items would be evaluated on; use split: train")
    if not tasks and replay.ratio > 0:
        raise ValueError("replay: no tasks (and general_eval has none to default to)")


def _permuted(example: Example, rng: random.Random) -> Example:
    order = list(range(len(example.choices)))
    rng.shuffle(order)
    assert example.gold is not None
    return replace(example, choices=tuple(example.choices[i] for i in order), gold=order.index(example.gold))


class SFTRun(APTRun):
    """``sft-lora`` / ``sft-alora`` / ``sft-lora+replay``: supervised LoRA on the whole pool."""

    round_stages = ("pairs", "train", "eval")

    def __init__(self, cfg: RunConfig, root: str | Path, *, replay: ReplayConfig | None = None,
                 progress: bool = True) -> None:
        super().__init__(cfg, root, progress=progress)
        self.replay = replay
        if replay is not None:
            check_replay(cfg, replay)

    def replay_examples(self, n_domain: int) -> list[Example]:
        """``ratio × n_domain`` general items, spread evenly over the replay tasks (seeded order)."""
        if self.replay is None or self.replay.ratio <= 0:
            return []
        tasks = self.replay.tasks if self.replay.tasks is not None else self.cfg.general_eval.tasks
        want = round(self.replay.ratio * n_domain)
        per_task = [load_task(t, split=self.replay.split, limit=-(-want // len(tasks)), seed=self.cfg.seed)
                    for t in tasks]
        mixed = [ex for group in zip(*per_task) for ex in group]  # round-robin, then the leftovers
        longest = max((len(p) for p in per_task), default=0)
        mixed += [p[i] for i in range(min(map(len, per_task), default=0), longest) for p in per_task if i < len(p)]
        if len(mixed) < want:
            log.warning("replay: asked for %d general items, the tasks have %d", want, len(mixed))
        return mixed[:want]

    def sft_items(self, round_index: int) -> list[tuple[SFTItem, str]]:
        """(item, source) for the whole domain pool, then the replay items."""
        fmt = self.settings.prompt
        rng = random.Random(self.cfg.seed + round_index)
        pool = [ex for name in self.cfg.pool.tasks
                for ex in load_task(name, split=self.cfg.pool.split, limit=self.cfg.pool.limit, seed=self.cfg.seed)]
        out: list[tuple[SFTItem, str]] = []
        for source, examples in (("domain", pool), ("replay", self.replay_examples(len(pool)))):
            for ex in examples:
                if ex.is_multiple_choice and self.cfg.pairs.permute_options and fmt.mc_format == "letter":
                    ex = _permuted(ex, rng)
                answer = ex.gold if ex.is_multiple_choice else ex.reference
                out.append((SFTItem(render_prompt(ex, self.tokenizer, fmt),
                                    render_answer(ex, answer, self.tokenizer, fmt), f"{ex.task}/{ex.id}"), source))
        return out

    def stage_pairs(self, round_index: int) -> None:
        """Writes the SFT training set to ``pairs.jsonl`` (rows: id, prompt, response, source)."""
        items = self.sft_items(round_index)
        write_jsonl_atomic(self.dir.stage_output(round_index, "pairs"),
                           [{"id": it.id, "prompt": it.prompt, "response": it.response, "source": src}
                            for it, src in items])
        n_domain = sum(src == "domain" for _, src in items)
        # the per-run report reads pairs / weakness_pairs / similar_pairs: here items / domain / replay
        self.dir.mark(round_index, "pairs", pairs=len(items), weakness_pairs=n_domain,
                      similar_pairs=len(items) - n_domain, domain_items=n_domain, replay_items=len(items) - n_domain,
                      kind="sft items")

    def stage_train(self, round_index: int) -> None:
        rows = read_jsonl(self.dir.stage_output(round_index, "pairs"))
        items = [SFTItem(r["prompt"], r["response"], r["id"]) for r in rows]
        log.info("round %d: SFT on %d items", round_index, len(items))
        model = self.trainable_model(round_index)
        result = train_sft(model, self.tokenizer, items, self._train_cfg(round_index),
                           self.dir.round_dir(round_index) / "train")
        self.dir.mark(round_index, "train", reference="none (SFT)", steps=result.steps, tokens=result.tokens,
                      examples=result.examples, mean_loss=result.mean_loss, mean_margin=None,
                      resumed_s=result.resumed_s)


def make_run(spec: MethodSpec, cfg: RunConfig, root: str | Path, *, progress: bool = True) -> APTRun:
    """The run object for a method (``cfg`` already carries the method's overrides)."""
    if spec.kind == "base":
        return BaseRun(cfg, root, progress=progress)
    if spec.kind in ("sft-lora", "sft-alora"):
        return SFTRun(cfg, root, progress=progress)
    if spec.kind == "sft-lora+replay":
        return SFTRun(cfg, root, replay=spec.replay, progress=progress)
    if spec.kind == "dpo-all":
        return DPOAllRun(cfg, root, progress=progress)
    return APTRun(cfg, root, progress=progress)  # apt-lora, apt-alora
