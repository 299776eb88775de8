"""``apt-lora`` / ``apt-alora``: APT, Weakness Case Acquisition and Iterative Preference Training.

Each round: the model answers the domain pool and the judge marks its mistakes (``mine``);
pool items similar to those mistakes are retrieved (``retrieve``); preference pairs are built,
gold = chosen and the model's own wrong answer = rejected (``pairs``); the adapter is trained
with DPO + NLL (``train``); the driver then evaluates the round and the general gate decides.

Stated assumption: the retrieval pool is the mined pool, so similar cases are items the model
may already answer correctly; their rejected side comes from ``pairs.similar_negative``.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from aptune.data.example import Example
from aptune.methods.preference import PreferenceRun

log = logging.getLogger(__name__)


class APTRun(PreferenceRun):
    round_stages = ("mine", "retrieve", "pairs", "train")

    def stage_retrieve(self, round_index: int) -> None:
        from aptune.retrieval import retrieve_similar

        rows, weakness = self.dir.read_answers(round_index)
        r = self.cfg.retrieval
        retrieved: list[dict[str, Any]] = []
        why_none = None  # why no similar case could be retrieved, for the log and the report
        if not weakness:
            why_none = "no weakness cases"
        elif r.strategy == "none":
            why_none = "retrieval.strategy is none"
        elif len(weakness) == len(rows):
            why_none = (f"every pool item ({len(rows)}) is a weakness case, and weakness cases are never "
                        "retrieved: only the mistakes themselves become pairs")
        if why_none is not None:
            log.info("round %d: no similar cases retrieved: %s", round_index, why_none)
        else:
            pool = [Example.from_dict(row["example"]) for row in rows]
            cases = retrieve_similar(
                pool, [w["id"] for w in weakness], strategy=r.strategy, s=r.s,
                cache_dir=self.dir.cache_dir, encoder=r.encoder, embed=r.embed,
                seed=self.cfg.seed + round_index,
            )
            retrieved = [dataclasses.asdict(c) for c in cases]
        self.dir.write_rows(round_index, "retrieve", retrieved)
        extra = {"why_none": why_none} if why_none is not None else {}
        self.dir.mark(round_index, "retrieve", retrieved=len(retrieved), strategy=r.strategy, **extra)

    def similar_rows(self, round_index: int) -> list[dict[str, Any]]:
        rows, _ = self.dir.read_answers(round_index)
        by_id = {row["id"]: row for row in rows}
        return [by_id[c["id"]] for c in self.dir.read_rows(round_index, "retrieve")]
