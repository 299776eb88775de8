"""``sft-lora`` / ``sft-alora`` / ``sft-lora+replay``: supervised fine-tuning on the whole pool.

A round is ``sft_items → train``: every domain pool item becomes a training item, prompt =
``render_prompt`` and response = the gold answer via ``render_answer`` (the format evaluation
scores), then replay items from general tasks' train split when ``replay`` asks for them; the
adapter is trained on the token-mean NLL of the response. No mining, no reference model.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path

from aptune.config import RunConfig
from aptune.data import load_task
from aptune.data.example import Example
from aptune.data.options import shuffle_options
from aptune.prompts import gold_answer, render_answer, render_prompt
from aptune.run.driver import Run, train_record
from aptune.train.pairs import SFTItem
from aptune.train.trainer import train_sft

log = logging.getLogger(__name__)


@dataclass
class ReplayConfig:
    """General data mixed into SFT (``sft-lora+replay``): ``ratio`` general items per domain item.

    Items come from ``split`` (default train) of ``tasks`` (default: the run's general_eval
    tasks), so they never overlap the general evaluation, which reads another split.
    """

    tasks: list[str] | None = None
    split: str = "train"
    ratio: float = 0.25

    def __post_init__(self) -> None:
        if self.ratio < 0:
            raise ValueError(f"replay.ratio must be >= 0, not {self.ratio}")
        if self.split not in ("train", "dev", "test"):
            raise ValueError(f"replay.split must be train, dev or test, not {self.split!r}")


def check_replay(cfg: RunConfig, replay: ReplayConfig) -> None:
    """Refuse replay items that the general evaluation or the gate also reads (same task, same split)."""
    tasks = replay.tasks if replay.tasks is not None else cfg.general_eval.tasks
    for label, ts in (("general_eval", cfg.general_eval), ("general_dev", cfg.general_dev.resolved(cfg.general_eval))):
        shared = sorted(set(tasks) & set(ts.tasks))
        if shared and replay.split == ts.split:
            raise ValueError(f"replay.split {replay.split!r} is {label}'s split for {', '.join(shared)}: "
                             "replayed items would be evaluated on; use split: train")
    if not tasks and replay.ratio > 0:
        raise ValueError("replay: no tasks (and general_eval has none to default to)")


class SFTRun(Run):
    """Supervised LoRA/ALoRA on the whole domain pool, optionally with general replay."""

    round_stages = ("sft_items", "train")

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
        per_task = [load_task(t, split=self.replay.split, limit=-(-want // len(tasks)), seed=self.cfg.seed,
                              shots=self.cfg.prompt.shots)
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
                for ex in load_task(name, split=self.cfg.pool.split, limit=self.cfg.pool.limit, seed=self.cfg.seed,
                                   shots=self.cfg.prompt.shots, format=self.cfg.pool.format, fields=self.cfg.pool.fields)]
        out: list[tuple[SFTItem, str]] = []
        for source, examples in (("domain", pool), ("replay", self.replay_examples(len(pool)))):
            for ex in examples:
                if ex.is_multiple_choice and self.cfg.pairs.permute_options and fmt.mc_format == "letter":
                    ex, _ = shuffle_options(ex, rng)
                out.append((SFTItem(render_prompt(ex, self.tokenizer, fmt),
                                    render_answer(ex, gold_answer(ex, fmt), self.tokenizer, fmt), f"{ex.task}/{ex.id}"),
                            source))
        return out

    def no_work(self, round_index: int, stage: str) -> str | None:
        if stage == "train" and not self.dir.read_rows(round_index, "sft_items"):
            return "no training items: the pool is empty"
        return None

    def stage_sft_items(self, round_index: int) -> None:
        items = self.sft_items(round_index)
        self.dir.write_rows(round_index, "sft_items", [{"id": it.id, "prompt": it.prompt, "response": it.response,
                                                        "source": src} for it, src in items])
        n_domain = sum(src == "domain" for _, src in items)
        self.dir.mark(round_index, "sft_items", items=len(items), domain_items=n_domain,
                      replay_items=len(items) - n_domain)

    def stage_train(self, round_index: int) -> None:
        rows = self.dir.read_rows(round_index, "sft_items")
        items = [SFTItem(r["prompt"], r["response"], r["id"]) for r in rows]
        log.info("round %d: SFT on %d items", round_index, len(items))
        model = self.trainable_model(round_index)
        result = train_sft(model, self.tokenizer, items, self.train_config(round_index), self.dir.train_dir(round_index),
                           device=self.device)
        self.dir.mark(round_index, "train", reference="none (SFT)", **{**train_record(result), "mean_margin": None})
