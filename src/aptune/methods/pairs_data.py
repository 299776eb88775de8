"""``dpo-pairs``: preference training on the user's own pairs — no mining, no judge.

The pool's rows carry ``prompt``/``chosen``/``rejected`` (``data/formats.py``: plain text or
messages); each becomes a pair in the run's prompt format, and the adapter is trained with the
configured preference loss (DPO family + NLL), as in an APT round. It is what ``aptune train``
runs on a preference file: TRL's ``DPOTrainer`` on your data, with aptune's evaluation and gate.
Unpaired rows (``prompt``/``completion``/``label``, TRL's KTO data) are written as one-sided rows
(the other side null) and train with ``train.loss: kto`` only.
"""

from __future__ import annotations

import dataclasses

from aptune.apt.pair_builder import pairs_from_preference_items, rows_from_unpaired_items
from aptune.data.example import Example
from aptune.methods.preference import PreferenceRun
from aptune.run.evaluation import load_taskset


class PairsDataRun(PreferenceRun):
    round_stages = ("pairs", "train")

    def no_work(self, round_index: int, stage: str) -> str | None:
        if stage == "train" and not self.dir.read_rows(round_index, "pairs"):
            return "no preference pairs: the pool has no rows"
        return None

    def check_pool(self, sets: dict[str, list[Example]]) -> None:
        """Unpaired rows are KTO data: refused, before any work, by any other loss."""
        super().check_pool(sets)
        if self.cfg.train.loss != "kto":
            unpaired = next((ex for exs in sets.values() for ex in exs if "desirable" in ex.meta), None)
            if unpaired is not None:
                raise ValueError(f"task {unpaired.task!r} item {unpaired.id!r}: an unpaired row (prompt, completion, "
                                 f"label) trains with train.loss: kto only, not {self.cfg.train.loss}")

    def stage_pairs(self, round_index: int) -> None:
        pool = [ex for exs in load_taskset(self.cfg.pool, self.cfg.seed, self.cfg.prompt.shots).values() for ex in exs]
        paired = [ex for ex in pool if "desirable" not in ex.meta]
        built = pairs_from_preference_items(paired, self.tokenizer, self.settings.prompt, source="pool") + self.user_pairs()
        rows = [{**dataclasses.asdict(b.pair), "source": b.source, "negative": b.negative} for b in built]
        rows += rows_from_unpaired_items([ex for ex in pool if "desirable" in ex.meta], self.tokenizer,
                                         self.settings.prompt, source="pool")
        self.dir.write_rows(round_index, "pairs", rows)
        self.dir.mark(round_index, "pairs", pairs=len(built), unpaired=len(rows) - len(built), pool=len(pool),
                      user_pairs=sum(b.source == "user" for b in built))
