"""``apt-lora`` / ``apt-alora``: APT, Weakness Case Acquisition and Iterative Preference Training.

Each round: the model answers the domain pool and the judge marks its mistakes (``mine``);
pool items similar to those mistakes are retrieved (``retrieve``); preference pairs are built,
gold = chosen and the model's own wrong answer = rejected (``pairs``); the adapter is trained
with DPO + NLL (``train``); the driver then evaluates the round and the general gate decides.

The retrieval pool is the mined pool by default, so similar cases are items the model may
already answer correctly; their rejected side comes from ``pairs.similar_negative``.
``retrieval.pool`` names a separate (usually larger) pool instead, as the released APT code
retrieves from: its items are answered by the round's model after retrieval (the same mining
code), and any item that is also a held-out item (domain_eval, dev: same task and id, or the
same normalised question) is refused and counted.
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
        rows, weakness = self.dir.read_answers(round_index)
        r = self.cfg.retrieval
        retrieved: list[dict[str, Any]] = []
        why_none = None  # why no similar case could be retrieved, for the log and the report
        if not weakness:
            why_none = "no weakness cases"
        elif r.strategy == "none":
            why_none = "retrieval.strategy is none"
        elif len(weakness) == len(rows) and not r.pool.tasks:
            why_none = (f"every pool item ({len(rows)}) is a weakness case, and weakness cases are never "
                        "retrieved: only the mistakes themselves become pairs")
        if why_none is not None:
            log.info("round %d: no similar cases retrieved: %s", round_index, why_none)
        extra: dict[str, Any] = {}
        if why_none is None and r.pool.tasks:
            pool, extra = self._separate_pool(weakness)
            retrieved = self._retrieve(pool, weakness, round_index)
            self._answer_retrieved(retrieved, {ex.id: ex for ex in pool}, round_index)
        elif why_none is None:
            retrieved = self._retrieve([Example.from_dict(row["example"]) for row in rows], weakness, round_index)
        self.dir.write_rows(round_index, "retrieve", retrieved)
        if why_none is not None:
            extra["why_none"] = why_none
        self.dir.mark(round_index, "retrieve", retrieved=len(retrieved), strategy=r.strategy, **extra)

    def _retrieve(self, pool: list[Example], weakness: list[dict[str, Any]], round_index: int) -> list[dict[str, Any]]:
        from aptune.retrieval import retrieve_similar

        r = self.cfg.retrieval
        cases = retrieve_similar(pool, [w["id"] for w in weakness], strategy=r.strategy, s=r.s,
                                 cache_dir=self.dir.cache_dir, encoder=r.encoder, embed=r.embed,
                                 seed=self.cfg.seed + round_index)
        return [dataclasses.asdict(c) for c in cases]

    def _separate_pool(self, weakness: list[dict[str, Any]]) -> tuple[list[Example], dict[str, Any]]:
        """The weakness cases plus the candidates of ``retrieval.pool``, without held-out items
        and without the weakness cases themselves; and the counts for the manifest."""
        from aptune.evaluate.judges import normalize_answer
        from aptune.run.evaluation import load_taskset

        held = [ex for ts in (self.cfg.domain_eval, self.cfg.dev)
                for exs in load_taskset(ts, self.cfg.seed).values() for ex in exs]
        held_ids = {(ex.task, ex.id) for ex in held}
        held_texts = {normalize_answer(ex.question) for ex in held}
        cases = [Example.from_dict(w["example"]) for w in weakness]
        case_ids, case_texts = {ex.id for ex in cases}, {normalize_answer(ex.question) for ex in cases}
        candidates = [ex for exs in load_taskset(self.cfg.retrieval.pool, self.cfg.seed, self.cfg.prompt.shots).values()
                      for ex in exs]
        refused = [ex for ex in candidates if (ex.task, ex.id) in held_ids or normalize_answer(ex.question) in held_texts]
        refused_ids = {id(ex) for ex in refused}
        kept, seen = [], set(case_ids)
        for ex in candidates:
            if id(ex) in refused_ids or ex.id in seen or normalize_answer(ex.question) in case_texts:
                continue
            seen.add(ex.id)
            kept.append(ex)
        if refused:
            log.info("retrieval pool: %d of %d items refused: they are held-out items (by task and id, or by text)",
                     len(refused), len(candidates))
        return cases + kept, {"retrieval_pool": len(candidates), "refused_held_out": len(refused),
                              "candidates": len(kept)}

    def _answer_retrieved(self, retrieved: list[dict[str, Any]], by_id: dict[str, Example], round_index: int) -> None:
        """Answer the retrieved items with the round's model (as mining answers the pool), so
        their pairs get the model's own answer: each retrieved row gains its ``answer_row``."""
        from aptune.apt.mining import mine

        if not retrieved:
            return
        model = self.start_model(round_index)
        rows = mine(model, self.tokenizer, [by_id[c["id"]] for c in retrieved], self.settings, self.dtype,
                    judge=self.judge(model), progress=self.progress)
        for case, row in zip(retrieved, rows):
            case["answer_row"] = row

    def similar_rows(self, round_index: int) -> list[dict[str, Any]]:
        """Mining rows of the retrieved items: from the mined pool, or (``retrieval.pool``) the
        rows the retrieve stage answered."""
        rows, _ = self.dir.read_answers(round_index)
        by_id = {row["id"]: row for row in rows}
        return [c["answer_row"] if "answer_row" in c else by_id[c["id"]]
                for c in self.dir.read_rows(round_index, "retrieve")]
