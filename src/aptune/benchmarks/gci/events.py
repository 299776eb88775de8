"""Integrated view of the GCI *legal events* group (our construction).

Each item is a generated case narrative (parties, five dated events, five sums, the claim, a
withdrawn claim and a counterclaim) and one extraction question about it: which party, what
date, what amount, which claim, or what happened on a given date. Every distractor comes from
the same narrative (the other parties, dates, sums, claims or events), so the item cannot be
answered from the question alone; only the fourth claim distractor may come from a fixed pool.

Train/dev and test differ in narrative template (train tells the events in order; test opens
with the complaint and tells the background afterwards, in other words), in name pools, in the
scenario vocabulary and in years (train 2003-2012, test 2015-2024).
"""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal as D
from typing import Any

from aptune.benchmarks.gci.common import Slot, assemble, generate_cycled, long_date, money
from aptune.benchmarks.gci.names import company, people
from aptune.data.example import Example

TASK = "gci_events_integrated"
YEARS = {"train": range(2003, 2013), "test": range(2015, 2025)}
QTYPES = ("party", "date", "amount", "claim", "event")

#: scenario → family → vocabulary. Claims: (claim brought, withdrawn claim, counterclaim) pools.
SCENARIOS: dict[str, dict[str, dict[str, Any]]] = {
    "goods": {
        "train": {"deal": "{d} would deliver {qty} office chairs to {p}", "breach": "{d} delivered only half of the chairs",
                  "third": "guarantor of {d}'s obligations"},
        "test": {"deal": "{d} was to supply {qty} industrial fans to {p}", "breach": "the fans {d} supplied failed inspection",
                 "third": "insurer of the shipment"},
    },
    "lease": {
        "train": {"deal": "{p} would lease a warehouse to {d} for {qty} months", "breach": "{d} stopped paying rent and moved out",
                  "third": "property manager for {p}"},
        "test": {"deal": "{d} was to rent {p}'s restaurant premises for {qty} months", "breach": "{d} abandoned the premises",
                 "third": "broker who arranged the lease"},
    },
    "build": {
        "train": {"deal": "{d} would build a {qty}-room extension for {p}", "breach": "{d} walked off the unfinished job",
                  "third": "subcontractor hired by {d}"},
        "test": {"deal": "{d} was to renovate {qty} apartments owned by {p}", "breach": "{d}'s work was found to violate the building code",
                 "third": "architect engaged by {p}"},
    },
}
CLAIMS = {
    "brought": ["breach of contract", "breach of warranty", "unjust enrichment", "promissory estoppel"],
    "withdrawn": ["fraudulent misrepresentation", "negligent misrepresentation", "civil conspiracy", "conversion"],
    "counter": ["defamation", "tortious interference", "an unpaid invoice", "abuse of process"],
    "extra": ["trespass", "nuisance", "breach of fiduciary duty", "false imprisonment"],
}


def _narrative(rng: random.Random, fam: str) -> dict[str, Any]:
    scenario = rng.choice(list(SCENARIOS))
    vocab = SCENARIOS[scenario][fam]
    humans = people(rng, fam, 4)  # one draw: no name repeats within a narrative
    p_name, d_name = company(rng, fam, 2) if rng.random() < 0.5 else humans[2:]
    third, judge_name = humans[:2]
    judge = f"Judge {judge_name}"
    start = dt.date(rng.choice(list(YEARS[fam])), rng.randint(1, 12), rng.randint(1, 28))
    dates = [start]
    for gap in (rng.randint(20, 200), rng.randint(5, 60), rng.randint(20, 150), rng.randint(60, 300)):
        dates.append(dates[-1] + dt.timedelta(days=gap))
    price = D(rng.randrange(20000, 500001, 500))
    paid = (price * D(rng.choice([10, 15, 20, 25, 30, 40])) / 100).quantize(D(1))
    demand = (price * D(rng.choice([35, 45, 55, 65])) / 100).quantize(D(1))
    claimed = demand + D(rng.randrange(5000, 60001, 500))
    counter = D(rng.randrange(3000, 90001, 250))
    amounts = {"price": price, "paid": paid, "demand": demand, "claimed": claimed, "counter": counter}
    if len(set(amounts.values())) < 5:
        counter += 125
        amounts["counter"] = counter
    claims = {k: rng.choice(v) for k, v in CLAIMS.items()}
    deal = vocab["deal"].format(p=p_name, d=d_name, qty=rng.randint(3, 60) if scenario != "build" else rng.randint(2, 9))
    breach = vocab["breach"].format(p=p_name, d=d_name)
    third_role = vocab["third"].format(p=p_name, d=d_name)
    d1, d2, d3, d4, d5 = (long_date(d) for d in dates)
    if fam == "train":
        text = (f"On {d1}, {p_name} and {d_name} signed a contract under which {deal}, for a total price of {money(price)}. "
                f"{p_name} paid {money(paid)} up front. {third}, the {third_role}, was present at the signing. "
                f"On {d2}, {breach}. On {d3}, {p_name}'s lawyer sent {d_name} a demand letter asking for {money(demand)}. "
                f"{d_name} did not pay, and on {d4} {p_name} filed a complaint against {d_name} for {claims['brought']}, "
                f"claiming {money(claimed)} in damages. {p_name} had also considered a claim for {claims['withdrawn']} "
                f"but left it out. {d_name} answered with a counterclaim for {claims['counter']}, seeking "
                f"{money(counter)}. {judge} set the trial for {d5}.")
    else:
        text = (f"The complaint in {p_name} v. {d_name}, filed on {d4}, seeks {money(claimed)} on a theory of "
                f"{claims['brought']}; a claim for {claims['withdrawn']} was dropped before filing. Trial before "
                f"{judge} is scheduled for {d5}. The dispute goes back to {d1}, when the parties agreed that {deal} "
                f"at a price of {money(price)}, of which {p_name} paid {money(paid)} at signing. {third} was the "
                f"{third_role}. According to the complaint, {breach} on {d2}, and a letter from {p_name}'s counsel "
                f"dated {d3} demanded {money(demand)}. {d_name} denies liability and counterclaims for "
                f"{claims['counter']} in the amount of {money(counter)}.")
    events = {
        "signed": "The contract was signed.", "breach": breach[0].upper() + breach[1:] + ".",
        "demand": "The demand letter was sent.", "filed": "The complaint was filed.", "trial": "The trial is scheduled.",
    }
    return {"scenario": scenario, "text": text, "plaintiff": p_name, "defendant": d_name, "third": third, "third_role": third_role,
                "judge": judge, "dates": dict(zip(events, dates)), "events": events, "amounts": amounts, "claims": claims}


def _question(rng: random.Random, qtype: str, n: dict[str, Any]) -> tuple[str, str, list[str], str]:
    """(question, gold text, distractor texts, asked field)."""
    p, d = n["plaintiff"], n["defendant"]
    if qtype == "party":
        roles = {"plaintiff": ("Who filed the complaint?", p), "defendant": ("Against whom was the complaint filed?", d),
                 "third": (f"Who was the {n['third_role']}?", n["third"]), "judge": ("Who will preside at the trial?", n["judge"])}
        field = rng.choice(list(roles))
        q, gold = roles[field]
        return q, gold, [v for _, v in roles.values() if v != gold], field
    if qtype == "date":
        asks = {"signed": "On what date was the contract signed?", "breach": "On what date did the breach alleged in the complaint occur?",
                "demand": "On what date was the demand letter sent?", "filed": "On what date was the complaint filed?",
                "trial": "On what date is the trial set?"}
        field = rng.choice(list(asks))
        dates = {k: long_date(v) for k, v in n["dates"].items()}
        return asks[field], dates[field], [v for k, v in dates.items() if k != field], field
    if qtype == "amount":
        asks = {"price": "What was the total contract price?", "paid": f"How much did {p} pay at the start?",
                "demand": "What sum did the demand letter ask for?", "claimed": f"How much does {p} claim in damages?",
                "counter": f"How much does {d} seek on the counterclaim?"}
        field = rng.choice(list(asks))
        amounts = {k: money(v) for k, v in n["amounts"].items()}
        return asks[field], amounts[field], [v for k, v in amounts.items() if k != field], field
    if qtype == "claim":
        claims = n["claims"]
        field = rng.choice(["brought", "counter"])
        q = f"What claim did {p} bring against {d}?" if field == "brought" else f"What is {d}'s counterclaim for?"
        return q, claims[field], [v for k, v in claims.items() if k != field], field
    field = rng.choice(list(n["events"]))
    q = f"What happened on {long_date(n['dates'][field])}?"
    return q, n["events"][field], [v for k, v in n["events"].items() if k != field], field


def _item(slot: Slot) -> Example:
    story = _narrative(slot.rng, slot.family)
    question, gold, others, field = _question(slot.rng, slot.kind, story)
    slot.rng.shuffle(others)
    if slot.kind == "claim":  # the narrative's own claims first, the pool's claim last
        own = [c for c in others if c in (story["claims"]["brought"], story["claims"]["withdrawn"], story["claims"]["counter"])]
        others = own + [c for c in others if c not in own]
    return assemble(
        item_id=slot.item_id("gci-events"), task=slot.task, domain="legal", question=question, context=story["text"],
        gold_text=gold, distractors=others, gold_position=slot.gold_position, split=slot.split,
        meta={"group": "events", "view": "integrated", "kind": slot.kind, "field": field,
              "template": f"{story['scenario']}/{slot.family}", "scenario": story["scenario"],
              "answer": gold, "answer_type": "text"},
    )


def generate(split: str, n: int, seed: int = 0, task: str = TASK) -> list[Example]:
    """``n`` case-narrative questions of ``split`` (train/dev from the train family, test from the test one)."""
    return generate_cycled(task, split, n, seed, QTYPES, _item)
