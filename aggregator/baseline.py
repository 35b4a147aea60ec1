"""纵向比较's base: the previous cycle's values on this cycle's tree.

The growth method compares a unit's value with its value a cycle earlier. After a 区划调整 the previous
cycle's units are not this cycle's: 思经镇 (2020) had no 2019 value of its own, but 思经乡 and 鱼泉乡 did.
The cycle rule (docs/parts/changes.md) says growth compares with the previous cycle's values carried
from that cycle's tree onto this one. This module works out those carried values. Each one names its
source units, so an office and anyone recomputing a published score can see where the base came from.

It is pure. It takes the framework being scored, the previous cycle's values (keyed by the codes of that
cycle's units) and the lineage. With no lineage the tree has not changed, and a unit's base is its own
value under the same code.

How an indicator carries follows its roll-up rule, which already says how its values combine over units:
``sum`` is additive (summed on a merge, apportioned on a split); ``weighted_mean:W`` is intensive,
weighted by W when W sums; every other rule is intensive without a weight. A merged unit then gets no
carried value, and the office enters it (a plain mean of two rates would be a guess).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from aggregator.framework import Framework, rule_name
from aggregator.lineage import ADDITIVE, INTENSIVE, Lineage, cycle_bounds


@dataclass(frozen=True)
class Carried:
    """One unit's base for one indicator: ``value`` from ``sources`` (codes on the previous cycle's
    tree) in ``period``."""

    value: Decimal
    period: str
    sources: tuple[str, ...]


def growth_indicators(fw: Framework) -> list[str]:
    return [i.code for i in fw.leaves() if i.method == "growth"]


def carry_kinds(fw: Framework, indicators: list[str]) -> tuple[dict[str, str], dict[str, str]]:
    """How each of ``indicators`` carries, and the weights the intensive ones need (each weight is
    carried too, so it is among the kinds returned)."""
    kinds: dict[str, str] = {}
    weights: dict[str, str] = {}
    for code in indicators:
        ind = fw.indicator(code)
        if ind is None:
            continue
        name, _, by = ind.rollup.partition(":")
        if name == "sum":
            kinds[code] = ADDITIVE
            continue
        kinds[code] = INTENSIVE
        weight = fw.indicator(by) if name == "weighted_mean" and by else None
        if weight is not None and rule_name(weight.rollup) == "sum" and by not in indicators:
            kinds[by] = ADDITIVE
            weights[code] = by
        elif weight is not None and kinds.get(by) == ADDITIVE:
            weights[code] = by
    return kinds, weights


def growth_baseline(fw: Framework, previous_period: str, previous: Mapping[str, Mapping[str, Decimal]],
                    lineage: Lineage | None) -> dict[str, dict[str, Carried]]:
    """Per unit of ``fw`` and growth indicator, the previous cycle's value on ``fw``'s tree.
    ``previous``: unit code (on the previous cycle's tree) → indicator → value, for ``previous_period``
    (2019-Y, or 2019-Q3 for a quarter of 2020). Units the previous cycle's tree does not hold are
    ignored. A ``DivisionChangeError`` when the lineage cannot say (a cycle before its base)."""
    wanted = growth_indicators(fw)
    if not wanted:
        return {}
    kinds, weights = carry_kinds(fw, wanted)
    units = [u.code for u in fw.units]
    if lineage is None:
        return {u: {i: Carried(previous[u][i], previous_period, (u,)) for i in wanted if i in previous.get(u, {})}
                for u in units if u in previous}
    at: date = cycle_bounds(previous_period[:4])[1]
    to: date = cycle_bounds(fw.cycle)[1]
    then = lineage.tree_at(at).units
    only = {u: {i: v for i, v in vals.items() if i in kinds} for u, vals in previous.items() if u in then}
    carried = lineage.carry(only, at, to, kinds, weights, unweighted="drop")
    origins = lineage.origins(at, to)
    return {u: {i: Carried(carried[u][i], previous_period, origins.get(u, ())) for i in wanted if i in carried[u]}
            for u in units if u in carried}
