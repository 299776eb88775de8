"""Integrated view of the GCI *legal reasoning + computation* group (our construction).

Each item gives an invented statute excerpt (rates, thresholds, deadlines, caps) and case facts,
and asks for the legally correct figure: a sum of money or a date. The answer is computed here
from the drawn parameters; the three distractors are the results of plausible mistakes
(ignoring a cap or threshold, a wrong rate, an off-by-one day, counting from the wrong event),
topped up with nearby wrong values only when a modelled mistake happens to give the gold.

Train/dev vs test. Every kind has one wording for train/dev and another for test (statute
text, fact pattern and question), test uses other party names and jurisdictions, and the key
statutory parameters (rates, periods, caps, brackets, multipliers) come from disjoint sets.
Case amounts and dates are drawn from the same ranges. ``meta["template"]`` names the wording
and ``meta["params"]`` the statutory parameters, so tests can check the disjointness.

``meta["answer"]`` holds the reference as a plain number ("1234.50") or an ISO date, so a
generative view can be scored with the final-number or exact-match judge (``as_generative``).
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from decimal import Decimal as D
from typing import Any

from aptune.benchmarks.gci.common import (
    Slot,
    add_years,
    assemble,
    cents,
    generate_cycled,
    long_date,
    money,
    numeric_fallbacks,
    plain_number,
    random_date,
)
from aptune.benchmarks.gci.names import company, jurisdiction, people
from aptune.data.example import Example

TASK = "gci_reasoning_integrated"
YEARS = {"train": range(2008, 2015), "test": range(2017, 2024)}

#: kind → family → the key statutory parameter sets (disjoint between families).
PARAMS: dict[str, dict[str, dict[str, list[Any]]]] = {
    "late_interest": {"train": {"rate": [4, 5, 6, 8]}, "test": {"rate": [3, 7, 9, 10]}},
    "appeal_deadline": {"train": {"days": [14, 21, 30]}, "test": {"days": [10, 28, 60]}},
    "damages_cap": {"train": {"cap": [250000, 350000, 500000], "fault": [0, 10, 20, 25, 30]},
                    "test": {"cap": [200000, 300000, 750000], "fault": [5, 15, 35, 40]}},
    "tax_brackets": {"train": {"a": [10000, 20000], "b": [50000, 80000], "rates": [(10, 20, 30), (5, 15, 25)]},
                     "test": {"a": [12000, 25000], "b": [60000, 90000], "rates": [(8, 18, 28), (6, 16, 36)]}},
    "notice_pay": {"train": {"base": [1, 2], "cap": [8, 10]}, "test": {"base": [3, 4], "cap": [6, 12]}},
    "deposit": {"train": {"days": [14, 30], "mult": [2]}, "test": {"days": [21, 45], "mult": [3]}},
    "overtime": {"train": {"hours": [40, 44], "mult": ["1.5", "1.25"]}, "test": {"hours": [38, 48], "mult": ["1.75", "2"]}},
    "limitation": {"train": {"years": [2, 3], "repose": [6, 10]}, "test": {"years": [1, 4], "repose": [5, 8]}},
}
KINDS: tuple[str, ...] = tuple(PARAMS)

Built = dict[str, Any]  # statute, facts, question, gold, wrong, kind of answer, params


def _late_interest(rng: random.Random, fam: str) -> Built:
    rate = rng.choice(PARAMS["late_interest"][fam]["rate"])
    principal = D(rng.randrange(1000, 50001, 50))
    due = random_date(rng, YEARS[fam])
    days = rng.randint(5, 200)
    paid = due + dt.timedelta(days=days)
    debtor, creditor = company(rng, fam, 2)
    j, sec = jurisdiction(rng, fam), rng.randint(10, 99)

    def interest(n_days: int, year: int = 365) -> D:
        return cents(principal * rate / 100 * n_days / year)

    if fam == "train":
        statute = (f"Section {sec} of the {j} Commercial Code: Where a sum due under a contract is paid late, the "
                   f"debtor owes simple interest at {rate}% per year on the unpaid sum for each day after the due "
                   f"date up to and including the day of payment, calculated on a 365-day year.")
        facts = f"{debtor} owed {creditor} {money(principal)} under an invoice due on {long_date(due)}. {debtor} paid the full amount on {long_date(paid)}."
        question = f"Under the statute, how much interest does {debtor} owe {creditor}?"
    else:
        statute = (f"{j} Late Payments Act, s. {sec}. (1) Late-payment interest runs from the first day after the "
                   f"payment date until the day on which the debt is settled, both days included. (2) The rate is "
                   f"{rate} percent a year, simple, and one day counts as 1/365 of a year.")
        facts = f"Under a supply agreement, {creditor} invoiced {debtor} for {money(principal)}, payable by {long_date(due)}. The debt was settled on {long_date(paid)}."
        question = f"What late-payment interest is {creditor} entitled to under the Act?"
    gold = interest(days)
    wrong = [interest(days + 1), interest(days, 360), cents(principal * rate / 100), interest(days - 1)]
    return {"statute": statute, "facts": facts, "question": question, "gold": gold, "wrong": wrong, "unit": "money",
                "params": {"rate": rate}, "calc": {"principal": str(principal), "due": due.isoformat(), "paid": paid.isoformat()}}


def _next_weekday(day: dt.date) -> dt.date:
    while day.weekday() >= 5:
        day += dt.timedelta(days=1)
    return day


def _appeal_deadline(rng: random.Random, fam: str) -> Built:
    n = rng.choice(PARAMS["appeal_deadline"][fam]["days"])
    entered = random_date(rng, YEARS[fam])
    while entered.weekday() >= 5:  # courts enter judgments on weekdays
        entered += dt.timedelta(days=1)
    raw = entered + dt.timedelta(days=n)
    gold = _next_weekday(raw)
    a, b = people(rng, fam, 2)
    j, sec = jurisdiction(rng, fam), rng.randint(3, 40)
    wd = entered.strftime("%A")
    if fam == "train":
        statute = (f"Rule {sec} of the {j} Rules of Civil Procedure: A notice of appeal must be filed within {n} days "
                   f"after the judgment is entered. The day of entry is not counted. If the last day of the period is "
                   f"a Saturday or Sunday, the period runs until the next day that is not a Saturday or Sunday.")
        facts = f"Judgment against {a} in {a}'s dispute with {b} was entered on {wd}, {long_date(entered)}."
        question = f"What is the last day on which {a} can file a notice of appeal?"
    else:
        statute = (f"{j} Appellate Procedure Act, s. {sec}: An appeal is brought by filing a notice within {n} days, "
                   f"counting from the day after the decision is entered. A period that would end on a weekend is "
                   f"extended to the following Monday.")
        facts = f"The court entered its decision in {b} v. {a} on {long_date(entered)}, a {wd}. {a} intends to appeal."
        question = f"By what date must {a} file the notice of appeal?"
    friday = raw - dt.timedelta(days=raw.weekday() - 4) if raw.weekday() >= 5 else raw - dt.timedelta(days=1)
    wrong = [raw, _next_weekday(raw - dt.timedelta(days=1)) if raw.weekday() < 5 else friday,
             _next_weekday(raw + dt.timedelta(days=1)), gold + dt.timedelta(days=7), gold - dt.timedelta(days=7)]
    return {"statute": statute, "facts": facts, "question": question, "gold": gold, "wrong": wrong, "unit": "date",
                "params": {"days": n}, "calc": {"entered": entered.isoformat()}}


def _damages_cap(rng: random.Random, fam: str) -> Built:
    p = PARAMS["damages_cap"][fam]
    cap, fault = D(rng.choice(p["cap"])), rng.choice(p["fault"])
    econ = D(rng.randrange(10000, 400001, 1000))
    binding = rng.random() < 0.8
    nonecon = D(rng.randrange(int(cap) + 5000, int(cap) * 3, 5000) if binding else rng.randrange(50000, int(cap), 5000))
    keep = D(100 - fault) / 100
    a, b = people(rng, fam, 2)
    j, sec = jurisdiction(rng, fam), rng.randint(100, 999)
    if fam == "train":
        statute = (f"{j} Civil Remedies Act, s. {sec}: (a) In an action for medical negligence, damages for "
                   f"non-economic loss may not exceed {money(cap)}. Economic damages are not limited. (b) If the "
                   f"claimant was partly at fault, the total award after applying (a) is reduced in proportion to "
                   f"the claimant's share of fault.")
        share = f"found {a} {fault}% at fault" if fault else f"found that {a} bore no share of the fault"
        facts = (f"A jury found that Dr. {b} was negligent in treating {a}. It assessed {a}'s economic loss at "
                 f"{money(econ)} and non-economic loss at {money(nonecon)}, and {share}.")
        question = f"What total award should the court enter for {a}?"
    else:
        statute = (f"{j} Health Care Liability Statute, s. {sec}. Compensation for pain, suffering and other "
                   f"non-pecuniary harm is capped at {money(cap)} per claimant; compensation for pecuniary harm is "
                   f"unlimited. The award so capped is then reduced by the percentage of responsibility attributed "
                   f"to the claimant.")
        facts = (f"{a} sued Dr. {b}. The court valued {a}'s pecuniary harm at {money(econ)} and non-pecuniary harm "
                 f"at {money(nonecon)}; {a}'s own responsibility was put at {fault}%.")
        question = f"What amount is {a} entitled to recover?"
    gold = cents((econ + min(nonecon, cap)) * keep)
    wrong = [cents((econ + nonecon) * keep), cents(econ + min(nonecon, cap)), cents(min(econ + nonecon, cap) * keep),
             cents(econ * keep + min(nonecon * keep, cap)), cents(econ + nonecon)]
    return {"statute": statute, "facts": facts, "question": question, "gold": gold, "wrong": wrong, "unit": "money",
                "params": {"cap": int(cap), "fault": fault}, "calc": {"econ": str(econ), "nonecon": str(nonecon)}}


def bracket_tax(income: D, a: int, b: int, rates: tuple[int, int, int]) -> D:
    """Progressive tax: r1 on [0, a], r2 on (a, b], r3 above b."""
    r1, r2, r3 = (D(r) / 100 for r in rates)
    return cents(r1 * min(income, a) + r2 * max(min(income, b) - a, 0) + r3 * max(income - b, 0))


def _tax_brackets(rng: random.Random, fam: str) -> Built:
    p = PARAMS["tax_brackets"][fam]
    a, b, rates = rng.choice(p["a"]), rng.choice(p["b"]), rng.choice(p["rates"])
    income = D(rng.randrange(a + 1000, 200001, 100))
    name = people(rng, fam, 1)[0]
    j, sec = jurisdiction(rng, fam), rng.randint(2, 60)
    r1, r2, r3 = rates
    if fam == "train":
        statute = (f"{j} Income Tax Act, s. {sec}: Tax is charged on taxable income at {r1}% on the first "
                   f"{money(D(a))}, at {r2}% on the part above {money(D(a))} up to {money(D(b))}, and at {r3}% on the "
                   f"part above {money(D(b))}.")
        facts = f"{name}'s taxable income for the year was {money(income)}."
        question = f"How much income tax does {name} owe under the section?"
    else:
        at_a, at_b = bracket_tax(D(a), a, b, rates), bracket_tax(D(b), a, b, rates)
        statute = (f"{j} Revenue Code, s. {sec}. Rate schedule. Taxable income not over {money(D(a))}: {r1} percent "
                   f"of taxable income. Over {money(D(a))} but not over {money(D(b))}: {money(at_a)} plus {r2} percent "
                   f"of the excess over {money(D(a))}. Over {money(D(b))}: {money(at_b)} plus {r3} percent of the "
                   f"excess over {money(D(b))}.")
        facts = f"{name} reports taxable income of {money(income)} for the tax year."
        question = f"What is {name}'s tax under the schedule?"
    marginal = r1 if income <= a else r2 if income <= b else r3
    gold = bracket_tax(income, a, b, rates)
    wrong = [cents(income * marginal / 100), cents(D(r1) / 100 * a + D(r2) / 100 * (income - a)),
             cents(D(r1) / 100 * a + D(r3) / 100 * (income - a)), cents(income * r2 / 100), cents(income * r1 / 100)]
    return {"statute": statute, "facts": facts, "question": question, "gold": gold, "wrong": wrong, "unit": "money",
                "params": {"a": a, "b": b, "rates": list(rates)}, "calc": {"income": str(income)}}


def full_years(start: dt.date, end: dt.date) -> int:
    """Completed years between two dates."""
    return end.year - start.year - ((end.month, end.day) < (start.month, start.day))


def _notice_pay(rng: random.Random, fam: str) -> Built:
    p = PARAMS["notice_pay"][fam]
    base, cap = rng.choice(p["base"]), rng.choice(p["cap"])
    ended = random_date(rng, YEARS[fam])
    hired = ended - dt.timedelta(days=rng.randint(100, 365 * 14))
    years = full_years(hired, ended)
    wage = D(rng.randrange(400, 3001, 10))
    worker = people(rng, fam, 1)[0]
    employer = company(rng, fam)[0]
    j, sec = jurisdiction(rng, fam), rng.randint(20, 90)
    if fam == "train":
        statute = (f"{j} Employment Standards Act, s. {sec}: An employer who dismisses an employee without cause must "
                   f"give {base} weeks' notice plus one additional week for each full year of continuous service, to a "
                   f"maximum of {cap} weeks in total, or pay the employee's regular weekly wage for each week of "
                   f"notice not given.")
        facts = (f"{employer} hired {worker} on {long_date(hired)} at a weekly wage of {money(wage)}. It dismissed "
                 f"{worker} without cause and without any notice on {long_date(ended)}.")
        question = f"How much pay in lieu of notice does {employer} owe {worker}?"
    else:
        statute = (f"{j} Labour Code, art. {sec}. Notice of termination without cause: {base} weeks, increased by one "
                   f"week per completed year of employment; total notice shall not exceed {cap} weeks. Notice not "
                   f"given is compensated at the worker's weekly pay.")
        facts = (f"{worker} worked for {employer} from {long_date(hired)} until {long_date(ended)}, when {worker} was "
                 f"let go without cause and without notice. {worker}'s pay was {money(wage)} per week.")
        question = f"What compensation in lieu of notice is {worker} owed?"
    gold = wage * min(base + years, cap)
    wrong = [wage * (base + years), wage * min(base + years + 1, cap), wage * min(years, cap), wage * cap,
             wage * (base + years + 1)]
    return {"statute": statute, "facts": facts, "question": question, "gold": gold, "wrong": wrong, "unit": "money",
                "params": {"base": base, "cap": cap},
                "calc": {"hired": hired.isoformat(), "ended": ended.isoformat(), "years": years, "wage": str(wage)}}


def _deposit(rng: random.Random, fam: str) -> Built:
    p = PARAMS["deposit"][fam]
    limit, mult = rng.choice(p["days"]), rng.choice(p["mult"])
    deposit = D(rng.randrange(800, 5001, 50))
    rent = D(rng.choice([0, rng.randrange(100, 400, 25)]))
    damage = D(rng.randrange(50, 300, 5))
    wear = D(rng.randrange(60, 250, 5))
    elapsed = rng.choice([rng.randint(3, limit), rng.randint(limit + 1, limit + 40)])
    tenant, landlord = people(rng, fam, 2)
    j, sec = jurisdiction(rng, fam), rng.randint(10, 80)
    if fam == "train":
        statute = (f"{j} Residential Tenancies Act, s. {sec}: (1) A landlord may deduct from a security deposit only "
                   f"unpaid rent and the cost of repairing damage beyond normal wear and tear. (2) The balance must be "
                   f"returned within {limit} days after the tenancy ends. (3) A landlord who has not returned the "
                   f"balance within that time is liable to the tenant for {mult} times the balance.")
        rent_text = f"owed {money(rent)} in unpaid rent" if rent else "owed no rent"
        facts = (f"{tenant} paid {landlord} a security deposit of {money(deposit)}. When the tenancy ended, {tenant} "
                 f"{rent_text}, a door damaged by {tenant} cost {money(damage)} to repair, and repainting for normal "
                 f"wear and tear cost {money(wear)}. {elapsed} days after the tenancy ended, {landlord} had returned "
                 f"nothing.")
        question = f"At that point, how much is {landlord} liable to pay {tenant}?"
    else:
        statute = (f"{j} Landlord and Tenant Code, s. {sec}. Only arrears of rent and the cost of making good damage "
                   f"other than ordinary wear may be withheld from a deposit. The remainder is repayable within "
                   f"{limit} days of the end of the lease; if it is not repaid in time, the tenant may claim "
                   f"{mult} times the remainder.")
        rent_text = f"rent arrears of {money(rent)}" if rent else "no rent arrears"
        facts = (f"{landlord} holds {tenant}'s deposit of {money(deposit)}. At the end of the lease there were "
                 f"{rent_text}; fixing a cracked sink {tenant} had caused cost {money(damage)}; ordinary wear required "
                 f"touch-up work costing {money(wear)}. It is now day {elapsed} after the lease ended and {landlord} "
                 f"has repaid nothing.")
        question = f"What may {tenant} claim from {landlord} today?"
    balance = deposit - rent - damage
    factor = mult if elapsed > limit else 1
    gold = cents(balance * factor)
    other = mult if factor == 1 else 1
    wrong = [cents((balance - wear) * factor), cents(balance * other), cents(deposit * mult), cents((deposit - rent) * factor),
             cents((balance - wear) * other)]
    return {"statute": statute, "facts": facts, "question": question, "gold": gold, "wrong": wrong, "unit": "money",
                "params": {"days": limit, "mult": mult},
                "calc": {"deposit": str(deposit), "rent": str(rent), "damage": str(damage), "wear": str(wear), "elapsed": elapsed}}


def _overtime(rng: random.Random, fam: str) -> Built:
    p = PARAMS["overtime"][fam]
    limit, mult = rng.choice(p["hours"]), D(rng.choice(p["mult"]))
    rate = D(rng.randrange(48, 241)) / 4  # $12.00 .. $60.00 in quarters
    hours = rng.randint(limit + 1, limit + 25) if rng.random() < 0.9 else rng.randint(limit - 8, limit)
    worker = people(rng, fam, 1)[0]
    employer = company(rng, fam)[0]
    j, sec = jurisdiction(rng, fam), rng.randint(5, 50)
    if fam == "train":
        statute = (f"{j} Wage Act, s. {sec}: An employee must be paid at least {mult} times the regular hourly rate "
                   f"for every hour worked in a week beyond {limit} hours.")
        facts = f"{worker} is paid {money(rate)} an hour by {employer}. In one week {worker} worked {hours} hours."
        question = f"What is the minimum gross pay {employer} owes {worker} for that week?"
    else:
        statute = (f"{j} Hours of Work Regulation, s. {sec}. Time worked in excess of {limit} hours in a workweek "
                   f"shall be remunerated at not less than {mult} times the employee's ordinary hourly wage.")
        facts = f"{employer} employs {worker} at an ordinary wage of {money(rate)} per hour. Last workweek {worker} logged {hours} hours."
        question = f"What is the least {worker} must be paid for last workweek?"
    extra = max(hours - limit, 0)
    gold = cents(rate * min(hours, limit) + rate * mult * extra)
    wrong = [cents(rate * hours), cents(rate * mult * hours), cents(rate * limit + rate * (mult - 1) * extra),
             cents(rate * min(hours, limit) + rate * 2 * extra), cents(rate * (hours + 1))]
    return {"statute": statute, "facts": facts, "question": question, "gold": gold, "wrong": wrong, "unit": "money",
                "params": {"hours": limit, "mult": str(mult)}, "calc": {"rate": str(rate), "worked": hours}}


def _limitation(rng: random.Random, fam: str) -> Built:
    p = PARAMS["limitation"][fam]
    years, repose = rng.choice(p["years"]), rng.choice(p["repose"])
    act = random_date(rng, YEARS[fam])
    discovered = act + dt.timedelta(days=rng.randint(30, 365 * repose - 30))  # before the claim is barred
    discovered = discovered.replace(day=min(discovered.day, 28))
    gold = min(add_years(discovered, years), add_years(act, repose))
    owner, engineer = people(rng, fam, 2)
    j, sec = jurisdiction(rng, fam), rng.randint(2, 30)
    if fam == "train":
        statute = (f"{j} Limitation Act, s. {sec}: An action for professional negligence must be commenced no later "
                   f"than the same calendar day {years} years after the claimant discovered the injury, and in no case "
                   f"later than the same calendar day {repose} years after the negligent act.")
        facts = (f"{engineer}, an engineer, negligently approved defective plans for {owner}'s house on "
                 f"{long_date(act)}. {owner} discovered the resulting cracks on {long_date(discovered)}.")
        question = f"What is the last day on which {owner} may sue {engineer}?"
    else:
        statute = (f"{j} Prescription Code, s. {sec}. A claim against a professional for negligence is barred unless "
                   f"brought within {years} years, to the day, of its discovery by the claimant; whatever the date of "
                   f"discovery, the claim is barred {repose} years, to the day, after the negligent act.")
        facts = (f"On {long_date(act)}, surveyor {engineer} misstated the boundary of {owner}'s land. {owner} learned of "
                 f"the error on {long_date(discovered)}.")
        question = f"Until what date may {owner} bring the claim against {engineer}?"
    wrong = [add_years(discovered, years), add_years(act, years), add_years(act, repose), add_years(discovered, repose),
             add_years(gold, 1), gold - dt.timedelta(days=1)]
    return {"statute": statute, "facts": facts, "question": question, "gold": gold, "wrong": wrong, "unit": "date",
                "params": {"years": years, "repose": repose},
                "calc": {"act": act.isoformat(), "discovered": discovered.isoformat()}}


BUILDERS: dict[str, Callable[[random.Random, str], Built]] = {
    "late_interest": _late_interest, "appeal_deadline": _appeal_deadline, "damages_cap": _damages_cap,
    "tax_brackets": _tax_brackets, "notice_pay": _notice_pay, "deposit": _deposit, "overtime": _overtime,
    "limitation": _limitation,
}


def _text(value: D | dt.date, unit: str) -> str:
    return long_date(value) if unit == "date" else money(value)


def _reference(value: D | dt.date, unit: str) -> str:
    return value.isoformat() if isinstance(value, dt.date) else plain_number(value)


def _item(slot: Slot) -> Example:
    built = BUILDERS[slot.kind](slot.rng, slot.family)
    unit, gold = built["unit"], built["gold"]
    wrong = list(built["wrong"])
    if unit == "money":
        wrong += numeric_fallbacks(gold, slot.rng)
    else:
        wrong += [gold + dt.timedelta(days=d) for d in (1, -1, 2, -2, 3)]
    text = f"{built['statute']}\n\nFacts: {built['facts']}\n\n{built['question']}"
    return assemble(
        item_id=slot.item_id("gci-reason"), task=slot.task, domain="legal", question=text,
        gold_text=_text(gold, unit), distractors=[_text(w, unit) for w in wrong if w != gold],
        gold_position=slot.gold_position, split=slot.split,
        meta={"group": "reasoning", "view": "integrated", "kind": slot.kind, "template": f"{slot.kind}/{slot.family}",
              "params": built["params"], "calc": built["calc"], "answer": _reference(gold, unit),
              "answer_type": "number" if unit == "money" else "date"},
    )


def generate(split: str, n: int, seed: int = 0, task: str = TASK) -> list[Example]:
    """``n`` items of ``split`` (train/dev use the train family, test the test family)."""
    return generate_cycled(task, split, n, seed, KINDS, _item)
