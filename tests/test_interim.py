"""Issue 9 item 11: an interim period (H, Q, M) is scored against its interim target — time-proportional
for flows, the annual target for levels and rates, a stated per-period target where there is one —,
labelled interim, and graded only if the framework grades that period. The year is as before."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aggregator import interim
from aggregator.errors import BadInput
from aggregator.framework import Framework, Indicator, Unit, check_structure, derive_child_framework
from aggregator.inputs import UnitInputs
from aggregator.numbers import VALUE_QUANTUM
from aggregator.scoring import UnitScore, appraise, score_units
from sync.codec import decode_framework, encode_framework
from sync.envelope import digest

D = Decimal
AS_OF = datetime(2026, 7, 15, tzinfo=UTC)
UNITS = (Unit("5101", "成都市"), Unit("5107", "绵阳市"))


def leaf(code: str, weight: int, **kw: object) -> Indicator:
    return Indicator(code=code, name=code, weight=D(weight), parent_code="A", leaf=True, **kw)  # type: ignore[arg-type]


def framework(*leaves: Indicator, **kw: object) -> Framework:
    total = sum((i.weight for i in leaves), D(0))
    return Framework("51", "四川省", "2026", "市州", 1, "t", 0, 1, UNITS,  # type: ignore[arg-type]
                     (Indicator(code="A", name="A", weight=total), *leaves), **kw)


def by_unit(scores: list[UnitScore]) -> dict[str, UnitScore]:
    return {s.unit: s for s in scores}


INVESTMENT = leaf("A1", 100, target=D(400), measure_unit="亿元")  # a flow: summed up the levels


def test_a_first_quarter_entry_is_scored_against_a_quarter_of_the_annual_target() -> None:
    fw = framework(INVESTMENT)
    values = {"5101": {"A1": D(100)}, "5107": {"A1": D(25)}}
    year = by_unit(score_units(fw, values, AS_OF, "2026-Y"))
    assert year["5107"].score == D("6.25") and year["5107"].grade == "差"  # what issue 9 item 11 saw for Q1
    q1 = by_unit(score_units(fw, values, AS_OF, "2026-Q1"))
    assert q1["5101"].score == 100 and q1["5107"].score == 25  # against 100, not 400
    for s in q1.values():
        assert s.interim and not s.graded and s.grade == "" and "interim period: not graded" in s.grade_reason
        assert s.rank in (1, 2)  # ranked all the same
        explained = s.explain()
        assert explained["interim"] is True and explained["graded"] is False and explained["period"] == "2026-Q1"
        part = explained["parts"][0]  # type: ignore[index]
        assert part["interim"] == {"rule": "proportional", "share": "1/4", "annual_target": "400", "target": "100"}
        assert part["steps"]["target"] == "100"
    assert not year["5101"].interim and year["5101"].graded and "interim" not in year["5101"].explain()["parts"][0]


def test_the_year_is_scored_as_before() -> None:
    fw = framework(INVESTMENT, leaf("A2", 0, target=D(41), rollup="mean", measure_unit="%"))
    values = {"5101": {"A1": D(350), "A2": D(40)}, "5107": {"A1": D(500)}}
    for period in ("", "2026-Y"):
        got = [(s.unit, s.score, s.rank, s.grade, s.grade_reason, s.complete) for s in score_units(fw, values, AS_OF,
                                                                                                   period)]
        assert got == [("5101", D("87.50"), 1, "良好", "得分不低于 80 (score at or above the threshold)", True),
                       # 优秀 admits ⌊20 % × 2⌋ = 0 units; the incomplete unit ranks last whatever its score.
                       ("5107", D("120.00"), 2, "良好", "得分不低于 80 (score at or above the threshold)", False)]


def test_a_rate_keeps_its_annual_target_and_a_flow_is_pro_rated_by_default() -> None:
    coverage = leaf("B1", 50, target=D(41), rollup="mean", measure_unit="%")  # forest coverage: a level
    fw = framework(leaf("A1", 50, target=D(1200)), coverage)
    s = by_unit(score_units(fw, {"5101": {"A1": D(700), "B1": D(41)}}, AS_OF, "2026-M07"))["5101"]
    parts = {p.indicator: p for p in s.parts}
    assert parts["A1"].interim["target"] == "700" and parts["A1"].interim["share"] == "7/12"
    assert parts["B1"].interim == {"rule": "same", "share": "1/1", "annual_target": "41", "target": "41"}
    assert s.score == 100
    assert interim.default_rule(coverage) == "same" and interim.default_rule(fw.leaves()[0]) == "proportional"
    # A class comparison has no target to pro-rate: its interim values are compared as they are.
    assert interim.default_rule(leaf("C1", 10, method="rank")) == "same"


def test_a_stated_rule_and_period_targets_win() -> None:
    a1 = leaf("A1", 60, target=D(1000), unit_targets={"5107": D(500)}, period_targets={"Q1": D(150), "H1": D(450)})
    a2 = leaf("A2", 40, target=D(80), interim="proportional", rollup="mean")
    fw = framework(a1, a2)
    assert check_structure(fw) == []
    values = {"5101": {"A1": D(150), "A2": D(20)}, "5107": {"A1": D(75), "A2": D(20)}}
    q1 = by_unit(score_units(fw, values, AS_OF, "2026-Q1"))
    p = {x.indicator: x for x in q1["5107"].parts}
    # 绵阳's own annual target 500 gets the same share of it as the default target: 150/1000.
    assert p["A1"].interim == {"rule": "period_target", "share": "3/20", "annual_target": "500", "target": "75"}
    assert p["A2"].interim["target"] == "20"
    assert q1["5101"].score == q1["5107"].score == 100
    q2 = {x.indicator: x for x in by_unit(score_units(fw, values, AS_OF, "2026-Q2"))["5101"].parts}
    assert q2["A1"].interim["rule"] == "proportional" and q2["A1"].interim["target"] == "500"


def test_threshold_baseline_and_challenge_are_scaled_with_the_target() -> None:
    t = leaf("A1", 100, method="threshold", target=D(100), params={"baseline": "80", "challenge": "120"})
    fw = framework(t)
    # 22.5 in Q1 is 90 for the year: half-way from the baseline (20) to the target (25) → 0.8.
    s = by_unit(score_units(fw, {"5101": {"A1": D("22.5")}}, AS_OF, "2026-Q1"))["5101"]
    assert s.parts[0].earned is not None and s.parts[0].earned.steps["baseline"] == "20"
    assert s.parts[0].earned.fraction == D("0.8") and s.score == 80


def test_an_indicator_not_appraised_in_interim_periods_is_left_out_and_the_rest_rescaled() -> None:
    survey = leaf("B1", 40, method="survey", params={"group.public": "1"}, interim="none")
    fw = framework(leaf("A1", 60, target=D(400)), survey)
    inputs = {"5101": UnitInputs(values={"A1": D(100)}), "5107": UnitInputs(values={"A1": D(50)})}
    q1 = by_unit(appraise(fw, inputs, AS_OF, "2026-Q1"))
    assert q1["5101"].score == 100 and q1["5107"].score == 50  # 60 × 0.5 × 100/60
    assert q1["5101"].complete  # left out is not missing
    left = q1["5101"].parts[1]
    assert not left.appraised and not left.missing and left.explain()["interim"] == {"rule": "none"}
    assert "not appraised in this period" in str(q1["5107"].explain())
    renorm = by_unit(appraise(framework(leaf("A1", 60, target=D(400)), survey, missing_policy="renormalise"), inputs,
                              AS_OF, "2026-Q1"))
    assert renorm["5107"].score == 50
    # The year appraises the survey again; 绵阳 has no survey result and is scored by the missing-data policy.
    year = by_unit(appraise(fw, inputs, AS_OF, "2026-Y"))
    assert year["5107"].score == D("7.50") and year["5107"].parts[1].missing
    # A period where nothing is appraised: nobody is scored, ranked or graded.
    only = by_unit(appraise(framework(survey), {"5101": UnitInputs(surveys={"B1": {"public": D(90)}})}, AS_OF,
                            "2026-M02"))
    assert not only["5101"].assessed and only["5101"].rank == 0 and "nothing is appraised" in only["5101"].grade_reason


def test_only_the_periods_the_framework_grades_get_grades() -> None:
    fw = framework(INVESTMENT, graded_periods=("Y", "H1", "Q"))
    values = {"5101": {"A1": D(400)}, "5107": {"A1": D(100)}}
    for period, graded in (("2026-Y", True), ("2026-H1", True), ("2026-H2", False), ("2026-Q3", True),
                           ("2026-M06", False)):
        for s in score_units(fw, values, AS_OF, period):
            assert s.graded is graded and (s.grade != "") is graded, (period, s)
    assert {s.unit: s.grade for s in score_units(fw, values, AS_OF, "2026-H1")} == {"5101": "良好", "5107": "差"}
    not_year = framework(INVESTMENT, graded_periods=("H2",))
    assert [s.grade_reason for s in score_units(not_year, values, AS_OF, "2026-Y")] == [
        "本报告期不评定等次 (this period is not graded)"] * 2


def test_a_period_of_another_cycle_is_refused() -> None:
    with pytest.raises(BadInput) as err:
        score_units(framework(INVESTMENT), {}, AS_OF, "2027-Q1")
    assert err.value.code == "scoring.bad_period"


def test_nonsense_is_refused_with_the_field() -> None:
    problems = check_structure(framework(
        leaf("A1", 30, target=D(100), period_targets={"Q5": D(20), "Y": D(100)}),
        leaf("A2", 30, period_targets={"Q1": D(5)}, unit_targets={"5101": D(9), "5107": D(9)}),  # no default target
        leaf("A3", 20, method="rank", interim="proportional"),
        leaf("A4", 10, method="rank", period_targets={"Q1": D(1)}),
        leaf("A5", 10, target=D(1), interim="monthly"),
        graded_periods=("Y", "W1", "Y")))
    where = {(p.indicator, p.where) for p in problems}
    assert where == {("A1", ("period_targets", "Q5")), ("A1", ("period_targets", "Y")), ("A2", ("period_targets",)),
                     ("A3", ("interim",)), ("A4", ("period_targets",)), ("A5", ("interim",)),
                     ("", ("graded_periods", 1)), ("", ("graded_periods", 2))}, problems
    text = "\n".join(map(str, problems))
    for fix in ("H1、H2、Q1–Q4 或 M01–M12", "请填写 target", "same 或 none", "remove period_targets", "unknown interim rule",
                "Y、H、Q、M", "listed twice"):
        assert fix in text
    assert any("graded_periods" in p.message for p in check_structure(framework(INVESTMENT, graded_periods=())))


# ------------------------------------------------------------------- properties
annual = st.decimals(min_value=D("0.01"), max_value=D(10) ** 9, places=4).map(Decimal.normalize)
periods = st.sampled_from(["2026-H1", "2026-H2", *(f"2026-Q{q}" for q in range(1, 5)),
                           *(f"2026-M{m:02d}" for m in range(1, 13))])


@given(annual, periods)
def test_proportional_interim_target_is_annual_times_elapsed_share(target: Decimal, period: str) -> None:
    ind = leaf("A1", 100, target=target)
    scale = interim.scale_of(ind, period)
    assert scale is not None and scale.rule == "proportional"
    kind, number = period[5], int(period[6:])
    assert scale.factor == Fraction(number, interim.PER_YEAR[kind])
    got = interim.view(ind, scale).target
    assert got is not None and abs(Fraction(got) - Fraction(target) * scale.factor) <= Fraction(VALUE_QUANTUM) / 2
    if number == interim.PER_YEAR[kind]:  # the last half, quarter or month closes the year: its target is the year's
        assert got == target
    # A unit exactly on the time-proportional track earns full marks, and the interim score is labelled.
    s = by_unit(score_units(framework(ind), {"5101": {"A1": got}}, AS_OF, period))["5101"]
    assert s.score == 100 and s.interim and not s.graded


@given(annual, periods, st.integers(1, 4))
def test_later_periods_never_ask_less_of_a_flow(target: Decimal, period: str, later: int) -> None:
    ind = leaf("A1", 100, target=target)
    kind, number = period[5], int(period[6:])
    after = f"2026-{kind}{min(number + later, interim.PER_YEAR[kind]):0{2 if kind == 'M' else 1}d}"
    first, second = interim.scale_of(ind, period), interim.scale_of(ind, after)
    assert first is not None and second is not None
    t1, t2 = interim.view(ind, first).target, interim.view(ind, second).target
    assert t1 is not None and t2 is not None and t1 <= t2 <= target


# ------------------------------------------------------------------ wire and cascade
OLD_DIGEST = "003487a082eb1cba8e0b1101a4beb4179ef298b17eb262be54c95272261d0608"  # encoded by main before item 11


def old_framework() -> Framework:
    return Framework("51", "四川省", "2026", "市州", 1, "t", 0, 1, UNITS,
                     (Indicator(code="A", name="经济", weight=D(100)),
                      Indicator(code="A1", name="地区生产总值", weight=D(60), parent_code="A", leaf=True, target=D(1000),
                                unit_targets={"5101": D(2000)}),
                      Indicator(code="A2", name="森林覆盖率", weight=D(40), parent_code="A", leaf=True,
                                measure_unit="%", target=D(41), rollup="mean")))


def test_old_frameworks_keep_their_digest_and_get_the_defaults() -> None:
    payload = encode_framework(old_framework())
    assert digest(payload) == OLD_DIGEST
    fw = decode_framework(payload)
    assert fw.graded_periods == ("Y",) and all(i.interim == "" and not i.period_targets for i in fw.leaves())
    q1 = by_unit(score_units(fw, {"5101": {"A1": D(500), "A2": D(41)}}, AS_OF, "2026-Q1"))["5101"]
    assert q1.score == 100 and q1.interim and q1.grade == ""


def test_new_fields_travel_and_cascade() -> None:
    a1 = Indicator(code="A1", name="固定资产投资", weight=D(60), parent_code="A", leaf=True, target=D(1000),
                   unit_targets={"5101": D(2000)}, period_targets={"Q1": D(150), "H1": D("450.5")})
    a2 = Indicator(code="A2", name="森林覆盖率", weight=D(40), parent_code="A", leaf=True, measure_unit="%",
                   target=D(41), rollup="mean", interim="same", period_targets={"M03": D("40.5")})
    fw = Framework("51", "四川省", "2026", "市州", 1, "t", 0, 1, UNITS, (Indicator(code="A", name="A", weight=D(100)),
                                                                    a1, a2), graded_periods=("Y", "H1"))
    payload = encode_framework(fw)
    assert decode_framework(payload) == fw and encode_framework(decode_framework(payload)) == payload
    child = derive_child_framework(fw, digest(payload), "成都市", "5101", [Unit("510104", "锦江区"),
                                                                         Unit("510105", "青羊区"),
                                                                         Unit("510106", "金牛区")],
                                   unit_class="县市区", issued_at=0, expires_at=1)
    assert child.graded_periods == ("Y", "H1") and check_structure(child) == []
    c1, c2 = child.indicator("A1"), child.indicator("A2")
    assert c1 is not None and c2 is not None and c2.interim == "same"
    # 成都's own annual target is 2000, so its Q1 target is 300 and H1 901; each of three districts gets a third,
    # rounded up like the annual target (667).
    assert c1.target == 667 and c1.period_targets == {"Q1": D(100), "H1": D("300.4")}
    assert c2.target == 41 and c2.period_targets == {"M03": D("40.5")}
