"""The appraisal engine: leaf scores by method, the missing-data policy, bonus/deduction/veto
items, ranks and grades within each class — every number with its derivation (评价有理由).

The rounding rule, in full: each leaf's points (weight × share earned) are rounded half up to
0.000001; bonus and deduction points are exact; the unit's total (Σ leaf points + bonus −
deduction, re-normalised first if the policy says so) is rounded half up to 0.01. Everything
else is computed in the 40-digit working context.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal, localcontext

from aggregator.framework import ASSESSED_METHODS, Framework, Indicator
from aggregator.grading import assign_grades
from aggregator.inputs import UnitInputs
from aggregator.methods import Earned, MissingInput, Peers, earn, peer_values
from aggregator.numbers import WORK, round_leaf, round_score, to_text

ZERO = Decimal(0)
HUNDRED = Decimal(100)


@dataclass(frozen=True)
class IndicatorScore:
    indicator: str
    method: str
    weight: Decimal
    earned: Earned | None  # None: missing input
    score: Decimal
    note: str

    @property
    def missing(self) -> bool:
        return self.earned is None

    def explain(self) -> dict[str, object]:
        out: dict[str, object] = {"indicator": self.indicator, "method": self.method, "weight": to_text(self.weight),
                                  "score": to_text(self.score), "note": self.note}
        if self.earned is not None:
            out.update(share=to_text(self.earned.fraction), capped=self.earned.capped, steps=dict(self.earned.steps))
        return out


@dataclass(frozen=True)
class AdjustmentScore:
    item: str
    kind: str
    points: Decimal
    note: str


@dataclass(frozen=True)
class UnitScore:
    unit: str
    unit_class: str
    base: Decimal
    bonus: Decimal
    deduction: Decimal
    score: Decimal
    rank: int
    grade: str
    grade_reason: str
    parts: tuple[IndicatorScore, ...]
    adjustments: tuple[AdjustmentScore, ...]
    as_of: datetime
    # False: the unit reported no value for any measured indicator. It is listed, not scored: no
    # score, no rank, no grade (silence must not score, issue 9 item 10).
    assessed: bool = True
    # False: some measured indicator has no value. Such a unit ranks below every complete unit.
    complete: bool = True

    def explain(self) -> dict[str, object]:
        return {
            "unit": self.unit, "class": self.unit_class, "score": to_text(self.score), "rank": self.rank,
            "grade": self.grade, "grade_reason": self.grade_reason,
            "assessed": self.assessed, "complete": self.complete,
            "base": to_text(self.base), "bonus": to_text(self.bonus), "deduction": to_text(self.deduction),
            "as_of": self.as_of.isoformat(),
            "rounding": "leaf points ROUND_HALF_UP to 0.000001; total ROUND_HALF_UP to 0.01",
            "parts": [p.explain() for p in self.parts],
            "adjustments": [{"item": a.item, "kind": a.kind, "points": to_text(a.points), "note": a.note}
                            for a in self.adjustments],
        }


def _leaf_score(ind: Indicator, unit: str, inputs: UnitInputs, peers: Peers, day: date) -> IndicatorScore:
    try:
        earned = earn(ind, unit, inputs, peers, day)
    except MissingInput as exc:
        return IndicatorScore(ind.code, ind.method, ind.weight, None, ZERO, f"缺少 {exc.what} (missing input)")
    return IndicatorScore(ind.code, ind.method, ind.weight, earned, round_leaf(earned.fraction * ind.weight),
                          earned.note)


def _base(fw: Framework, parts: tuple[IndicatorScore, ...]) -> tuple[Decimal, str]:
    earned = sum((p.score for p in parts), ZERO)
    if fw.missing_policy == "renormalise":
        present = sum((p.weight for p in parts if not p.missing), ZERO)
        total = sum((p.weight for p in parts), ZERO)
        if present == 0:
            return ZERO, "全部指标缺少数据 (no data at all)"
        if present != total:
            return earned * total / present, f"缺失指标不计，其余权重按 {to_text(total)}/{to_text(present)} 放大 (re-normalised)"
        return earned, ""
    missing = [p.indicator for p in parts if p.missing]
    return earned, (f"缺失指标按0分计：{', '.join(missing)} (missing scored as zero)" if missing else "")


def _adjust(fw: Framework, inputs: UnitInputs) -> tuple[Decimal, Decimal, str, tuple[AdjustmentScore, ...]]:
    items = {a.code: a for a in fw.adjustments}
    bonus = deduction = ZERO
    cap_grade = ""
    out: list[AdjustmentScore] = []
    for code, adj in items.items():
        events = [e for e in inputs.events if e.item == code]
        if not events:
            continue
        raw = sum((e.points for e in events), ZERO)
        pts = min(raw, adj.max_points) if adj.max_points is not None else raw
        note = "; ".join(e.note for e in events if e.note)
        if pts != raw:
            note = f"{note}；单项封顶 {to_text(adj.max_points or ZERO)} (item cap)".lstrip("；")
        if adj.kind == "bonus":
            bonus += pts
        elif adj.kind == "deduction":
            deduction += pts
        else:
            cap_grade = _worse(cap_grade, adj.grade_cap, fw)
        out.append(AdjustmentScore(code, adj.kind, pts, note))
    if fw.bonus_cap is not None and bonus > fw.bonus_cap:
        out.append(AdjustmentScore("", "bonus", fw.bonus_cap - bonus, f"加分总额封顶 {to_text(fw.bonus_cap)} (total cap)"))
        bonus = fw.bonus_cap
    if fw.deduction_cap is not None and deduction > fw.deduction_cap:
        out.append(AdjustmentScore("", "deduction", fw.deduction_cap - deduction,
                                   f"减分总额封顶 {to_text(fw.deduction_cap)} (total cap)"))
        deduction = fw.deduction_cap
    return bonus, deduction, cap_grade, tuple(out)


def _worse(a: str, b: str, fw: Framework) -> str:
    order = [g.name for g in sorted(fw.grades, key=lambda g: -g.min_score)]
    if not a:
        return b
    return a if order.index(a) >= order.index(b) else b


def appraise(fw: Framework, inputs: Mapping[str, UnitInputs], as_of: datetime) -> list[UnitScore]:
    """Score, rank and grade every unit of ``fw``; ranks and grades are within each class."""
    day = as_of.date()
    classes: dict[str, list[str]] = {}
    for u in fw.units:
        classes.setdefault(u.unit_class, []).append(u.code)
    results: list[UnitScore] = []
    with localcontext(WORK):
        for cls, members in classes.items():
            # 分类考评: a class's own targets replace the default target for its members.
            leaves = [replace(i, target=i.class_targets[cls]) if cls in i.class_targets else i for i in fw.leaves()]
            peers = {ind.code: peer_values(ind, members, inputs) for ind in leaves}
            rows = []
            silent: list[UnitScore] = []
            for unit in members:
                ui = inputs.get(unit, UnitInputs())
                parts = tuple(_leaf_score(ind, unit, ui, peers[ind.code], day) for ind in leaves)
                measured = [p for p, ind in zip(parts, leaves, strict=True) if ind.method not in ASSESSED_METHODS]
                if measured and all(p.missing for p in measured):
                    silent.append(UnitScore(unit, cls, ZERO, ZERO, ZERO, ZERO, 0, "", "未报送任何数据，不参与评分 "
                                            "(reported nothing: not assessed)", parts, (), as_of, assessed=False,
                                            complete=False))
                    continue
                base, base_note = _base(fw, parts)
                bonus, deduction, cap, adjustments = _adjust(fw, ui)
                if base_note:
                    adjustments = (AdjustmentScore("", "note", ZERO, base_note), *adjustments)
                total = round_score(base + bonus - deduction)
                complete = not any(p.missing for p in measured)
                rows.append((unit, base, bonus, deduction, total, cap, parts, adjustments, complete))
            totals = {r[0]: r[4] for r in rows}
            ranks = competition_ranks(totals, incomplete={r[0] for r in rows if not r[8]})
            grades = assign_grades(totals, fw.grades, {r[0]: r[5] for r in rows if r[5]})
            for unit, base, bonus, deduction, total, _, parts, adjustments, complete in rows:
                g = grades[unit]
                results.append(UnitScore(unit, cls, base, bonus, deduction, total, ranks[unit], g.grade, g.reason,
                                         parts, adjustments, as_of, complete=complete))
            results.extend(silent)
    return results


def score_units(fw: Framework, values: Mapping[str, Mapping[str, Decimal]], as_of: datetime) -> list[UnitScore]:
    """Appraise from measured values alone (what result bundles carry today)."""
    return appraise(fw, {u: UnitInputs(values=v) for u, v in values.items()}, as_of)


def competition_ranks(scores: Mapping[str, Decimal], incomplete: frozenset[str] | set[str] = frozenset()) -> dict[str, int]:
    """Standard competition ranking: equal scores share a rank, the next rank skips (1, 2, 2, 4).
    Units in ``incomplete`` (a measured indicator without a value) come after every complete unit,
    whatever their score: a unit that left something unreported never ranks above one that reported."""
    ordered = sorted(scores.items(), key=lambda kv: (kv[0] in incomplete, -kv[1], kv[0]))
    ranks: dict[str, int] = {}
    prev: tuple[bool, Decimal] | None = None
    prev_rank = 0
    for i, (code, score) in enumerate(ordered, start=1):
        key = (code in incomplete, score)
        if key != prev:
            prev_rank = i
            prev = key
        ranks[code] = prev_rank
    return ranks

