"""Roll-ups (汇总): a node's own value of a parent indicator from its children's values.

Rules: sum, mean, min, max; ``weighted_mean:KEY`` (each unit's value weighted by its reported
KEY, e.g. population); ``ratio_of_sums`` (Σ numerators / Σ denominators, reported by each unit as
``CODE.num`` and ``CODE.den``, and passed up the same way); ``all`` (1 when every unit meets its
own target, else 0); ``latest`` (the most recently reported value).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, localcontext

from aggregator.errors import AppraisalError
from aggregator.framework import Framework, Indicator, compose, rule_name
from aggregator.numbers import WORK, round_value, to_text

NUM, DEN = ".num", ".den"


@dataclass(frozen=True)
class RolledUp:
    parent_indicator: str
    rule: str
    value: Decimal
    inputs: Mapping[str, Decimal]
    extra: Mapping[str, Decimal]  # further values reported up with it (ratio_of_sums: .num/.den)
    note: str = ""


class RollupIncompleteError(AppraisalError):
    """Some unit has not reported a linked indicator yet (or what it reported cannot be composed)."""

    default_code = "rollup.incomplete"


def roll_up(fw: Framework, values: Mapping[str, Mapping[str, Decimal]],
            stamps: Mapping[str, Mapping[str, int]] | None = None) -> list[RolledUp]:
    """For each leaf of ``fw``, compose the units' values into this node's own value.

    In a framework that decomposes a parent (``fw.parent`` set), the leaves linked to a parent
    indicator compose by the links' rule into it — per unit Σ share × value first when several
    leaves or partial shares feed it; unlinked leaves are local indicators (scored here, not
    reported up). In a root framework (the province's own) each leaf composes by its ``rollup``
    rule into itself. Every unit must have reported what the rule needs; otherwise nothing is
    rolled up (a partial sum reported upwards would be indistinguishable from a real one).
    ``stamps[unit][code]`` orders reports for ``latest``.
    """
    out: list[RolledUp] = []
    missing: list[str] = []
    with localcontext(WORK):
        for target, (rule, feeds) in _groups(fw).items():
            needed = [k for ind, _ in feeds for k in _needed(ind.code, rule)]
            gaps = [f"{u.code}/{k}" for u in fw.units for k in needed if k not in values.get(u.code, {})]
            if gaps:
                missing.extend(gaps)
                continue
            if len(feeds) == 1 and feeds[0][1] == 1:
                out.append(_compose(fw, feeds[0][0], rule, target, values, stamps or {}))
            else:
                out.append(_compose_shares(fw, feeds, rule, target, values))
    if missing:
        raise RollupIncompleteError("尚未报送 (not reported yet): " + ", ".join(missing[:10]), code="rollup.incomplete")
    return out


def _groups(fw: Framework) -> dict[str, tuple[str, list[tuple[Indicator, Decimal]]]]:
    """Parent indicator → (rule, the leaves feeding it with their shares)."""
    groups: dict[str, tuple[str, list[tuple[Indicator, Decimal]]]] = {}
    for ind in fw.leaves():
        if fw.parent is None:
            groups[ind.code] = (ind.rollup, [(ind, Decimal(1))])
            continue
        for link in ind.links:  # unlinked leaves are local indicators: scored here, not reported up
            groups.setdefault(link.parent_indicator, (link.rule, []))[1].append((ind, link.share))
    return groups


def _compose_shares(fw: Framework, feeds: list[tuple[Indicator, Decimal]], rule: str, target: str,
                    values: Mapping[str, Mapping[str, Decimal]]) -> RolledUp:
    """Many-to-many: per unit Σ share × value over the feeding leaves, then the rule across units."""
    per_unit = {u.code: sum((values[u.code][ind.code] * share for ind, share in feeds), Decimal(0)) for u in fw.units}
    note = " + ".join(f"{ind.code}×{to_text(share)}" for ind, share in feeds)
    return RolledUp(target, rule, round_value(compose(rule_name(rule), per_unit.values())), per_unit, {},
                    f"按份额合成 (by shares): {note}")


def _needed(code: str, rule: str) -> list[str]:
    name, _, by = rule.partition(":")
    if name == "ratio_of_sums":
        return [code + NUM, code + DEN]
    if name == "weighted_mean":
        return [code, by]
    return [code]


def _compose(fw: Framework, ind: Indicator, rule: str, target: str, values: Mapping[str, Mapping[str, Decimal]],
             stamps: Mapping[str, Mapping[str, int]]) -> RolledUp:
    units = [u.code for u in fw.units]
    own = {u: values[u][ind.code] for u in units if ind.code in values[u]}
    name, _, by = rule.partition(":")
    if name == "ratio_of_sums":
        num = sum((values[u][ind.code + NUM] for u in units), Decimal(0))
        den = sum((values[u][ind.code + DEN] for u in units), Decimal(0))
        if den == 0:
            raise RollupIncompleteError(f"{ind.code}: 分母合计为 0 (denominators sum to zero)", code="rollup.zero_denominator")
        return RolledUp(target, rule, round_value(num / den), own, {target + NUM: num, target + DEN: den},
                        f"Σ分子 {to_text(num)} / Σ分母 {to_text(den)}")
    if name == "weighted_mean":
        weights = {u: values[u][by] for u in units}
        total = sum(weights.values(), Decimal(0))
        if total <= 0:
            raise RollupIncompleteError(f"{ind.code}: 权重 {by} 合计不为正 (weights must sum to a positive number)",
                                        code="rollup.bad_weights")
        value = sum((own[u] * weights[u] for u in units), Decimal(0)) / total
        # The weight (e.g. population) is additive: report its total so the level above can weight too.
        return RolledUp(target, rule, round_value(value), own, {by: total}, f"按 {by} 加权 (weighted by {by})")
    if name == "all":
        failed = [u for u in units if not _meets(ind, u, fw.unit_class_of(u), own[u])]
        note = "全部达标 (all met)" if not failed else f"未达标：{', '.join(failed)} (not met)"
        return RolledUp(target, rule, Decimal(0 if failed else 1), own, {}, note)
    if name == "latest":
        stamp = {u: stamps.get(u, {}).get(ind.code, 0) for u in units}
        newest = max(units, key=lambda u: (stamp[u], u))
        return RolledUp(target, rule, own[newest], own, {}, f"取最新报送：{newest} (latest report)")
    return RolledUp(target, rule, round_value(compose(rule_name(rule), own.values())), own, {})


def _meets(ind: Indicator, unit: str, unit_class: str, value: Decimal) -> bool:
    t = ind.target_for(unit, unit_class)
    if t is None:
        return False
    return value >= t if ind.direction == "higher" else value <= t
