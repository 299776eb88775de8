"""``dpo-all``: DPO + NLL on every pool item — APT without weakness selection or retrieval
(close to SPIN). Wrong items: rejected = the model's own answer; items it gets right:
rejected = ``pairs.similar_negative`` (by default the wrong option it finds most likely).

The ``select`` stage records which items beyond the mistakes are paired: all the right ones.
"""

from __future__ import annotations

from typing import Any

from aptune.methods.preference import PreferenceRun


class DPOAllRun(PreferenceRun):
    round_stages = ("mine", "select", "pairs", "train")

    def stage_select(self, round_index: int) -> None:
        rows, _ = self.dir.read_answers(round_index)
        selected = [{"id": row["id"]} for row in rows if row["correct"]]
        self.dir.write_rows(round_index, "select", selected)
        self.dir.mark(round_index, "select", selected=len(selected), rule="every item answered correctly")

    def similar_rows(self, round_index: int) -> list[dict[str, Any]]:
        rows, _ = self.dir.read_answers(round_index)
        chosen = {s["id"] for s in self.dir.read_rows(round_index, "select")}
        return [row for row in rows if row["id"] in chosen]
