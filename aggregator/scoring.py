"""The appraisal engine: leaf scores by method, the missing-data policy, bonus/deduction/veto
items, ranks and grades within each class — every number with its derivation (评价有理由).

The rounding rule, in full: each leaf's points (weight × share earned) are rounded half up to
0.000001; bonus and deduction points are exact; the unit's total (Σ leaf points + bonus −
deduction, re-normalised first if the policy says so) is rounded half up to 0.01. Everything
else is computed in the 40-digit working context.

A period is scored as aggregator/interim.py says: the year against the annual targets; an interim
period (H, Q, M) against its interim targets, labelled interim, and graded only if the framework
lists it among ``graded_periods``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal, localcontext

from aggregator import interim
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
    # In an interim period: the rule applied, the share of the annual target, the annual and the interim target.
    interim: Mapping[str, str] = field(default_factory=dict)
    appraised: bool = True  # False: not appraised in this period (interim: none); not missing either

    @property
    def missing(self) -> bool:
        return self.appraised and self.earned is None

    def explain(self) -> dict[str, object]:
        out: dict[str, object] = {"indicator": self.indicator, "method": self.method, "weight": to_text(self.weight),
                                  "score": to_text(self.score), "note": self.note}
        if self.earned is not None:
            out.update(share=to_text(self.earned.fraction), capped=self.earned.capped, steps=dict(self.earned.steps))
        if self.interim:
            out["interim"] = dict(self.interim)
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
    period: str = ""  # "": the year
    interim: bool = False  # scored against interim targets (a half, quarter or month), not the annual ones
    graded: bool = True  # False: the framework does not grade this period, so no grade (等次)

    def explain(self) -> dict[str, object]:
        return {
            "unit": self.unit, "class": self.unit_class, "score": to_text(self.score), "rank": self.rank,
            "grade": self.grade, "grade_reason": self.grade_reason,
            "assessed": self.assessed, "complete": self.complete,
            "period": self.period, "interim": self.interim, "graded": self.graded,
            "base": to_text(self.base), "bonus": to_text(self.bonus), "deduction": to_text(self.deduction),
            "as_of": self.as_of.isoformat(),
            "rounding": "leaf points ROUND_HALF_UP to 0.000001; total ROUND_HALF_UP to 0.01"
                        + ("; interim targets = target × share, ROUND_HALF_UP to 0.0001" if self.interim else ""),
            "parts": [p.explain() for p in self.parts],
            "adjustments": [{"item": a.item, "kind": a.kind, "points": to_text(a.points), "note": a.note}
                            for a in self.adjustments],
        }


def _leaf_score(annual: Indicator, scale: interim.Scale | None, period: str, unit: str, inputs: UnitInputs,
                peers: Mapping[str, Peers], day: date) -> IndicatorScore:
    """``annual``: the leaf as the framework states it (class targets applied); ``scale``: how the
    period scales it (None: not appraised in the period)."""
    if scale is None:
        return IndicatorScore(annual.code, annual.method, annual.weight, None, ZERO,
                              "中期不考核，不计入本期得分 (not appraised in interim periods)", {"rule": "none"},
                              appraised=False)
    ind = interim.view(annual, scale)
    label: dict[str, str] = {}
    if interim.is_interim(period):
        label = scale.explain()
        target, annual_target = ind.target_for(unit), annual.target_for(unit)
        if target is not None and annual_target is not None:
            label.update(annual_target=to_text(annual_target), target=to_text(target))
    try:
        earned = earn(ind, unit, inputs, peers[ind.code], day)
    except MissingInput as exc:
        return IndicatorScore(ind.code, ind.method, ind.weight, None, ZERO, f"缺少 {exc.what} (missing input)", label)
    return IndicatorScore(ind.code, ind.method, ind.weight, earned, round_leaf(earned.fraction * ind.weight),
                          earned.note, label)


def _base(fw: Framework, parts: tuple[IndicatorScore, ...]) -> tuple[Decimal, str]:
    """Σ leaf points; re-scaled to the full weight over what is counted when leaves are missing (under
    ``renormalise``) or not appraised in this period (``interim: none``)."""
    earned = sum((p.score for p in parts), ZERO)
    total = sum((p.weight for p in parts), ZERO)
    left_out = [p.indicator for p in parts if not p.appraised]
    missing = [p.indicator for p in parts if p.missing]
    if fw.missing_policy == "renormalise":
        present = sum((p.weight for p in parts if p.appraised and not p.missing), ZERO)
        if present == 0:
            return ZERO, "全部指标缺少数据 (no data at all)"
        if present != total:
            why = "缺失指标" if not left_out else "本期不考核的指标" if not missing else "缺失及本期不考核的指标"
            return earned * total / present, f"{why}不计，其余权重按 {to_text(total)}/{to_text(present)} 放大 (re-normalised)"
        return earned, ""
    note = f"缺失指标按0分计：{', '.join(missing)} (missing scored as zero)" if missing else ""
    counted = sum((p.weight for p in parts if p.appraised), ZERO)
    if left_out and counted > 0:
        rescaled = (f"本期不考核的指标 {', '.join(left_out)} 不计，其余权重按 {to_text(total)}/{to_text(counted)} 放大 "
                    "(not appraised in this period: the others re-scaled to the full weight)")
        return earned * total / counted, "；".join(n for n in (note, rescaled) if n)
    return earned, note


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


def appraise(fw: Framework, inputs: Mapping[str, UnitInputs], as_of: datetime, period: str = "") -> list[UnitScore]:
    """Score, rank and grade every unit of ``fw`` for ``period`` (``""``: the year); ranks and grades are
    within each class. An interim period is scored against its interim targets and graded only if the
    framework grades it (aggregator/interim.py)."""
    interim.check(fw, period)
    day = as_of.date()
    scales = {i.code: interim.scale_of(i, period) for i in fw.leaves()}  # before class targets: see interim.py
    midyear, grade_it = interim.is_interim(period), interim.graded(fw, period)
    ungraded = ("中期考评，本期不评定等次 (interim period: not graded)" if midyear else
                "本报告期不评定等次 (this period is not graded)")
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
                parts = tuple(_leaf_score(ind, scales[ind.code], period, unit, ui, peers, day) for ind in leaves)
                measured = [p for p, ind in zip(parts, leaves, strict=True)
                            if ind.method not in ASSESSED_METHODS and p.appraised]
                if not any(p.appraised for p in parts):
                    silent.append(UnitScore(unit, cls, ZERO, ZERO, ZERO, ZERO, 0, "", "本报告期没有考核的指标，不参与评分 "
                                            "(nothing is appraised in this period: not assessed)", parts, (), as_of,
                                            assessed=False, complete=False, period=period, interim=midyear, graded=grade_it))
                    continue
                if measured and all(p.missing for p in measured):
                    silent.append(UnitScore(unit, cls, ZERO, ZERO, ZERO, ZERO, 0, "", "未报送任何数据，不参与评分 "
                                            "(reported nothing: not assessed)", parts, (), as_of, assessed=False,
                                            complete=False, period=period, interim=midyear, graded=grade_it))
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
            grades = assign_grades(totals, fw.grades, {r[0]: r[5] for r in rows if r[5]}) if grade_it else {}
            for unit, base, bonus, deduction, total, _, parts, adjustments, complete in rows:
                g = grades.get(unit)
                results.append(UnitScore(unit, cls, base, bonus, deduction, total, ranks[unit],
                                         g.grade if g else "", g.reason if g else ungraded,
                                         parts, adjustments, as_of, complete=complete, period=period, interim=midyear,
                                         graded=grade_it))
            results.extend(silent)
    return results


def score_units(fw: Framework, values: Mapping[str, Mapping[str, Decimal]], as_of: datetime,
                period: str = "") -> list[UnitScore]:
    """Appraise from measured values alone (what result bundles carry today)."""
    return appraise(fw, {u: UnitInputs(values=v) for u, v in values.items()}, as_of, period)


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

