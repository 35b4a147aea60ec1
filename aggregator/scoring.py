"""Scoring units against a framework: completion ratio × weight, capped; ranks with ties."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, localcontext

from aggregator.framework import Framework, Indicator
from aggregator.numbers import WORK, round_score, to_text


@dataclass(frozen=True)
class IndicatorScore:
    indicator: str
    value: Decimal | None
    target: Decimal | None
    ratio: Decimal
    capped: bool
    weight: Decimal
    score: Decimal
    note: str

    def explain(self) -> dict[str, str | bool | None]:
        return {
            "indicator": self.indicator,
            "value": None if self.value is None else to_text(self.value),
            "target": None if self.target is None else to_text(self.target),
            "ratio": to_text(self.ratio),
            "capped": self.capped,
            "weight": to_text(self.weight),
            "score": to_text(self.score),
            "note": self.note,
        }


@dataclass(frozen=True)
class UnitScore:
    unit: str
    score: Decimal
    rank: int
    parts: tuple[IndicatorScore, ...]
    as_of: datetime

    def explain(self) -> dict[str, object]:
        return {
            "unit": self.unit,
            "score": to_text(self.score),
            "rank": self.rank,
            "as_of": self.as_of.isoformat(),
            "rounding": "ROUND_HALF_UP to 0.01 on the unit's total",
            "parts": [p.explain() for p in self.parts],
        }


def completion_ratio(ind: Indicator, value: Decimal | None, target: Decimal | None) -> IndicatorScore:
    """完成率: value/target (higher is better) or target/value (lower is better), capped at ``ind.cap``.

    Missing value → 0 and flagged. Targets are positive for higher-is-better and non-negative
    for lower-is-better (``check_structure`` enforces it). For lower-is-better a value of zero
    or less (nothing bad happened) earns the cap.
    """
    if value is None or target is None:
        return IndicatorScore(ind.code, value, target, Decimal(0), False, ind.weight, Decimal(0),
                              "缺少数据，按0分计 (missing data scored as zero)")
    with localcontext(WORK):
        if ind.direction == "higher":
            ratio = value / target if target > 0 else Decimal(0)
        else:
            ratio = ind.cap if value <= 0 else target / value
        return _capped(ind, value, target, max(ratio, Decimal(0)))


def _capped(ind: Indicator, value: Decimal, target: Decimal, ratio: Decimal) -> IndicatorScore:
    capped = ratio > ind.cap
    ratio = min(ratio, ind.cap)
    return IndicatorScore(ind.code, value, target, ratio, capped, ind.weight, ratio * ind.weight,
                          "完成率封顶 (ratio capped)" if capped else "")


def score_units(
    fw: Framework,
    values: Mapping[str, Mapping[str, Decimal]],
    as_of: datetime,
) -> list[UnitScore]:
    """Score every unit of ``fw`` from ``values[unit][indicator]`` and rank them (1, 2, 2, 4)."""
    totals: list[tuple[str, Decimal, tuple[IndicatorScore, ...]]] = []
    for unit in fw.units:
        unit_values = values.get(unit.code, {})
        parts = tuple(
            completion_ratio(ind, unit_values.get(ind.code), ind.target_for(unit.code)) for ind in fw.leaves()
        )
        totals.append((unit.code, round_score(sum((p.score for p in parts), Decimal(0))), parts))
    ranks = competition_ranks({code: total for code, total, _ in totals})
    return [UnitScore(code, total, ranks[code], parts, as_of) for code, total, parts in totals]


def competition_ranks(scores: Mapping[str, Decimal]) -> dict[str, int]:
    """Standard competition ranking: equal scores share a rank, the next rank skips."""
    ordered = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
    ranks: dict[str, int] = {}
    prev: Decimal | None = None
    prev_rank = 0
    for i, (code, score) in enumerate(ordered, start=1):
        if score != prev:
            prev_rank = i
            prev = score
        ranks[code] = prev_rank
    return ranks
