"""GCI views made of real benchmark items: filters over bundled tasks, nothing copied.

Each derived task reads its parent task(s) through the data layer and keeps the items that
pass a documented filter, under the GCI task name but with the parent's item id. An item keeps
the **parent's** train/dev/test assignment (``meta["split"]``), so an item that is a test item
of ``mmlu_professional_law`` is a test item of every GCI view that contains it, and training on
one never touches another's held-out items.

MMLU professional_law is partitioned, each item in exactly one view:
1. professional-responsibility items (``PR_TERMS`` in the question or choices: clients,
   lawyers, privilege, confidentiality, conflicts, fees, discipline, bribery, perjury, ethics)
   → ethics / integrated (``gci_ethics_integrated_law``);
2. the rest with a question of at least ``LONG_FACTS`` characters (long fact patterns)
   → events / domain (``gci_events_domain``);
3. the remaining shorter items, plus all of international_law → reasoning / domain.
General views drop any item that mentions law (``LEGAL_TERMS``), so they carry no legal content.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import replace

from aptune.data.example import Example
from aptune.data.loading import load_task
from aptune.data.splits import split_of

PR_TERMS = re.compile(
    r"\b(clients?|lawyers?|attorney-client|lawyer-client|conflicts? of interest|malpractice|professional "
    r"(?:responsibility|conduct)|model rules|disciplin\w*|ethic\w*|confidential\w*|privileged communications?|"
    r"bar (?:association|examiners)|legal fees?|attorney's fees?|contingen(?:t|cy) fee|retainer|brib\w*|perjur\w*|"
    r"candor|moral\w*)", re.IGNORECASE)
LEGAL_TERMS = re.compile(
    r"\b(laws?|legal\w*|illegal\w*|lawful\w*|unlawful\w*|courts?|judges?|jur(?:y|ies|or|ors)|statutes?|statutory|"
    r"lawsuits?|sued?|suing|attorneys?|lawyers?|criminals?|crimes?|police|arrest\w*|convict\w*|prisons?|"
    r"constitution\w*|legislat\w*|regulat\w*|litigation|prosecut\w*|verdict|legislature)\b", re.IGNORECASE)
LONG_FACTS = 800


def _text(ex: Example) -> str:
    return " ".join([ex.question, ex.context or "", *ex.choices])


def is_professional_responsibility(ex: Example) -> bool:
    return bool(PR_TERMS.search(_text(ex)))


def is_legal(ex: Example) -> bool:
    return bool(LEGAL_TERMS.search(_text(ex)))


def is_long_fact_pattern(ex: Example) -> bool:
    return len(ex.question) >= LONG_FACTS


def derive(task: str, domain: str, group: str, view: str, parents: Sequence[str],
           keep: Callable[[Example], bool]) -> list[Example]:
    """The parents' items (source order) that ``keep`` accepts, renamed to ``task``, parent split kept."""
    out = []
    for parent in parents:
        for ex in load_task(parent, split="source"):
            if keep(ex):
                meta = {**ex.meta, "split": split_of(ex), "source_task": parent, "group": group, "view": view}
                out.append(replace(ex, task=task, domain=domain, meta=meta))
    return out


def reasoning_domain(ex: Example) -> bool:
    if ex.task != "mmlu_professional_law":
        return True
    return not is_professional_responsibility(ex) and not is_long_fact_pattern(ex)


def events_domain(ex: Example) -> bool:
    return not is_professional_responsibility(ex) and is_long_fact_pattern(ex)


def not_legal(ex: Example) -> bool:
    return not is_legal(ex)
