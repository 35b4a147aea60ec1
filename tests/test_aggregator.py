"""The pure core: hand-computed examples and invariants."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.framework import (
    Framework,
    FrameworkRef,
    Indicator,
    Link,
    Unit,
    check_links,
    check_structure,
    derive_child_framework,
)
from aggregator.inputs import UnitInputs
from aggregator.methods import Earned, Peers
from aggregator.methods import completion_ratio as completion_method
from aggregator.numbers import round_score
from aggregator.rollup import RollupIncompleteError, roll_up
from aggregator.scoring import competition_ranks, score_units
from tests.support.properties import generous_deadline

AS_OF = datetime(2026, 12, 31, tzinfo=UTC)
PARENT_REF = FrameworkRef("5101", "2026", "县市区", 1, "d")


def completion_ratio(ind: Indicator, value: Decimal, target: Decimal) -> Earned:
    ind = replace(ind, target=target)
    return completion_method(ind, "u", UnitInputs(values={ind.code: value}), Peers({}), AS_OF.date())


def leaf(code: str, weight: str, target: str, direction: str = "higher", rollup: str = "sum", **kw: object) -> Indicator:
    return Indicator(code=code, name=code, weight=Decimal(weight), parent_code="G", leaf=True, measure_unit="x",
                     direction=direction, target=Decimal(target), rollup=rollup, **kw)  # type: ignore[arg-type]


def framework(*leaves: Indicator, units: tuple[str, ...] = ("5101", "5107")) -> Framework:
    group = Indicator(code="G", name="G", weight=Decimal(100))
    return Framework(issuer="51", issuer_name="四川省", cycle="2026", unit_class="市州", version=1, title="t",
                     issued_at=0, expires_at=10**10, units=tuple(Unit(u, u) for u in units),
                     indicators=(group, *leaves))


def test_completion_ratio_worked_example() -> None:
    # 95 of a target of 100 with weight 20 earns 0.95 × 20 = 19 points.
    s = completion_ratio(leaf("A", "20", "100"), Decimal(95), Decimal(100))
    assert (s.fraction, s.fraction * 20, s.capped) == (Decimal("0.95"), Decimal("19.00"), False)
    # 150 of 100 is capped at 1.2: 24 points, flagged.
    s = completion_ratio(leaf("A", "20", "100"), Decimal(150), Decimal(100))
    assert (s.fraction, s.capped) == (Decimal("1.2"), True)
    # lower is better: 40 accidents against a ceiling of 50 → 50/40 = 1.25, capped at 1.2.
    s = completion_ratio(leaf("D", "10", "50", "lower"), Decimal(40), Decimal(50))
    assert s.fraction * 10 == Decimal("12.0")
    # missing data scores zero and says so.
    fw = framework(leaf("A", "100", "100"), units=("5101",))
    part = score_units(fw, {"5101": {}}, AS_OF)[0].parts[0]
    assert part.score == 0 and part.missing and "missing" in part.note


def test_score_units_ranks_with_ties_and_explains() -> None:
    fw = framework(leaf("A", "60", "100"), leaf("B", "40", "10"), units=("5101", "5107", "5108"))
    values = {"5101": {"A": Decimal(100), "B": Decimal(10)},
              "5107": {"A": Decimal(100), "B": Decimal(10)},
              "5108": {"A": Decimal(50), "B": Decimal(5)}}
    scores = {s.unit: s for s in score_units(fw, values, AS_OF)}
    assert scores["5101"].score == Decimal("100.00") and scores["5101"].rank == 1
    assert scores["5107"].rank == 1
    assert scores["5108"].score == Decimal("50.00") and scores["5108"].rank == 3
    explained = scores["5108"].explain()
    assert explained["parts"][0]["share"] == "0.5"  # type: ignore[index]


def test_rollup_sum_mean_and_incomplete() -> None:
    fw = replace(framework(leaf("A", "50", "1", links=(Link("d", "PA", "sum"),)),
                           leaf("C", "50", "1", links=(Link("d", "PC", "mean"),))), parent=PARENT_REF)
    values = {"5101": {"A": Decimal("1.5"), "C": Decimal(30)}, "5107": {"A": Decimal("2.25"), "C": Decimal(35)}}
    got = {r.parent_indicator: r.value for r in roll_up(fw, values)}
    assert got == {"PA": Decimal("3.75"), "PC": Decimal("32.5")}
    with pytest.raises(RollupIncompleteError):
        roll_up(fw, {"5101": values["5101"]})


def test_structure_problems_are_named() -> None:
    bad = framework(leaf("A", "60", "100"), leaf("A", "30", "1"))
    messages = [str(p) for p in check_structure(bad)]
    assert any("[A]" in m and "duplicate" in m for m in messages)
    assert any("must add up to the group's weight" in m for m in messages)


def test_derived_framework_passes_linkage_and_tampering_is_caught() -> None:
    parent = framework(leaf("A", "50", "101", must_cascade=True), leaf("D", "50", "7", "lower"))
    child = derive_child_framework(parent, "pd", "成都市", "5101", [Unit("510104", "a"), Unit("510105", "b")],
                                   unit_class="县市区", issued_at=0, expires_at=10**10)
    assert check_links(parent, "pd", child, "5101") == []
    a = child.indicator("A")
    assert a is not None and a.target == Decimal(51)  # 101 / 2 rounded up
    d = child.indicator("D")
    assert d is not None and d.target == Decimal(3)  # 7 / 2 rounded down (lower is better)
    short = replace(child, indicators=tuple(replace(i, target=Decimal(50)) if i.code == "A" else i
                                            for i in child.indicators))
    assert any("do not cover" in str(p) for p in check_links(parent, "pd", short, "5101"))
    unlinked = replace(child, indicators=tuple(replace(i, links=()) if i.code == "A" else i
                                               for i in child.indicators))
    assert any("must-cascade" in str(p) for p in check_links(parent, "pd", unlinked, "5101"))
    wrong_unit = replace(child, indicators=tuple(replace(i, measure_unit="元") if i.code == "D" else i
                                                 for i in child.indicators))
    assert any("unit of measure" in str(p) for p in check_links(parent, "pd", wrong_unit, "5101"))


values_st = st.decimals(min_value=0, max_value=10**6, places=2, allow_nan=False, allow_infinity=False)


@settings(deadline=generous_deadline())
@given(value=values_st, better=values_st, target=st.decimals(min_value=1, max_value=10**6, places=2))
def test_better_value_never_lowers_score(value: Decimal, better: Decimal, target: Decimal) -> None:
    ind = leaf("A", "20", str(target))
    lo, hi = sorted([value, better])
    assert completion_ratio(ind, hi, target).fraction >= completion_ratio(ind, lo, target).fraction
    assert completion_ratio(ind, hi, target).fraction <= ind.cap


@settings(deadline=generous_deadline())
@given(st.dictionaries(st.text("0123456789", min_size=4, max_size=4),
                       st.decimals(min_value=0, max_value=120, places=2), min_size=1, max_size=30))
def test_ranks_do_not_depend_on_input_order(scores: dict[str, Decimal]) -> None:
    forward = competition_ranks(scores)
    backward = competition_ranks(dict(reversed(list(scores.items()))))
    assert forward == backward
    for a, sa in scores.items():
        for b, sb in scores.items():
            if sa > sb:
                assert forward[a] < forward[b]
            if sa == sb:
                assert forward[a] == forward[b]


@settings(deadline=generous_deadline())
@given(st.lists(values_st, min_size=1, max_size=20))
def test_sum_rollup_equals_sum(values: list[Decimal]) -> None:
    units = tuple(f"51{i:02d}" for i in range(len(values)))
    fw = replace(framework(leaf("A", "100", "1", links=(Link("d", "A", "sum"),)), units=units), parent=PARENT_REF)
    rolled = roll_up(fw, {u: {"A": v} for u, v in zip(units, values, strict=True)})
    assert rolled[0].value == sum(values, Decimal(0))


def test_round_score_half_up() -> None:
    assert round_score(Decimal("1.005")) == Decimal("1.01")
    assert round_score(Decimal("1.004")) == Decimal("1.00")


def test_targets_must_suit_the_method() -> None:
    problems = [str(p) for p in check_structure(framework(leaf("A", "100", "-5")))]
    assert any("must be positive" in p for p in problems)
    s = completion_ratio(leaf("D", "10", "5", "lower"), Decimal(-1), Decimal(5))
    assert s.fraction == Decimal("1.2")  # nothing bad happened: full credit up to the cap
    s = completion_ratio(leaf("A", "10", "5"), Decimal(-3), Decimal(5))
    assert s.fraction == 0  # a negative result earns nothing, never a negative score


@settings(deadline=generous_deadline())
@given(st.text(max_size=80))
def test_parse_decimal_never_crashes(text: str) -> None:
    from aggregator.numbers import NumberError, parse_decimal

    try:
        v = parse_decimal(text, "x")
    except NumberError:
        return
    assert abs(v) < Decimal(10) ** 18
