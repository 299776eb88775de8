"""Splits: disjoint, complete, deterministic across processes, seed-independent membership,
nested under ``limit``, stable when items are added; ``source`` and ``source:<name>``."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest

from aptune.benchmarks.gci import GCI_TASKS
from aptune.data import (
    DataError,
    Example,
    assign_split,
    list_tasks,
    load_task,
    task_info,
)
from aptune.data.splits import FRACTIONS, select

TASKS_TO_CHECK = ["arc_easy", "sciq", "hellaswag", "medmcqa", "mmlu_professional_law"]


@pytest.mark.parametrize("name", TASKS_TO_CHECK)
def test_splits_are_disjoint_cover_the_task_and_have_the_documented_fractions(name: str):
    ids = {s: [ex.id for ex in load_task(name, split=s)] for s in ("train", "dev", "test")}
    sets = {s: set(v) for s, v in ids.items()}
    assert all(len(sets[s]) == len(ids[s]) for s in ids), "no item twice in a split"
    assert not sets["train"] & sets["dev"] and not sets["train"] & sets["test"] and not sets["dev"] & sets["test"]
    everything = {ex.id for ex in load_task(name, split="source")}
    assert sets["train"] | sets["dev"] | sets["test"] == everything
    for split, fraction in FRACTIONS.items():
        assert abs(len(sets[split]) / len(everything) - fraction) < 0.05, split


@pytest.mark.parametrize("name", TASKS_TO_CHECK)
def test_limit_takes_nested_prefixes_and_seed_only_reorders(name: str):
    full = [ex.id for ex in load_task(name, split="test", seed=0)]
    for small, large in [(1, 10), (10, 50), (50, len(full))]:
        assert [ex.id for ex in load_task(name, "test", limit=small)] == full[:small]
        assert full[:small] == [ex.id for ex in load_task(name, "test", limit=large)][:small]
    reseeded = [ex.id for ex in load_task(name, split="test", seed=7)]
    assert set(reseeded) == set(full), "membership never depends on the seed"
    assert reseeded != full, "the seed changes which items a limit picks"
    assert load_task(name, "test", limit=0) == []


def test_split_order_is_spread_over_the_source_not_its_first_rows():
    source_position = {ex.id: i for i, ex in enumerate(load_task("hellaswag", split="source"))}
    first = [source_position[ex.id] for ex in load_task("hellaswag", "test", limit=100)]
    assert max(first) > 5000, "a limited sample covers the whole source"


def test_pinned_assignments_guard_against_a_silent_change_of_the_hash():
    """Changing the hash would move items between train and test across aptune versions."""
    got = [assign_split("arc_easy", i) for i in ["MCAS_2000_4_6", "Mercury_7057260", "ACTAAP_2014_7_6", "x", "y"]]
    assert got == ["test", "train", "train", "test", "train"]
    assert [ex.id for ex in load_task("arc_easy", "test", limit=5)] == [
        "Mercury_7027318", "Mercury_7200148", "Mercury_7114940", "MDSA_2013_8_33", "Mercury_7057960"]
    assert [ex.id for ex in load_task("sciq", "dev", limit=5, seed=1)] == [
        "sciq-159", "sciq-553", "sciq-896", "sciq-761", "sciq-98"]


def test_identical_in_a_fresh_process():
    code = ("from aptune.data import load_task; "
            "print(','.join(e.id for e in load_task('medmcqa', 'train', limit=25, seed=3)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ",".join(ex.id for ex in load_task("medmcqa", "train", limit=25, seed=3))


def _items(n: int, start: int = 0) -> list[Example]:
    return [Example(f"item-{i}", "synthetic", "custom", f"q{i}?", ("a", "b"), i % 2) for i in range(start, n)]


def test_adding_items_never_moves_old_ones():
    old, grown = _items(2000), _items(5000)
    before = {ex.id: s for s in ("train", "dev", "test") for ex in select(old, s)}
    after = {ex.id: s for s in ("train", "dev", "test") for ex in select(grown, s)}
    assert all(after[i] == split for i, split in before.items())
    # and the seeded order of the old items is unchanged among themselves
    old_test = [ex.id for ex in select(old, "test", seed=2)]
    assert [i for i in (ex.id for ex in select(grown, "test", seed=2)) if i in set(old_test)] == old_test


def test_hash_fractions_on_many_ids():
    counts = Counter(assign_split("t", f"id-{i}") for i in range(20000))
    for split, fraction in FRACTIONS.items():
        assert abs(counts[split] / 20000 - fraction) < 0.01


def test_source_splits():
    everything = load_task("mmlu_jurisprudence", split="source")
    assert [ex.meta["source_split"] for ex in everything][:1] == ["test"]
    tests = load_task("mmlu_jurisprudence", split="source:test")
    assert tests == [ex for ex in everything if ex.meta["source_split"] == "test"]
    assert load_task("mmlu_jurisprudence", "source", limit=3) == everything[:3]


@pytest.mark.parametrize("split,limit,message", [
    ("validation", None, "task 'sciq': split must be train, dev, test, source or source:<name>; not 'validation'"),
    ("source:test", None, "task 'sciq': split 'source:test': no items; this task's source splits are validation"),
    ("test", -1, "task 'sciq': limit must be a non-negative number of items, not -1"),
])
def test_bad_split_arguments_are_one_line_data_errors(split: str, limit: int | None, message: str):
    with pytest.raises(DataError) as info:
        load_task("sciq", split=split, limit=limit)
    assert str(info.value) == message


def test_unknown_task_suggests_close_names():
    with pytest.raises(DataError, match=r"unknown task 'arc_eesy': did you mean arc_easy"):
        load_task("arc_eesy")
    with pytest.raises(DataError, match=r"missing.jsonl: file not found"):
        load_task("missing.jsonl")


def test_task_listing_sizes_add_up():
    infos = {info.name: info for info in list_tasks()}
    free_form = {"gsm8k", "basic_arithmetic", "basic_pattern", "basic_string_operations", "basic_common_knowledge",
                 "humaneval", "mbpp", "nq_open", "squad", "drop", "coqa", "jeopardy", "lambada"}
    from aptune.benchmarks.gci import GCI_OPEN_TASKS

    free_form |= set(GCI_OPEN_TASKS)
    assert len(infos) == 69 + len(free_form) + len(GCI_TASKS)
    for info in infos.values():
        kind = "generative" if info.name in free_form else "multiple-choice"
        assert sum(info.split_sizes.values()) == info.size and info.kind == kind and info.source, info.name
    assert task_info("arc_easy").split_sizes == {"train": 1781, "dev": 311, "test": 854}
