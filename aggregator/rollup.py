"""Roll-ups (汇总): a node's own value of a parent indicator from its children's values."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from aggregator.framework import Framework, compose
from aggregator.numbers import round_value


@dataclass(frozen=True)
class RolledUp:
    parent_indicator: str
    rule: str
    value: Decimal
    inputs: Mapping[str, Decimal]


class RollupIncompleteError(ValueError):
    """Some unit has not reported a linked indicator yet."""


def roll_up(fw: Framework, values: Mapping[str, Mapping[str, Decimal]]) -> list[RolledUp]:
    """For each leaf of ``fw``, compose the units' values into this node's own value.

    In a framework that decomposes a parent (``fw.parent`` set), each linked leaf composes by its
    link's rule into the parent indicator; unlinked leaves are local indicators (scored here, not
    reported up). In a root framework (the province's own) each leaf composes by its ``rollup``
    rule into itself.
    Every unit of ``fw`` must have reported every linked leaf; otherwise nothing is rolled up
    (a partial sum reported upwards would be indistinguishable from a real one).
    """
    out: list[RolledUp] = []
    missing: list[str] = []
    for ind in fw.leaves():
        if ind.link is not None:
            rule, target = ind.link.rule, ind.link.parent_indicator
        elif fw.parent is None:
            rule, target = ind.rollup, ind.code
        else:
            continue
        inputs: dict[str, Decimal] = {}
        for unit in fw.units:
            v = values.get(unit.code, {}).get(ind.code)
            if v is None:
                missing.append(f"{unit.code}/{ind.code}")
            else:
                inputs[unit.code] = v
        if inputs and len(inputs) == len(fw.units):
            out.append(RolledUp(target, rule, round_value(compose(rule, inputs.values())), inputs))
    if missing:
        raise RollupIncompleteError("尚未报送 (not reported yet): " + ", ".join(missing[:10]))
    return out
