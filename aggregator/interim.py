"""Interim periods (中期: half years, quarters, months): what each leaf is scored against before the
year is out, and which periods are graded (等次).

The year (``2026-Y``) is scored against the annual targets, exactly as before interim periods were
known. An interim period scales, per leaf, everything the leaf is compared with by one factor:
- ``proportional`` (the default for targeted ``sum`` leaves: flows such as investment completed):
  the elapsed share of the year, 2026-Q1 → 1/4, 2026-M07 → 7/12;
- ``same`` (the default for every other leaf: levels and rates such as forest coverage %, and methods
  that compare with the class or last year): the annual target itself;
- ``none``: the leaf is not appraised in interim periods; the other leaves' points are re-scaled to
  the full weight, so an interim score stays on the 100-point scale;
- a per-period target (``period_targets: {Q1: 250}``) overrides the rule for that period: its
  factor is the period target over the indicator's default target, so a unit with its own annual
  target (per unit or per class) gets the same share of its own.

A scaled target (and a scaled threshold baseline or challenge, or efficacy satisfactory or
allowable value) is rounded half up to 0.0001, the precision of published values; a factor of 1
changes nothing. The fast engine (aggregator/fast.py) applies the same factors.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

from aggregator.errors import BadInput
from aggregator.framework import SCALED_PARAMS, TARGETED_METHODS, Framework, Indicator, rule_name, valid_period
from aggregator.numbers import VALUE_QUANTUM, parse_decimal, to_text

PER_YEAR = {"Y": 1, "H": 2, "Q": 4, "M": 12}
YEAR = "Y"


def period_part(period: str) -> str:
    """``2026-Q1`` → ``Q1``; ``""`` (no period given) → ``Y``."""
    return (period.partition("-")[2] or YEAR) if period else YEAR


def is_interim(period: str) -> bool:
    return period_part(period) != YEAR


def elapsed(period: str) -> Fraction:
    """The share of the year a period closes: 2026-M03 → 3/12, 2026-Q2 → 2/4, 2026-Y → 1."""
    part = period_part(period)
    return Fraction(int(part[1:] or "1"), PER_YEAR[part[0]])


def default_rule(ind: Indicator) -> str:
    """What a leaf does in an interim period when its file says nothing: a target summed up the levels
    is a flow and is pro-rated; anything else (a rate, a level, a class or year-on-year comparison)
    keeps its annual target."""
    return "proportional" if ind.method in TARGETED_METHODS and rule_name(ind.rollup) == "sum" else "same"


def rule_of(ind: Indicator) -> str:
    return ind.interim or default_rule(ind)


@dataclass(frozen=True)
class Scale:
    """How one leaf's targets are scaled in one period: ``rule`` is ``year``, ``proportional``,
    ``same`` or ``period_target``; ``factor`` multiplies the annual target."""

    rule: str
    factor: Fraction

    def explain(self) -> dict[str, str]:
        return {"rule": self.rule, "share": f"{self.factor.numerator}/{self.factor.denominator}"}


WHOLE_YEAR = Scale(YEAR, Fraction(1))


def scale_of(ind: Indicator, period: str) -> Scale | None:
    """The leaf's scale in ``period``; None: not appraised in this period (``interim: none``)."""
    part = period_part(period)
    if part == YEAR:
        return WHOLE_YEAR
    if part in ind.period_targets and ind.target:  # check_structure refuses period targets without a target
        return Scale("period_target", Fraction(ind.period_targets[part]) / Fraction(ind.target))
    rule = rule_of(ind)
    if rule == "none":
        return None
    return Scale("same", Fraction(1)) if rule == "same" else Scale("proportional", elapsed(period))


def scaled(value: Decimal, factor: Fraction) -> Decimal:
    """``value × factor``, exactly, rounded half up to 0.0001 (the precision of published values)."""
    if factor == 1:
        return value
    q = Fraction(value) * factor / Fraction(VALUE_QUANTUM)
    whole = (abs(q.numerator) * 2 + q.denominator) // (2 * q.denominator)  # half up, away from zero
    return (Decimal(whole if q >= 0 else -whole) * VALUE_QUANTUM).quantize(VALUE_QUANTUM, rounding=ROUND_HALF_UP)


def view(ind: Indicator, scale: Scale) -> Indicator:
    """The leaf as scored in the period: every target, and the absolute values its method compares
    with, scaled by the factor."""
    if scale.factor == 1:
        return ind

    def each(targets: Mapping[str, Decimal]) -> dict[str, Decimal]:
        return {k: scaled(v, scale.factor) for k, v in targets.items()}

    params = dict(ind.params)
    for name in SCALED_PARAMS.get(ind.method, ()):
        if name in params:
            params[name] = to_text(scaled(parse_decimal(params[name], f"指标 {ind.code} 参数 {name}"), scale.factor))
    return replace(ind, target=None if ind.target is None else scaled(ind.target, scale.factor),
                   unit_targets=each(ind.unit_targets), class_targets=each(ind.class_targets), params=params)


def graded(fw: Framework, period: str) -> bool:
    """Whether ``period`` gets grades: it, or its kind (H, Q, M), is among ``graded_periods``."""
    part = period_part(period)
    return part in fw.graded_periods or part[0] in fw.graded_periods


def check(fw: Framework, period: str) -> None:
    """A period given to the engine must be one of the framework's cycle."""
    if period and not valid_period(period, fw.cycle):
        raise BadInput(f"报告期 {period[:16]!r} 不属于考评年度 {fw.cycle}，应如 {fw.cycle}-Y、{fw.cycle}-Q1、{fw.cycle}-M03 "
                       "(period is not one of the framework's cycle)", code="scoring.bad_period")
