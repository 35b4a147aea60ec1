"""Progress warnings (预警) during the cycle: is a unit behind the time-proportional target?"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, localcontext

from aggregator.errors import BadInput
from aggregator.framework import Indicator
from aggregator.interim import scale_of
from aggregator.numbers import WORK, to_text

PERIODS_PER_CYCLE = {"M": 12, "Q": 4, "H": 2, "Y": 1}


@dataclass(frozen=True)
class Warning:
    indicator: str
    unit: str
    level: str  # green | yellow | red
    expected: Decimal
    actual: Decimal
    progress: Decimal  # actual against expected, direction-aware (1 = exactly on track)

    def explain(self) -> dict[str, str]:
        return {"indicator": self.indicator, "unit": self.unit, "level": self.level,
                "expected": to_text(self.expected), "actual": to_text(self.actual), "progress": to_text(self.progress)}


def elapsed_share(period: str) -> Decimal:
    """How much of the cycle a period closes: 2026-M03 → 3/12, 2026-Q2 → 2/4, 2026-Y → 1."""
    _, _, p = period.partition("-")
    kind, num = p[:1], p[1:] or "1"
    return Decimal(int(num)) / PERIODS_PER_CYCLE[kind]


def warn(ind: Indicator, unit: str, cumulative: Decimal, period: str, yellow: Decimal = Decimal("0.9"),
         red: Decimal = Decimal("0.75")) -> Warning | None:
    """Compare a cumulative value with what the period expects, by the same interim rule as scoring
    (aggregator/interim.py): a flow against target × elapsed share, a rate or level against its annual
    target, a stated per-period target as stated; None when the leaf is not appraised in the period.

    Higher is better: progress = actual / expected. Lower is better (a ceiling consumed over the
    year, e.g. accidents): progress = expected / actual (no events yet: on track). Progress at or
    above ``yellow`` is green, at or above ``red`` yellow, below it red.
    """
    target = ind.target_for(unit)
    if target is None:
        raise BadInput(f"指标 {ind.code} 没有 {unit} 的目标值 (no target)", code="progress.no_target")
    scale = scale_of(ind, period)
    if scale is None:
        return None
    with localcontext(WORK):
        expected = target * Decimal(scale.factor.numerator) / Decimal(scale.factor.denominator)
        if ind.direction == "higher":
            progress = cumulative / expected if expected > 0 else Decimal(1)
        else:
            progress = expected / cumulative if cumulative > 0 else Decimal(1)
    level = "green" if progress >= yellow else "yellow" if progress >= red else "red"
    return Warning(ind.code, unit, level, expected, cumulative, progress)
