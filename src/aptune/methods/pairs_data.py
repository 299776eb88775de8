"""``dpo-pairs``: preference training on the user's own pairs — no mining, no judge.

The pool's rows carry ``prompt``/``chosen``/``rejected`` (``data/formats.py``: plain text or
messages); each becomes a pair in the run's prompt format, and the adapter is trained with the
configured preference loss (DPO family + NLL), as in an APT round. It is what ``aptune train``
runs on a preference file: TRL's ``DPOTrainer`` on your data, with aptune's evaluation and gate.
"""

from __future__ import annotations

import dataclasses

from aptune.apt.pair_builder import pairs_from_preference_items
from aptune.methods.preference import PreferenceRun
from aptune.run.evaluation import load_taskset


class PairsDataRun(PreferenceRun):
    round_stages = ("pairs", "train")

    def no_work(self, round_index: int, stage: str) -> str | None:
        if stage == "train" and not self.dir.read_rows(round_index, "pairs"):
            return "no preference pairs: the pool has no rows"
        return None

    def stage_pairs(self, round_index: int) -> None:
        pool = [ex for exs in load_taskset(self.cfg.pool, self.cfg.seed, self.cfg.prompt.shots).values() for ex in exs]
        built = pairs_from_preference_items(pool, self.tokenizer, self.settings.prompt, source="pool") + self.user_pairs()
        self.dir.write_rows(round_index, "pairs", [{**dataclasses.asdict(b.pair), "source": b.source,
                                                    "negative": b.negative} for b in built])
        self.dir.mark(round_index, "pairs", pairs=len(built), pool=len(pool),
                      user_pairs=sum(b.source == "user" for b in built))
