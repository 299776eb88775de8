"""Head to head: one method's final models against another's, paired on the same items.

Every Δ in the main table is a method against the untrained model. "Does APT beat SFT?" is a
different question, and reading it off two of those intervals is wrong both ways: two
intervals that overlap can still hold a difference that excludes zero, because both methods
were scored on the same items and most of the item-to-item noise cancels in the pairing.

So for a pair (A, B), at every seed both ran, A's final model and B's are compared item by item
on the items both evaluated; an item's difference is averaged over those seeds, and the 95%
interval is a percentile bootstrap over items — the same construction as the Δ against
``base`` (``compare_stats``), with B's final model in place of round 0.

Pairs come from the compare config's ``versus:`` list and ``aptune compare-report --versus``
(``A:B``, read "A against B"); by default every trained method is set against ``sft-lora``,
the usual practice, when the report has it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from aptune.evaluate.metrics import Interval, hierarchical_bootstrap_mean, paired_bootstrap_delta
from aptune.compare.selection import parse_pair
from aptune.report.compare_runs import SeedRun
from aptune.report.compare_stats import NAN

#: The method every trained method is set against, beside the pairs a config or the CLI names.
USUAL_PRACTICE = "sft-lora"


def report_pairs(methods: Sequence[str], asked: Iterable[str] = ()) -> list[tuple[str, str]]:
    """The pairs a report shows, in order, each once: every trained method against
    ``sft-lora`` (when ``methods`` has it), then the ``asked`` ``A:B`` pairs whose two methods
    the report holds (a subset report may leave one out)."""
    pairs: list[tuple[str, str]] = []
    if USUAL_PRACTICE in methods:
        pairs += [(m, USUAL_PRACTICE) for m in methods if m not in ("base", USUAL_PRACTICE)]
    for a, b in map(parse_pair, asked):
        if a in methods and b in methods and (a, b) not in pairs:
            pairs.append((a, b))
    return pairs


@dataclass
class Versus:
    """A against B: paired differences of their final models (fractions, or nats per item)."""

    a: str
    b: str
    seeds: list[int]
    domain: Interval
    general: Interval
    domain_loglik: Interval
    general_loglik: Interval
    # seed -> (domain, general) accuracy difference at that seed alone: the pooled interval is
    # over items, so this is where a difference that holds at one training run only shows
    per_seed: dict[int, tuple[Interval, Interval]]
    # the same differences with seeds resampled as well as items (hierarchical bootstrap): the
    # interval that carries training's run-to-run variation
    domain_seeds_items: Interval = NAN
    general_seeds_items: Interval = NAN

    def to_dict(self) -> dict[str, object]:
        return {"a": self.a, "b": self.b, "seeds": self.seeds, "domain": self.domain.to_dict(),
                "domain_seeds_items": self.domain_seeds_items.to_dict(),
                "general_seeds_items": self.general_seeds_items.to_dict(),
                "general": self.general.to_dict(), "domain_loglik": self.domain_loglik.to_dict(),
                "general_loglik": self.general_loglik.to_dict(),
                "per_seed": [{"seed": k, "domain": d.to_dict(), "general": g.to_dict()}
                             for k, (d, g) in self.per_seed.items()]}


def _paired(runs_a: Sequence[SeedRun], runs_b: Sequence[SeedRun], view: str, loglik: bool, seed: int) -> Interval:
    """A minus B over the items both final models scored at the seeds both ran, each item's
    difference averaged over those seeds."""
    b_by_seed = {r.seed: r for r in runs_b}
    a_vals: dict[tuple[str, str], list[float]] = defaultdict(list)
    b_vals: dict[tuple[str, str], list[float]] = defaultdict(list)
    for run_a in runs_a:
        run_b = b_by_seed.get(run_a.seed)
        if run_b is None:
            continue
        ma = (run_a.loglik_after if loglik else run_a.after).get(view, {})
        mb = (run_b.loglik_after if loglik else run_b.after).get(view, {})
        for key in ma.keys() & mb.keys():
            a_vals[key].append(float(ma[key]))
            b_vals[key].append(float(mb[key]))
    if not a_vals:
        return NAN
    keys = sorted(a_vals)
    return paired_bootstrap_delta([float(np.mean(a_vals[k])) for k in keys],
                                  [float(np.mean(b_vals[k])) for k in keys], seed=seed)


def _seed_differences(runs_a: Sequence[SeedRun], runs_b: Sequence[SeedRun], view: str) -> list[list[float]]:
    """Per seed both ran: A's correctness minus B's on each item both scored at that seed."""
    b_by_seed = {r.seed: r for r in runs_b}
    out = []
    for run_a in sorted(runs_a, key=lambda r: r.seed):
        run_b = b_by_seed.get(run_a.seed)
        if run_b is None:
            continue
        ma, mb = run_a.after.get(view, {}), run_b.after.get(view, {})
        keys = sorted(ma.keys() & mb.keys())
        if keys:
            out.append([float(ma[k]) - float(mb[k]) for k in keys])
    return out


def versus(a: str, b: str, runs: Sequence[SeedRun], seed: int = 0) -> Versus:
    """Method ``a``'s final models against method ``b``'s, from the report's runs."""
    runs_a = [r for r in runs if r.method == a]
    runs_b = [r for r in runs if r.method == b]
    common = sorted({r.seed for r in runs_a} & {r.seed for r in runs_b})
    per_seed = {}
    for k in common:
        one_a, one_b = [r for r in runs_a if r.seed == k], [r for r in runs_b if r.seed == k]
        per_seed[k] = (_paired(one_a, one_b, "domain", False, seed), _paired(one_a, one_b, "general", False, seed))
    return Versus(a, b, common,
                  domain_seeds_items=hierarchical_bootstrap_mean(_seed_differences(runs_a, runs_b, "domain"), seed=seed),
                  general_seeds_items=hierarchical_bootstrap_mean(_seed_differences(runs_a, runs_b, "general"),
                                                                  seed=seed),
                  domain=_paired(runs_a, runs_b, "domain", False, seed),
                  general=_paired(runs_a, runs_b, "general", False, seed),
                  domain_loglik=_paired(runs_a, runs_b, "domain", True, seed),
                  general_loglik=_paired(runs_a, runs_b, "general", True, seed),
                  per_seed=per_seed)


PRIMARY_HEADER = ["A against B", "seeds", "Δ domain acc, items [95% CI]", "Δ domain acc, seeds + items [95% CI]",
                  "Δ general acc, items [95% CI]", "Δ general acc, seeds + items [95% CI]",
                  "Δ domain / general acc per seed"]
PRIMARY_NOTE = (
    "The comparison this config named before it ran (`primary:`), the one the experiment tests; every other row "
    "of this report is exploratory. A's final models minus B's, paired on the same items. \"items\": 95% "
    "percentile bootstrap over items, each item's difference averaged over seeds. \"seeds + items\": a "
    "hierarchical bootstrap that draws the training seeds with replacement and then each drawn seed's items, so "
    "the interval also carries how much the result moves from one training run to the next; with one seed the "
    "two are the same."
)


def primary_rows(v: Versus) -> list[list[str]]:
    return [[f"{v.a} against {v.b}", ",".join(map(str, v.seeds)) or "–", v.domain.pct(True),
             v.domain_seeds_items.pct(True), v.general.pct(True), v.general_seeds_items.pct(True), _per_seed(v)]]


VERSUS_HEADER = ["A against B", "seeds", "Δ domain acc, seeds + items [95% CI]", "Δ general acc, seeds + items [95% CI]",
                 "Δ domain gold log-lik, nats/item", "Δ general gold log-lik, nats/item",
                 "Δ domain / general acc per seed", "items (domain / general)"]
VERSUS_NOTE = (
    "Exploratory comparisons. A's final model minus B's, item by item on the items both scored at each seed both "
    "ran, averaged over seeds; the 95% interval is a hierarchical percentile bootstrap (the seeds drawn with "
    "replacement, then each drawn seed's items), so it carries the run-to-run variation of training as well "
    "as the item sampling (with one seed: a bootstrap over items). Pairing on the same items cancels most "
    "item-to-item noise, so this interval, not the overlap of two intervals against base, says whether A's "
    "models beat B's; the per-seed column shows whether the difference holds run by run."
)


def _per_seed(v: Versus) -> str:
    return "; ".join(f"{k}: {100 * d.value:+.1f} / {100 * g.value:+.1f}" if d.n and g.n else f"{k}: –"
                     for k, (d, g) in v.per_seed.items()) or "–"


def versus_rows(table: Sequence[Versus]) -> list[list[str]]:
    return [[f"{v.a} against {v.b}", ",".join(map(str, v.seeds)) or "–", v.domain_seeds_items.pct(True),
             v.general_seeds_items.pct(True), v.domain_loglik.nats(), v.general_loglik.nats(), _per_seed(v),
             f"{v.domain.n} / {v.general.n}"]
            for v in table]
