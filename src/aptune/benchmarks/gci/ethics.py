"""Integrated view of the GCI *legal ethics* group, constructed part (our construction).

Each item states an invented rule of professional conduct and a situation, and asks which
action complies. The four choices are the same actions for every item of a kind; which one is
gold is decided by evaluating the rule on the drawn facts (thresholds, relations, elapsed days,
a fee cap computed from the recovery), so no action is right by default. The gold's position
cycles through the four slots. Train/dev and test use different wordings of rule, situation and
actions, disjoint names and jurisdictions, and disjoint numeric rule parameters
(``meta["params"]``); the represented-person kind has no numeric parameter.

The other part of this view is real: MMLU professional_law items about professional
responsibility (``gci_ethics_integrated_law``).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from decimal import Decimal as D
from typing import Any

from aptune.benchmarks.gci.common import Slot, assemble, cents, generate_cycled, money
from aptune.benchmarks.gci.names import jurisdiction, people
from aptune.data.example import Example

TASK = "gci_ethics_integrated_rules"

PARAMS: dict[str, dict[str, dict[str, list[Any]]]] = {
    "gift": {"train": {"limit": [500, 1000], "report": [100, 200]}, "test": {"limit": [750, 1500], "report": [150, 300]}},
    "confidentiality": {"train": {"loss": [10000, 50000]}, "test": {"loss": [25000, 100000]}},
    "trust_fee": {"train": {"wait": [10, 14]}, "test": {"wait": [7, 21]}},
    "represented": {"train": {}, "test": {}},
    "contingency": {"train": {"tiers": [(33, 100000, 25), (40, 50000, 30)]},
                    "test": {"tiers": [(35, 75000, 20), (30, 200000, 25)]}},
}
KINDS = tuple(PARAMS)
Built = dict[str, Any]  # rule, situation, question, actions (4), gold (index), params, calc


def _code(rng: random.Random, fam: str) -> str:
    j = jurisdiction(rng, fam)
    return f"Rule {rng.randint(1, 9)}.{rng.randint(1, 19)} of the {j} Rules of Professional Conduct" if fam == "train" \
        else f"{j} Code of Ethics for Advocates, art. {rng.randint(10, 99)}"


def _gift(rng: random.Random, fam: str) -> Built:
    p = PARAMS["gift"][fam]
    limit, report = rng.choice(p["limit"]), rng.choice(p["report"])
    case = rng.randrange(4)  # 0 small, 1 reportable, 2 over the limit but related, 3 over the limit, unrelated
    value = [rng.randrange(20, report + 1, 5), rng.randrange(report + 5, limit + 1, 5),
             rng.randrange(limit + 5, limit * 3, 5), rng.randrange(limit + 5, limit * 3, 5)][case]
    related = case == 2 or (case < 2 and rng.random() < 0.3)
    lawyer, client = people(rng, fam, 2)
    item = rng.choice(["watch", "painting", "case of wine", "set of golf clubs"] if fam == "train"
                      else ["sculpture", "fountain pen", "weekend trip", "antique clock"])
    if fam == "train":
        rule = (f"{_code(rng, fam)}: A lawyer may accept a gift from a client worth up to {money(D(limit))}. A gift "
                f"worth more than {money(D(limit))} must be declined unless the client is a close relative of the "
                f"lawyer. Any accepted gift worth more than {money(D(report))} must be reported to the firm's ethics partner.")
        rel = f"{client} is {lawyer}'s aunt." if related else f"{client} and {lawyer} are not related."
        situation = f"{client}, a client of lawyer {lawyer}, offers {lawyer} a {item} worth {money(D(value))}. {rel}"
        actions = ["Accept the gift; nothing more is required.", "Accept the gift and report it to the ethics partner.",
                   "Decline the gift.", "Accept the gift only after the client's matter has ended."]
    else:
        rule = (f"{_code(rng, fam)}: Gifts from clients are permitted up to a value of {money(D(limit))}; gifts above "
                f"that value must be refused, except from a member of the advocate's family. Gifts accepted with a "
                f"value above {money(D(report))} shall be entered in the firm's gift register.")
        rel = f"{client} is {lawyer}'s cousin." if related else f"{client} has no family tie to {lawyer}."
        situation = f"Advocate {lawyer} is offered a {item} valued at {money(D(value))} by a client, {client}. {rel}"
        actions = ["Take the gift with no further step.", "Take the gift and enter it in the gift register.",
                   "Refuse the gift.", "Take the gift once the mandate is over."]
    gold = 0 if value <= report else 1 if (value <= limit or related) else 2
    return {"rule": rule, "situation": situation, "actions": actions, "gold": gold,
                "params": {"limit": limit, "report": report}, "calc": {"value": value, "related": related}}


def _confidentiality(rng: random.Random, fam: str) -> Built:
    loss_limit = rng.choice(PARAMS["confidentiality"][fam]["loss"])
    case = rng.randrange(5)  # 0 threat of harm, 1 big fraud via lawyer, 2 small fraud via lawyer (insists), 3 fraud not via lawyer, 4 past crime
    loss = [0, rng.randrange(loss_limit + 1000, loss_limit * 4, 1000), rng.randrange(1000, loss_limit, 1000),
            rng.randrange(loss_limit + 1000, loss_limit * 4, 1000), rng.randrange(1000, loss_limit * 4, 1000)][case]
    lawyer, client, victim = people(rng, fam, 3)
    stories = [
        f"{client} tells {lawyer} that tomorrow {client} will seriously injure {victim}, a former business partner.",
        f"{client} reveals a plan, still under way, to cheat {victim} out of {money(D(loss))} using contracts {lawyer} is drafting.",
        f"{client} reveals a plan, still under way, to cheat {victim} out of {money(D(loss))} using contracts {lawyer} is drafting, and insists that {lawyer} finish them.",
        f"{client} mentions a plan to cheat {victim} out of {money(D(loss))}; {lawyer}'s work is unrelated to that plan.",
        f"{client} admits to {lawyer} having cheated {victim} out of {money(D(loss))} two years ago; the scheme is over.",
    ]
    if fam == "train":
        rule = (f"{_code(rng, fam)}: (a) A lawyer must keep information about a client confidential. (b) The lawyer "
                f"may reveal it to the extent reasonably necessary to prevent reasonably certain death or substantial "
                f"bodily harm, or to prevent a crime, in which the lawyer's services are being used, that would cause "
                f"a financial loss of more than {money(D(loss_limit))}. (c) A lawyer whose services a client insists on "
                f"using for a crime or fraud that (b) does not cover must withdraw from the representation.")
        actions = ["Reveal the information, only as far as needed to prevent the harm.", "Keep the information confidential.",
                   "Withdraw from the representation and keep the information confidential.",
                   "Publish everything the client has said, to warn the public."]
    else:
        stories = [s.replace("tells", "confides to").replace("reveals", "discloses to " + lawyer) for s in stories]
        rule = (f"{_code(rng, fam)}: Professional secrecy covers all that a client confides. By exception, the advocate "
                f"may disclose what is strictly necessary to prevent a threat to someone's life or physical safety, or "
                f"an ongoing offence that uses the advocate's work and would cost the victim over "
                f"{money(D(loss_limit))}. If the client insists on using the advocate's work for any other offence, "
                f"the advocate must terminate the mandate.")
        actions = ["Disclose what is strictly necessary to prevent the harm.", "Say nothing and keep the secret.",
                   "Terminate the mandate and keep the secret.", "Tell the press the whole story."]
    gold = [0, 0, 2, 1, 1][case]
    return {"rule": rule, "situation": stories[case], "actions": actions, "gold": gold, "params": {"loss": loss_limit},
                "calc": {"case": case, "loss": loss}}


def _trust_fee(rng: random.Random, fam: str) -> Built:
    wait = rng.choice(PARAMS["trust_fee"][fam]["wait"])
    fee = D(rng.randrange(1000, 20001, 50))
    disputed = cents(fee * D(rng.choice([10, 20, 25, 30, 40])) / 100)
    case = rng.randrange(4)  # 0 waited, no objection; 1 waited, partial objection; 2 too early; 3 full objection
    days = rng.randint(wait, wait + 30) if case in (0, 1, 3) else rng.randint(1, wait - 1)
    lawyer, client = people(rng, fam, 2)
    if fam == "train":
        rule = (f"{_code(rng, fam)}: A lawyer may take an earned fee out of the client trust account only after sending "
                f"the client an invoice and waiting {wait} days. Any amount the client disputes in writing must stay in "
                f"the trust account until the dispute is resolved.")
        obj = ["The client has raised no objection.",
               f"{client} has disputed {money(disputed)} of it in writing.", "The client has not responded yet.",
               f"{client} has disputed the whole invoice in writing."][case]
        situation = f"{lawyer} sent {client} an invoice for {money(fee)} in earned fees {days} days ago. {obj}"
        actions = [f"Withdraw the full {money(fee)} now.", f"Withdraw {money(fee - disputed)} now and leave {money(disputed)} in trust.",
                   "Leave the whole fee in trust for now.", f"Withdraw {money(fee)} now and refund {money(disputed)} later if the client wins."]
    else:
        rule = (f"{_code(rng, fam)}: Fees held on a client account may be transferred to the advocate once a bill has "
                f"been delivered and {wait} days have passed. A sum the client contests in writing stays on the client "
                f"account until the disagreement is settled.")
        obj = ["There has been no reply disputing it.", f"{client} wrote to contest {money(disputed)} of the bill.",
               f"{client} has said nothing so far.", f"{client} wrote to contest the entire bill."][case]
        situation = f"Advocate {lawyer} delivered a bill of {money(fee)} to {client} {days} days ago. {obj}"
        actions = [f"Transfer all {money(fee)} now.", f"Transfer {money(fee - disputed)} now and keep {money(disputed)} on the client account.",
                   "Keep the whole sum on the client account for now.", f"Transfer all {money(fee)} now and repay {money(disputed)} later if necessary."]
    gold = [0, 1, 2, 2][case]
    return {"rule": rule, "situation": situation, "actions": actions, "gold": gold, "params": {"wait": wait},
                "calc": {"days": days, "case": case, "fee": str(fee), "disputed": str(disputed)}}


def _represented(rng: random.Random, fam: str) -> Built:
    case = rng.randrange(3)  # 0 represented + consent, 1 unrepresented, 2 represented, no consent
    lawyer, other, counsel = people(rng, fam, 3)
    if fam == "train":
        rule = (f"{_code(rng, fam)}: A lawyer shall not communicate about the matter with a person the lawyer knows is "
                f"represented by another lawyer in that matter, unless that lawyer consents. When dealing with a person "
                f"who has no lawyer, the lawyer must first make clear that the lawyer does not represent that person.")
        facts = [f"{other} is represented by {counsel}, who has agreed that {lawyer} may speak with {other}.",
                 f"{other} has no lawyer in the matter.",
                 f"{other} is represented by {counsel}, who has not been asked and has not agreed."][case]
        situation = f"{lawyer} represents the buyer in a dispute with the seller, {other}, and wants to discuss a settlement with {other}. {facts}"
        actions = [f"Speak with {other} directly.", f"Speak with {other} directly after explaining that {lawyer} does not represent {other}.",
                   f"Contact {other} only through {counsel}.", f"Speak with {other} directly and ask {other} not to tell {counsel}."]
        if case == 1:
            actions[2] = f"Contact {other} only through a lawyer appointed for {other}."
    else:
        rule = (f"{_code(rng, fam)}: An advocate may not discuss a case with an opposing party who has counsel in that "
                f"case, except with that counsel's agreement. An advocate who speaks to an opposing party without "
                f"counsel must begin by stating that the advocate acts only for the advocate's own client.")
        facts = [f"{other}'s counsel, {counsel}, has agreed to the conversation.", f"{other} acts without counsel.",
                 f"{other}'s counsel, {counsel}, has not agreed to any conversation."][case]
        situation = f"Advocate {lawyer}, acting for a landlord, wishes to negotiate directly with the tenant, {other}. {facts}"
        actions = [f"Negotiate with {other} directly.", f"Negotiate with {other} directly after stating that {lawyer} acts only for the landlord.",
                   f"Approach {other} only through {counsel}.", f"Negotiate with {other} directly, keeping it from {counsel}."]
        if case == 1:
            actions[2] = f"Approach {other} only through counsel appointed for {other}."
    return {"rule": rule, "situation": situation, "actions": actions, "gold": [0, 1, 2][case], "params": {}, "calc": {"case": case}}


def contingency_cap(recovery: D, tiers: tuple[int, int, int]) -> D:
    """p1% of the first T recovered plus p2% of the excess."""
    p1, t, p2 = tiers
    return cents(D(p1) / 100 * min(recovery, t) + D(p2) / 100 * max(recovery - t, 0))


def _contingency(rng: random.Random, fam: str) -> Built:
    tiers = rng.choice(PARAMS["contingency"][fam]["tiers"])
    p1, t, p2 = tiers
    recovery = D(rng.randrange(20000, 600001, 1000))
    agreed_pct = rng.choice([p2 - 5, p2, p1 - 3, p1, p1 + 5])
    agreed = cents(recovery * agreed_pct / 100)
    cap = contingency_cap(recovery, tiers)
    lawyer, client = people(rng, fam, 2)
    if cap == agreed:
        recovery += 1000
        agreed, cap = cents(recovery * agreed_pct / 100), contingency_cap(recovery, tiers)
    if fam == "train":
        rule = (f"{_code(rng, fam)}: In a personal injury matter, a contingent fee may not exceed {p1}% of the first "
                f"{money(D(t))} recovered plus {p2}% of any amount recovered above {money(D(t))}. A fee agreement that "
                f"exceeds this limit is enforceable only up to the limit.")
        situation = (f"{client} agreed to pay lawyer {lawyer} {agreed_pct}% of any recovery. {lawyer} won {money(recovery)} "
                     f"for {client} in a personal injury suit.")
        actions = [f"Collect the agreed fee of {money(agreed)}.", f"Collect {money(cap)} and no more.",
                   "Collect nothing, because the fee agreement is void.", f"Collect {money(agreed)} and report the fee to the bar."]
    else:
        rule = (f"{_code(rng, fam)}: Success fees in bodily injury cases are limited to {p1} percent of the first "
                f"{money(D(t))} of the award and {p2} percent of the award beyond {money(D(t))}; a success fee agreed "
                f"above this limit is reduced to the limit.")
        situation = (f"Advocate {lawyer} and {client} agreed on a success fee of {agreed_pct} percent. The court awarded "
                     f"{client} {money(recovery)} for bodily injury.")
        actions = [f"Charge the agreed {money(agreed)}.", f"Charge {money(cap)}, the maximum.",
                   "Charge nothing, as the fee agreement is void.", f"Charge {money(agreed)} after notifying the bar."]
    gold = 0 if agreed <= cap else 1
    return {"rule": rule, "situation": situation, "actions": actions, "gold": gold, "params": {"tiers": list(tiers)},
                "calc": {"recovery": str(recovery), "agreed_pct": agreed_pct, "cap": str(cap), "agreed": str(agreed)}}


BUILDERS: dict[str, Callable[[random.Random, str], Built]] = {
    "gift": _gift, "confidentiality": _confidentiality, "trust_fee": _trust_fee, "represented": _represented,
    "contingency": _contingency,
}


def _item(slot: Slot) -> Example:
    b = BUILDERS[slot.kind](slot.rng, slot.family)
    actions, gold = b["actions"], b["gold"]
    question = f"{b['rule']}\n\nSituation: {b['situation']}\n\nWhich action complies with the rule?"
    return assemble(
        item_id=slot.item_id("gci-ethics"), task=slot.task, domain="legal", question=question,
        gold_text=actions[gold], distractors=[a for j, a in enumerate(actions) if j != gold],
        gold_position=slot.gold_position, split=slot.split,
        meta={"group": "ethics", "view": "integrated", "kind": slot.kind, "template": f"{slot.kind}/{slot.family}",
              "params": b["params"], "calc": b["calc"], "gold_action": gold},
    )


def generate(split: str, n: int, seed: int = 0, task: str = TASK) -> list[Example]:
    """``n`` conduct-rule dilemmas of ``split`` (train/dev from the train family, test from the test one)."""
    return generate_cycled(task, split, n, seed, KINDS, _item)
