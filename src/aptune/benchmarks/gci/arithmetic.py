"""General view of the GCI *reasoning* group, part 2: GSM8K-style arithmetic word problems with
no legal content (our construction; part 1 is ``allenai/basic_arithmetic``).

Two-step everyday problems (shopping change, travel distance, recipe scaling, savings,
discounts, equal shares) with computed answers and distractors from typical slips (one step
skipped, the wrong quantity used). Train/dev and test use different wordings, disjoint name
pools and disjoint key parameters (discount rates, speeds, serving counts, group sizes);
``meta["template"]`` and ``meta["params"]`` record them.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from decimal import Decimal as D
from typing import Any

from aptune.benchmarks.gci.common import (
    Slot,
    assemble,
    cents,
    generate_cycled,
    money,
    numeric_fallbacks,
    plain_number,
)
from aptune.benchmarks.gci.names import people
from aptune.data.example import Example

TASK = "gci_reasoning_general_words"

PARAMS: dict[str, dict[str, dict[str, list[Any]]]] = {
    "change": {"train": {"bill": [20, 50]}, "test": {"bill": [100]}},
    "travel": {"train": {"speed": [30, 40, 50]}, "test": {"speed": [45, 55, 65]}},
    "recipe": {"train": {"serves": [2, 4]}, "test": {"serves": [3, 6]}},
    "savings": {"train": {"weeks": [4, 6, 8]}, "test": {"weeks": [5, 7, 9]}},
    "discount": {"train": {"pct": [10, 20, 25]}, "test": {"pct": [15, 30, 40]}},
    "shares": {"train": {"people": [3, 4, 5]}, "test": {"people": [6, 7, 8]}},
}
KINDS = tuple(PARAMS)
Built = dict[str, Any]


def _change(rng: random.Random, fam: str) -> Built:
    bill = rng.choice(PARAMS["change"][fam]["bill"])
    q1, q2 = rng.randint(2, 4), rng.randint(2, 3)
    while True:
        p1, p2 = D(rng.randrange(50, 600, 25)) / 100, D(rng.randrange(50, 900, 25)) / 100
        if q1 * p1 + q2 * p2 < bill:
            break
    name = people(rng, fam, 1)[0]
    if fam == "train":
        q = (f"{name} buys {q1} notebooks at {money(p1)} each and {q2} pens at {money(p2)} each, and pays with a "
             f"{money(D(bill))} bill. How much change does {name} get?")
    else:
        q = (f"At the market, {name} picks {q1} melons costing {money(p1)} apiece and {q2} jars of honey costing "
             f"{money(p2)} apiece, handing over {money(D(bill))}. What change should {name} receive?")
    total = q1 * p1 + q2 * p2
    return {"q": q, "gold": cents(bill - total), "wrong": [cents(total), cents(bill - q1 * p1), cents(bill - p1 - p2),
                                                       cents(bill - q1 * p2 - q2 * p1)], "money": True, "params": {"bill": bill}}


def _travel(rng: random.Random, fam: str) -> Built:
    s1 = rng.choice(PARAMS["travel"][fam]["speed"])
    s2 = s1 + rng.choice([10, 15, 20])
    h1, h2 = rng.randint(1, 4), rng.randint(1, 3)
    name = people(rng, fam, 1)[0]
    if fam == "train":
        q = (f"{name} drives for {h1} hours at {s1} miles per hour and then for {h2} hours at {s2} miles per hour. "
             f"How many miles does {name} drive in total?")
    else:
        q = (f"A train carrying {name} runs {h1} hours at {s1} km/h, then speeds up to {s2} km/h for another {h2} "
             f"hours. What distance in km does it cover altogether?")
    gold = D(s1 * h1 + s2 * h2)
    return {"q": q, "gold": gold, "wrong": [D(s1 * (h1 + h2)), D(s2 * (h1 + h2)), D(s1 * h1 + s2 * h1), D(s1 + s2) * (h1 + h2)],
                "money": False, "params": {"speed": s1}}


def _recipe(rng: random.Random, fam: str) -> Built:
    serves = rng.choice(PARAMS["recipe"][fam]["serves"])
    per = rng.randint(20, 90)
    grams = per * serves
    target = serves * rng.randint(2, 5)
    name = people(rng, fam, 1)[0]
    if fam == "train":
        q = f"A soup recipe for {serves} people uses {grams} grams of lentils. {name} wants to cook it for {target} people. How many grams of lentils are needed?"
    else:
        q = f"{name}'s bread dough calls for {grams} g of flour and makes {serves} rolls. How much flour, in grams, does a batch of {target} rolls need?"
    gold = D(per * target)
    return {"q": q, "gold": gold, "wrong": [D(grams * target), D(grams + target - serves), D(grams * (target // serves + 1)),
                                       D(per * (target + serves))], "money": False, "params": {"serves": serves}}


def _savings(rng: random.Random, fam: str) -> Built:
    weeks = rng.choice(PARAMS["savings"][fam]["weeks"])
    start, weekly = rng.randrange(10, 200, 5), rng.randrange(5, 60, 5)
    spent = rng.randrange(5, start + weekly * weeks - 5, 5)
    name = people(rng, fam, 1)[0]
    if fam == "train":
        q = (f"{name} has {money(D(start))} in a piggy bank and adds {money(D(weekly))} every week for {weeks} weeks. "
             f"Then {name} spends {money(D(spent))} on a bicycle helmet. How much money is left?")
    else:
        q = (f"Starting with {money(D(start))}, {name} puts aside {money(D(weekly))} each week. After {weeks} weeks "
             f"{name} buys concert tickets for {money(D(spent))}. How much does {name} have now?")
    gold = D(start + weekly * weeks - spent)
    return {"q": q, "gold": cents(gold), "wrong": [cents(D(start + weekly * weeks)), cents(D(weekly * weeks - spent)),
                                              cents(D(start + weekly * (weeks - 1) - spent)), cents(D(start + weekly - spent))],
                "money": True, "params": {"weeks": weeks}}


def _discount(rng: random.Random, fam: str) -> Built:
    pct = rng.choice(PARAMS["discount"][fam]["pct"])
    price = D(rng.randrange(20, 400, 4))
    qty = rng.randint(2, 5)
    name = people(rng, fam, 1)[0]
    if fam == "train":
        q = f"A jacket costs {money(price)}. During a sale everything is {pct}% off. {name} buys {qty} jackets. How much does {name} pay?"
    else:
        q = f"{name} orders {qty} lamps listed at {money(price)} each; the shop takes {pct} percent off the list price. What is the bill?"
    gold = cents(price * (100 - pct) / 100 * qty)
    return {"q": q, "gold": gold, "wrong": [cents(price * pct / 100 * qty), cents(price * (100 - pct) / 100),
                                       cents((price - pct) * qty), cents(price * (100 + pct) / 100 * qty)],
                "money": True, "params": {"pct": pct}}


def _shares(rng: random.Random, fam: str) -> Built:
    n = rng.choice(PARAMS["shares"][fam]["people"])
    each, eaten = rng.randint(3, 12), rng.randint(1, 2)
    total = n * each + eaten
    name = people(rng, fam, 1)[0]
    if fam == "train":
        q = f"{name} bakes {total} cookies, eats {eaten}, and shares the rest equally among {n} friends. How many cookies does each friend get?"
    else:
        q = f"A crate holds {total} apples. {name} keeps {eaten} and splits the others evenly into {n} baskets. How many apples go in each basket?"
    return {"q": q, "gold": D(each), "wrong": [D(each + 1), D(total - n), D(each - 1) if each > 1 else D(each + 2), D(total // (n + 1))],
                "money": False, "params": {"people": n}}


BUILDERS: dict[str, Callable[[random.Random, str], Built]] = {
    "change": _change, "travel": _travel, "recipe": _recipe, "savings": _savings, "discount": _discount, "shares": _shares,
}


def _item(slot: Slot) -> Example:
    b = BUILDERS[slot.kind](slot.rng, slot.family)
    fmt = money if b["money"] else (lambda v: f"{int(v):,}")
    wrong = [w for w in b["wrong"] + numeric_fallbacks(b["gold"], slot.rng, b["money"]) if w > 0]
    return assemble(
        item_id=slot.item_id("gci-words"), task=slot.task, domain="general", question=b["q"],
        gold_text=fmt(b["gold"]), distractors=[fmt(w) for w in wrong], gold_position=slot.gold_position,
        split=slot.split,
        meta={"group": "reasoning", "view": "general", "kind": slot.kind, "template": f"{slot.kind}/{slot.family}",
              "params": b["params"], "answer": plain_number(b["gold"]), "answer_type": "number"},
    )


def generate(split: str, n: int, seed: int = 0, task: str = TASK) -> list[Example]:
    """``n`` word problems of ``split`` (train/dev from the train family, test from the test one)."""
    return generate_cycled(task, split, n, seed, KINDS, _item)
