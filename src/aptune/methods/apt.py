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


def retrieval_groups(retrieved: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per cluster / tag (``all`` for knn and centroid): how many similar cases it chose and their
    mean cosine similarity, for the round's retrieval report."""
    groups: dict[str, list[float]] = {}
    for case in retrieved:
        groups.setdefault(case.get("group") or "all", []).append(float(case["score"]))
    return {name: {"count": len(scores), "mean_similarity": round(sum(scores) / len(scores), 4)}
            for name, scores in sorted(groups.items(), key=lambda kv: -len(kv[1]))}


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
        if retrieved:
            extra["groups"] = retrieval_groups(retrieved)
        self.dir.mark(round_index, "retrieve", retrieved=len(retrieved), strategy=r.strategy, **extra)

    def _retrieve(self, pool: list[Example], weakness: list[dict[str, Any]], round_index: int) -> list[dict[str, Any]]:
        from aptune.retrieval import retrieve_similar

        r = self.cfg.retrieval
        tags = self._tags(pool, round_index) if r.strategy == "tag" else None
        cases = retrieve_similar(pool, [w["id"] for w in weakness], strategy=r.strategy, s=r.s,
                                 cache_dir=self.dir.cache_dir, encoder=r.encoder, embed=r.embed,
                                 seed=self.cfg.seed + round_index, tags=tags)
        return [dataclasses.asdict(c) for c in cases]

    def _tags(self, pool: list[Example], round_index: int) -> list[list[str]]:
        """Each pool item's tags by ``retrieval.tagger`` (the llm tagger's are cached in the run)."""
        from aptune.retrieval import tags as taggers

        r = self.cfg.retrieval
        if r.tagger == "metadata":
            return taggers.metadata_tags(pool, r.tag_field)
        if r.tagger == "keyword":
            return taggers.keyword_tags(pool, r.keywords or {})
        from aptune.evaluate.generation import make_generate_fn
        from aptune.models import load_model, load_tokenizer

        name = r.tag_model or self.cfg.model.name
        model = load_model(name, trust_remote_code=self.cfg.trust_remote_code, device=str(self.device)) \
            if r.tag_model else self.start_model(round_index)
        tokenizer = load_tokenizer(name, trust_remote_code=self.cfg.trust_remote_code) if r.tag_model else self.tokenizer
        generate = make_generate_fn(model, tokenizer, max_new_tokens=24, dtype=self.dtype)
        # the run's model changes between rounds: its tags are asked once, of the starting model
        return taggers.llm_tags(pool, generate, self.dir.cache_dir, name if r.tag_model else f"{name}@round-1")

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
