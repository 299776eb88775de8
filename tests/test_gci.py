"""The GCI legal suite: every task loads, constructed answers are right, train and test are apart.

Answers of constructed items are recomputed here from the facts the generator records
(``meta["calc"]``, ``meta["params"]``), with code written independently of the generator
(``fractions.Fraction`` and ``calendar`` instead of ``Decimal`` helpers), and the recorded facts
are checked against the question text, so a generator that wrote one number and computed with
another would fail.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import re
from collections import Counter
from fractions import Fraction

import pytest

from aptune.benchmarks.gci import (
    GCI_SUITES,
    GCI_TASKS,
    GCI_VIEWS,
    VIEWS,
    arithmetic,
    as_generative,
    ethics,
    events,
    statutes,
)
from aptune.benchmarks.gci.common import GCI_SEED, SIZES
from aptune.benchmarks.gci.derived import (
    LEGAL_TERMS,
    is_long_fact_pattern,
    is_professional_responsibility,
)
from aptune.benchmarks.gci.names import COMPANIES, JURISDICTIONS, PEOPLE
from aptune.data import load_suite, load_task, registry
from aptune.data.splits import assign_split, split_of
from aptune.evaluate.judges import default_judge_for

GENERATORS = {
    "gci_reasoning_integrated": statutes.generate,
    "gci_reasoning_general_words": arithmetic.generate,
    "gci_ethics_integrated_rules": ethics.generate,
    "gci_events_integrated": events.generate,
}
CONSTRUCTED = sorted(GENERATORS)


def _round_cents(value: Fraction) -> Fraction:
    """Half-up rounding to cents on an exact fraction (all amounts here are non-negative)."""
    hundredths = value * 100
    whole = hundredths.numerator // hundredths.denominator
    if hundredths - whole >= Fraction(1, 2):
        whole += 1
    return Fraction(whole, 100)


def _num(text: str) -> Fraction:
    return Fraction(text.replace("$", "").replace(",", ""))


def _money(value: Fraction) -> str:
    cents = int(value * 100)
    return f"${cents // 100:,}.{cents % 100:02d}"


def _date(text: str) -> str:
    """"March 3, 2021" → "2021-03-03"."""
    return dt.datetime.strptime(text, "%B %d, %Y").date().isoformat()


# --- registration and sizes ---------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(GCI_TASKS))
def test_every_gci_task_loads_through_the_data_layer(name: str):
    assert registry.get_task(name) is GCI_TASKS[name]
    sizes = {split: len(load_task(name, split=split)) for split in ("train", "dev", "test")}
    assert sizes["train"] > 0 and sizes["test"] > 0
    for ex in load_task(name, split="test", limit=50):
        assert ex.task == name and ex.domain == GCI_TASKS[name].domain and split_of(ex) == "test"
        assert ex.meta["group"] in GCI_VIEWS and ex.meta["view"] in VIEWS
        assert name in GCI_VIEWS[ex.meta["group"]][ex.meta["view"]]
    if name in GENERATORS:
        assert sizes == {"train": 1200, "dev": 150, "test": 600}


def test_suites_cover_three_groups_by_three_views():
    assert set(GCI_VIEWS) == {"reasoning", "ethics", "events"}
    for group in GCI_VIEWS.values():
        assert set(group) == set(VIEWS) and all(group[v] for v in VIEWS)
    for name, tasks in GCI_SUITES.items():
        assert registry.get_suite(name) == tasks and set(tasks) <= set(registry.tasks())
    domain, general, integrated = (set(GCI_SUITES[f"gci_{v}"]) for v in VIEWS)
    assert not (domain & general or domain & integrated or general & integrated)
    assert domain | general | integrated == set(GCI_SUITES["gci"]) == set(GCI_TASKS)
    declared = registry.task_groups("gci")  # what the compare report renders as the GCI table
    assert declared.groups == {g: {v: tuple(ts) for v, ts in views.items()} for g, views in GCI_VIEWS.items()}
    assert declared.views == VIEWS
    loaded = load_suite("gci_integrated", split="test", limit_per_task=5)
    assert list(loaded) == GCI_SUITES["gci_integrated"] and all(len(v) == 5 for v in loaded.values())


# --- constructed items: determinism, distractors, positions ----------------------------------

@pytest.mark.parametrize("name", CONSTRUCTED)
def test_constructed_items_are_deterministic_and_seeded(name: str):
    generate = GENERATORS[name]
    first, again = generate("test", 60, seed=0), generate("test", 60, seed=0)
    assert first == again and [a.meta for a in first] == [b.meta for b in again]
    assert generate("test", 20, seed=0) == first[:20], "item i must not depend on how many are generated"
    other = generate("test", 60, seed=1)
    assert sum(a.question == b.question and a.context == b.context for a, b in zip(first, other)) < 6
    registered = {ex.id: ex for ex in load_task(name, split="source")}
    assert all(registered[ex.id] == ex for ex in first), "the registered task is built with seed 0"


@pytest.mark.parametrize("name", CONSTRUCTED)
def test_distractors_are_distinct_from_the_gold_and_positions_are_balanced(name: str):
    items = load_task(name, split="source")
    assert len({ex.id for ex in items}) == len(items)
    for split in ("train", "test"):
        part = [ex for ex in items if ex.meta["split"] == split]
        for ex in part:
            assert len(ex.choices) == 4 and len(set(ex.choices)) == 4, ex.id
            assert all(c.strip() for c in ex.choices)
            assert ex.choices.count(ex.reference) == 1, ex.id
        positions = Counter(ex.gold for ex in part)
        assert max(positions.values()) - min(positions.values()) <= len(part) // 20, positions


# --- train/test separation ------------------------------------------------------------------

@pytest.mark.parametrize("name", CONSTRUCTED)
def test_train_and_test_use_disjoint_templates_and_parameters(name: str):
    items = load_task(name, split="source")
    by_split = {s: [ex for ex in items if ex.meta["split"] == s] for s in ("train", "dev", "test")}
    templates = {s: {ex.meta["template"] for ex in xs} for s, xs in by_split.items()}
    assert templates["train"] and templates["test"]
    assert not templates["train"] & templates["test"] and not templates["dev"] & templates["test"]
    assert templates["dev"] <= templates["train"]
    assert all(t.endswith("/test") for t in templates["test"])
    # every statutory / rule parameter value differs between the families, kind by kind
    values: dict[tuple[str, str, str], set[str]] = {}
    for split, xs in by_split.items():
        for ex in xs:
            for key, value in ex.meta.get("params", {}).items():
                family = "test" if split == "test" else "train"
                values.setdefault((ex.meta["kind"], key, family), set()).add(json.dumps(value))
    for (kind, key, family), seen in values.items():
        if family == "train":
            assert not seen & values.get((kind, key, "test"), set()), (name, kind, key)
    # no question (with its passage) appears on both sides
    texts = {s: {(ex.question, ex.context) for ex in xs} for s, xs in by_split.items()}
    assert not texts["train"] & texts["test"]


def test_name_pools_and_jurisdictions_are_disjoint():
    for pools in (PEOPLE["train"][0], PEOPLE["test"][0]), (PEOPLE["train"][1], PEOPLE["test"][1]), \
            (COMPANIES["train"], COMPANIES["test"]), (JURISDICTIONS["train"], JURISDICTIONS["test"]):
        assert not set(pools[0]) & set(pools[1])
    test_items = load_task("gci_events_integrated", split="test")
    train_first = set(PEOPLE["train"][0])
    assert not any(word in train_first for ex in test_items for word in re.findall(r"[A-Z][a-z]+", ex.context or ""))


# --- answers recomputed independently ---------------------------------------------------------

def _next_business_day(day: dt.date) -> dt.date:
    while day.isoweekday() in (6, 7):
        day += dt.timedelta(days=1)
    return day


def _anniversary(day: dt.date, years: int) -> dt.date:
    return dt.date(day.year + years, day.month, day.day)


def _expected_statute(ex) -> tuple[str, list[str]]:
    """(reference, texts that must appear in the question) from the recorded facts."""
    kind, p, c = ex.meta["kind"], ex.meta["params"], ex.meta["calc"]
    if kind == "late_interest":
        due, paid = dt.date.fromisoformat(c["due"]), dt.date.fromisoformat(c["paid"])
        value = _round_cents(Fraction(c["principal"]) * p["rate"] / 100 * (paid - due).days / 365)
        return _money(value), [_money(Fraction(c["principal"])), f"{p['rate']}"]
    if kind == "appeal_deadline":
        entered = dt.date.fromisoformat(c["entered"])
        return _next_business_day(entered + dt.timedelta(days=p["days"])).isoformat(), [f"{p['days']} days"]
    if kind == "damages_cap":
        econ, non = Fraction(c["econ"]), Fraction(c["nonecon"])
        value = _round_cents((econ + min(non, p["cap"])) * Fraction(100 - p["fault"], 100))
        fault = f"{p['fault']}%" if p["fault"] else "no share of the fault"
        return _money(value), [_money(econ), _money(non), _money(Fraction(p["cap"])), fault]
    if kind == "tax_brackets":
        income, (r1, r2, r3) = Fraction(c["income"]), p["rates"]
        bands = [(0, p["a"], r1), (p["a"], p["b"], r2), (p["b"], None, r3)]
        tax = sum(Fraction(r, 100) * max(0, (income if hi is None else min(income, hi)) - lo) for lo, hi, r in bands)
        return _money(_round_cents(tax)), [_money(income), _money(Fraction(p["a"])), _money(Fraction(p["b"]))]
    if kind == "notice_pay":
        hired, ended = dt.date.fromisoformat(c["hired"]), dt.date.fromisoformat(c["ended"])
        years = sum(1 for y in range(1, 80) if _anniversary(hired, y) <= ended)
        wage = Fraction(c["wage"])
        return _money(wage * min(p["base"] + years, p["cap"])), [_money(wage), f"{p['cap']} weeks"]
    if kind == "deposit":
        balance = Fraction(c["deposit"]) - Fraction(c["rent"]) - Fraction(c["damage"])
        value = balance * (p["mult"] if c["elapsed"] > p["days"] else 1)
        return _money(value), [_money(Fraction(c["deposit"])), _money(Fraction(c["damage"])), _money(Fraction(c["wear"]))]
    if kind == "overtime":
        rate, worked, limit = Fraction(c["rate"]), c["worked"], p["hours"]
        value = rate * min(worked, limit) + rate * Fraction(p["mult"]) * max(worked - limit, 0)
        return _money(_round_cents(value)), [_money(rate), f"{worked} hours", f"{limit} hours"]
    assert kind == "limitation"
    act, found = dt.date.fromisoformat(c["act"]), dt.date.fromisoformat(c["discovered"])
    return min(_anniversary(found, p["years"]), _anniversary(act, p["repose"])).isoformat(), [f"{p['repose']} years"]


@pytest.mark.parametrize("split", ["train", "test"])
def test_statute_answers_recomputed(split: str):
    items = load_task("gci_reasoning_integrated", split=split, limit=240)
    assert {ex.meta["kind"] for ex in items} == set(statutes.KINDS)
    for ex in items:
        expected, mentioned = _expected_statute(ex)
        gold = ex.reference
        if ex.meta["answer_type"] == "date":
            assert _date(gold) == expected == ex.meta["answer"], ex.id
            assert all(_date(choice) != expected for i, choice in enumerate(ex.choices) if i != ex.gold)
        else:
            assert gold == expected, (ex.id, gold, expected)
            assert _num(ex.meta["answer"]) == _num(gold)
            assert all(_num(choice) != _num(gold) for i, choice in enumerate(ex.choices) if i != ex.gold)
        for text in mentioned:
            assert text in ex.question, (ex.id, text)


def _expected_words(ex) -> Fraction:
    q, kind = ex.question, ex.meta["kind"]
    money = [_num(m) for m in re.findall(r"\$[\d,]+\.\d\d", q)]
    ints = [int(n) for n in re.findall(r"(?<![\d$.,])\d+(?![\d.,]*\d)", q)]
    if kind == "change":
        q1, q2 = ints[0], ints[1]
        return money[-1] - q1 * money[0] - q2 * money[1]
    if kind == "travel":
        h1, s1, s2, h2 = ints[:4]
        return Fraction(s1 * h1 + s2 * h2)
    if kind == "recipe":
        serves, grams, target = (ints[0], ints[1], ints[2]) if ex.meta["split"] != "test" else (ints[1], ints[0], ints[2])
        return Fraction(grams * target, serves)
    if kind == "savings":
        start, weekly, spent = money
        return start + weekly * ints[0] - spent
    if kind == "discount":
        qty, pct = (ints[1], ints[0]) if ex.meta["split"] != "test" else (ints[0], ints[1])
        return _round_cents(money[0] * (100 - pct) / 100 * qty)
    assert kind == "shares"
    total, eaten, n = ints[0], ints[1], ints[2]
    return Fraction(total - eaten, n)


@pytest.mark.parametrize("split", ["train", "test"])
def test_word_problem_answers_recomputed_from_the_text(split: str):
    items = load_task("gci_reasoning_general_words", split=split, limit=120)
    for ex in items:
        expected = _expected_words(ex)
        assert _num(ex.reference) == expected, (ex.id, ex.question, ex.reference, expected)
        assert _num(ex.meta["answer"]) == expected
        assert not LEGAL_TERMS.search(ex.question)


@pytest.mark.parametrize("split", ["train", "test"])
def test_ethics_rule_answers_recomputed(split: str):
    items = load_task("gci_ethics_integrated_rules", split=split, limit=250)
    golds: dict[str, set[int]] = {}
    for ex in items:
        kind, p, c = ex.meta["kind"], ex.meta["params"], ex.meta["calc"]
        if kind == "gift":
            value = c["value"]
            expected = 0 if value <= p["report"] else 1 if value <= p["limit"] or c["related"] else 2
            assert f"${value:,}.00" in ex.question
        elif kind == "trust_fee":
            expected = 2 if c["days"] < p["wait"] or c["case"] == 3 else c["case"]
            assert f"{c['days']} days ago" in ex.question
        elif kind == "contingency":
            p1, t, p2 = p["tiers"]
            recovery = Fraction(c["recovery"])
            cap = _round_cents(Fraction(p1, 100) * min(recovery, t) + Fraction(p2, 100) * max(recovery - t, 0))
            agreed = _round_cents(recovery * Fraction(c["agreed_pct"], 100))
            expected = 0 if agreed <= cap else 1
            assert _money(cap) in ex.choices[ex.gold] if expected == 1 else _money(agreed) in ex.choices[ex.gold]
        elif kind == "confidentiality":
            expected = {0: 0, 1: 0, 2: 2, 3: 1, 4: 1}[c["case"]]
            if c["case"] in (1, 2):
                assert (c["loss"] > p["loss"]) == (c["case"] == 1)
        else:
            expected = c["case"]
        assert ex.meta["gold_action"] == expected, ex.id
        golds.setdefault(kind, set()).add(expected)
    assert all(len(g) >= 2 for g in golds.values()), golds  # no kind has a constant answer


@pytest.mark.parametrize("split", ["train", "test"])
def test_event_answers_are_in_the_narrative_and_distractors_too(split: str):
    items = load_task("gci_events_integrated", split=split, limit=200)
    assert {ex.meta["kind"] for ex in items} == set(events.QTYPES)
    for ex in items:
        story = ex.context or ""
        kind = ex.meta["kind"]
        if kind == "event":
            day = re.search(r"happened on (.+)\?", ex.question).group(1)
            assert day in story
            continue
        assert ex.reference in story, ex.id
        from_story = [c for c in ex.choices if c in story]
        assert len(from_story) >= (3 if kind == "claim" else 4), (ex.id, ex.choices)
        if kind == "date" and ex.meta["field"] == "filed":
            assert re.search(rf"filed (?:on )?{re.escape(ex.reference)}|on {re.escape(ex.reference)} .* filed a complaint", story)
        if kind == "amount" and ex.meta["field"] == "claimed":
            assert re.search(rf"(?:claiming|seeks) {re.escape(ex.reference)}", story)
        if kind == "party" and ex.meta["field"] == "plaintiff":
            assert story.count(ex.reference) >= 3
    train_order = load_task("gci_events_integrated", split="train", limit=1)[0].context
    assert train_order.startswith("On ")


# --- derived views ------------------------------------------------------------------------------

def test_derived_items_keep_their_parent_split_and_id():
    for name in GCI_TASKS:
        if name in GENERATORS or name == "gci_reasoning_general_arith":
            continue
        items = load_task(name, split="source")
        assert items
        for ex in items:
            parent = ex.meta["source_task"]
            assert split_of(ex) == assign_split(parent, ex.id), (name, ex.id)


def test_professional_law_is_partitioned_between_the_three_groups():
    law = {ex.id: ex for ex in load_task("mmlu_professional_law", split="source")}
    views = {name: {ex.id for ex in load_task(name, split="source") if ex.meta["source_task"] == "mmlu_professional_law"}
             for name in ("gci_reasoning_domain", "gci_ethics_integrated_law", "gci_events_domain")}
    assert sum(len(v) for v in views.values()) == len(law)
    assert set().union(*views.values()) == set(law)
    assert all(is_professional_responsibility(law[i]) for i in views["gci_ethics_integrated_law"])
    assert all(is_long_fact_pattern(law[i]) for i in views["gci_events_domain"])


@pytest.mark.parametrize("name", [t for t in GCI_SUITES["gci_general"] if t not in GENERATORS])
def test_general_views_carry_no_legal_terms(name: str):
    for ex in load_task(name, split="source"):
        assert not LEGAL_TERMS.search(" ".join([ex.question, ex.context or "", *ex.choices])), ex.id


# --- generative view ----------------------------------------------------------------------------

def test_generative_twin_is_scored_by_the_final_number_judge():
    ex = next(e for e in load_task("gci_reasoning_integrated", split="test", limit=20) if e.meta["answer_type"] == "number")
    gen = as_generative(ex)
    assert not gen.is_multiple_choice and gen.answer == ex.meta["answer"]
    judge = default_judge_for(gen)
    assert judge.name == "final_number"
    assert judge.judge(gen, f"The total is {ex.reference}").correct
    assert not judge.judge(gen, "The total is $1.00").correct


def test_open_answer_tasks_are_registered_twins_in_their_originals_splits():
    from aptune.benchmarks.gci import GCI_OPEN_TASKS
    from aptune.data.splits import split_of

    assert set(GCI_SUITES["gci_open"]) == set(GCI_OPEN_TASKS) and len(GCI_OPEN_TASKS) == 4
    for name in GCI_OPEN_TASKS:
        twins, originals = load_task(name, split="source"), load_task(name.removesuffix("_open"), split="source")
        assert len(twins) == len(originals)
        for twin, ex in list(zip(twins, originals))[::50]:
            assert twin.id == ex.id and not twin.is_multiple_choice and split_of(twin) == split_of(ex)
            assert default_judge_for(twin).judge(twin, f"The answer is {twin.reference}").correct, twin.id
        test_ids = {ex.id for ex in load_task(name.removesuffix("_open"), split="test")}
        assert {ex.id for ex in load_task(name, split="test")} == test_ids


#: SHA-256 of every constructed item (all splits at the registered sizes and seed), as dumped by
#: ``_items_digest``. The committed GCI results were measured on exactly these items: a change to
#: a generator that alters any item must be deliberate, and must update these digests and rerun
#: the results in docs/results.md.
CONSTRUCTED_DIGESTS = {
    arithmetic: "1edbff7102881b266900707b3e56d093ba2514f085ca5602cda0415e04c6d096",
    ethics: "847a151cce3b5128b10a27d7340d01c5263949230d7e727bdebe9fc70e2be881",
    events: "0f481c14919aa37e26669fece886d1c7065f5b5eca0eada50e20f8db58e25dac",
    statutes: "baf82272a84b13c500e83d366ff24995fc6ebc5a8dfb4aa88f12ad5ec26298a4",
}


def _items_digest(generator) -> str:
    digest = hashlib.sha256()
    for split, n in SIZES.items():
        for ex in generator.generate(split, n, GCI_SEED):
            digest.update(json.dumps(dataclasses.asdict(ex), sort_keys=True, default=str).encode())
    return digest.hexdigest()


@pytest.mark.parametrize("generator", list(CONSTRUCTED_DIGESTS), ids=lambda g: g.TASK)
def test_constructed_items_are_the_ones_the_results_were_measured_on(generator) -> None:
    assert _items_digest(generator) == CONSTRUCTED_DIGESTS[generator]
