"""Grades (等次): thresholds, quotas per class, veto caps, and multi-year flags."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

GRADE_ORDER = ("优秀", "良好", "一般", "差")


@dataclass(frozen=True)
class GradeRule:
    """A grade reached at ``min_score`` or above, for at most ``quota`` of the class (None: no quota)."""

    name: str
    min_score: Decimal
    quota: Decimal | None = None  # share of the class, e.g. 0.2 for 优秀 ≤ 20 %


DEFAULT_GRADES = (
    GradeRule("优秀", Decimal(90), Decimal("0.2")),
    GradeRule("良好", Decimal(80)),
    GradeRule("一般", Decimal(60)),
    GradeRule("差", Decimal(0)),
)


@dataclass(frozen=True)
class Graded:
    unit: str
    grade: str
    reason: str  # why this grade and not a better one


def quota_seats(quota: Decimal, class_size: int) -> int:
    """How many units a quota admits: ⌊share × size⌋ (the stated rounding rule: always down,
    so a quota is never exceeded)."""
    return math.floor(quota * class_size)


def assign_grades(scores: Mapping[str, Decimal], rules: Sequence[GradeRule] = DEFAULT_GRADES,
                  caps: Mapping[str, str] | None = None) -> dict[str, Graded]:
    """Grade one class of units.

    Units go best score first. A unit gets the best grade whose threshold it reaches, whose
    quota still has a seat, and that its veto cap (``caps[unit]``, e.g. 一般) allows. Units tied
    at a quota's boundary all move down and that grade closes: a quota is never exceeded, equal
    scores are never split, and a lower score never gets a better grade than a higher one.
    """
    caps = caps or {}
    ordered = sorted(rules, key=lambda r: -r.min_score)
    names = [r.name for r in ordered]
    seats = {r.name: (quota_seats(r.quota, len(scores)) if r.quota is not None else None) for r in ordered}
    by_score: dict[Decimal, list[str]] = {}
    for unit, s in scores.items():
        by_score.setdefault(s, []).append(unit)
    out: dict[str, Graded] = {}
    for score in sorted(by_score, reverse=True):
        group = sorted(by_score[score])
        for rule in ordered:
            if score < rule.min_score:
                continue
            eligible = [u for u in group if u not in out and _allowed(rule.name, caps.get(u), names)]
            if not eligible:
                continue
            free = seats[rule.name]
            if free is not None and len(eligible) > free:
                seats[rule.name] = 0  # the whole tied group moves down, and nobody below may pass it
                continue
            for u in eligible:
                out[u] = Graded(u, rule.name, _why(rule, caps.get(u), names))
            if free is not None:
                seats[rule.name] = free - len(eligible)
        for u in group:
            if u not in out:
                out[u] = Graded(u, names[-1], "未达任何等次门槛或名额已满 (no threshold reached or quotas full)")
    return out


def _allowed(grade: str, cap: str | None, names: list[str]) -> bool:
    return cap is None or cap not in names or names.index(grade) >= names.index(cap)


def _why(rule: GradeRule, cap: str | None, names: list[str]) -> str:
    if cap is not None and rule.name == cap:
        return f"一票否决：等次至多为{cap} (veto caps the grade)"
    return f"得分不低于 {rule.min_score} (score at or above the threshold)"


def repeated_grade_flags(history: Mapping[str, Sequence[str]], grade: str = "一般", years: int = 2) -> list[str]:
    """Units whose last ``years`` grades (oldest first in ``history``) are all ``grade``
    (e.g. 一般 two years running), for the office's attention."""
    return sorted(u for u, grades in history.items() if len(grades) >= years and all(g == grade for g in grades[-years:]))
