"""k-shot exemplars: solved items of the same task shown before a question.

Exemplars come from the task's **train** split only (the hash split of ``splits.py``), so no
held-out item is ever shown as an example, whichever split is evaluated. Each item draws its own
k exemplars, reproducibly from (seed, item id) and never itself, the way lm-eval draws a fresh
sample per document; the choice does not depend on which other items were loaded, so an item's
prompt is the same in evaluation, mining and training. They are attached to the item as
``meta["exemplars"]`` (plain dicts: the item travels through run files as JSON), and
``prompts.render_prompt`` renders them.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence

from aptune.data.example import EXEMPLARS, Example
from aptune.data.splits import select

#: the fields of an exemplar's ``meta`` that rendering reads (the rest stays with the item)
RENDERED_META = ("final_answer",)


def exemplar_row(example: Example) -> dict:
    """An item as an exemplar: its fields, with only the meta that rendering reads."""
    row = example.to_dict()
    row["meta"] = {k: example.meta[k] for k in RENDERED_META if k in example.meta}
    return row


def attach_exemplars(items: Sequence[Example], every: Sequence[Example], shots: int, seed: int,
                     task: str) -> list[Example]:
    """``items`` with ``shots`` exemplars each, drawn from the train split of ``every`` (all the
    task's items). Raises when the train split has too few items to draw from."""
    if shots == 0:
        return list(items)
    candidates = select(every, "train")
    if len(candidates) <= shots:
        raise ValueError(f"task {task!r}: {shots}-shot prompts need more than {shots} train-split items to draw "
                         f"exemplars from; it has {len(candidates)}")
    out = []
    for ex in items:
        rng = random.Random(f"aptune-fewshot:{seed}:{ex.task}:{ex.id}")
        drawn = [c for c in rng.sample(candidates, shots + 1) if c.id != ex.id][:shots]
        out.append(dataclasses.replace(ex, meta={**ex.meta, EXEMPLARS: [exemplar_row(c) for c in drawn]}))
    return out
