"""Scoring methods (评分方法). Each turns one unit's inputs for one leaf into the share of the
leaf's weight it earns (1 = full marks, up to the leaf's cap), with the numbers that led there.

Parameters come from ``Indicator.params`` (decimal strings); defaults are stated per method.
Methods that compare a unit with its class (efficacy coefficient, min-max, z-score, rank,
class average) receive every unit's value of the same class in :class:`Peers`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, localcontext

from aggregator.errors import BadInput
from aggregator.framework import Indicator
from aggregator.inputs import UnitInputs
from aggregator.numbers import WORK, parse_decimal, to_text

ZERO = Decimal(0)
ONE = Decimal(1)


class MissingInput(Exception):
    """The unit lacks an input this method needs."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


@dataclass(frozen=True)
class Peers:
    """Values of one indicator across the units of a class (only units that reported)."""

    values: Mapping[str, Decimal]


@dataclass(frozen=True)
class Earned:
    fraction: Decimal
    steps: Mapping[str, str] = field(default_factory=dict)
    capped: bool = False
    note: str = ""


def param(ind: Indicator, name: str, default: str | None = None) -> Decimal:
    raw = ind.params.get(name, default)
    if raw is None:
        raise BadInput(f"指标 {ind.code} 的评分方法 {ind.method} 缺少参数 {name} (missing parameter)",
                       code="method.missing_param")
    return parse_decimal(raw, f"指标 {ind.code} 参数 {name}")


def _clamp(x: Decimal, lo: Decimal, hi: Decimal) -> tuple[Decimal, bool]:
    if x > hi:
        return hi, True
    return max(x, lo), False


def _ratio(ind: Indicator, x: Decimal, ref: Decimal, *, if_no_reference: Decimal) -> Decimal:
    """x against a reference: x/ref when higher is better; ref/x when lower is better, where a
    value of zero or less (nothing bad happened) earns the cap."""
    if ind.direction == "higher":
        return x / ref if ref > 0 else if_no_reference
    return ind.cap if x <= 0 else ref / x


def _value(ind: Indicator, unit: str, inputs: UnitInputs) -> Decimal:
    v = inputs.values.get(ind.code)
    if v is None:
        raise MissingInput(f"{ind.code} 数值 (value)")
    return v


def _target(ind: Indicator, unit: str) -> Decimal:
    t = ind.target_for(unit)
    if t is None:
        raise MissingInput(f"{ind.code} 目标值 (target)")
    return t


def completion_ratio(ind: Indicator, unit: str, inputs: UnitInputs, peers: Peers, as_of: date) -> Earned:
    """完成率: value/target (or target/value when lower is better), capped at ``cap``.

    ``floor`` (default 0): a ratio below it earns nothing (保底线). Lower is better and a value
    of zero or less earns the cap.
    """
    x, t = _value(ind, unit, inputs), _target(ind, unit)
    floor = param(ind, "floor", "0")
    ratio = _ratio(ind, x, t, if_no_reference=ZERO)
    earned, capped = _clamp(ratio, ZERO, ind.cap)
    note = ""
    if earned < floor:
        earned, note = ZERO, f"完成率低于保底线 {to_text(floor)} (below floor)"
    return Earned(earned, {"value": to_text(x), "target": to_text(t), "ratio": to_text(ratio)}, capped, note)


def threshold(ind: Indicator, unit: str, inputs: UnitInputs, peers: Peers, as_of: date) -> Earned:
    """基本值/目标值/挑战值: linear between baseline (``base_score``, default 0.6) and target (1),
    and between target and ``challenge`` (``challenge_score``, default the cap); below the
    baseline nothing, beyond the challenge value the challenge score.
    """
    x, t = _value(ind, unit, inputs), _target(ind, unit)
    b, c = param(ind, "baseline"), param(ind, "challenge")
    bs, cs = param(ind, "base_score", "0.6"), param(ind, "challenge_score", to_text(ind.cap))
    sign = ONE if ind.direction == "higher" else -ONE
    xs, bs_, ts, cs_ = sign * x, sign * b, sign * t, sign * c
    if not bs_ < ts < cs_:
        raise BadInput(f"指标 {ind.code}: 须 基本值 < 目标值 < 挑战值（越低越好时相反） (baseline, target, challenge order)",
                       code="method.bad_order")
    if xs < bs_:
        f, band = ZERO, "below baseline"
    elif xs < ts:
        f, band = bs + (ONE - bs) * (xs - bs_) / (ts - bs_), "baseline→target"
    elif xs < cs_:
        f, band = ONE + (cs - ONE) * (xs - ts) / (cs_ - ts), "target→challenge"
    else:
        f, band = cs, "at or beyond challenge"
    return Earned(f, {"value": to_text(x), "baseline": to_text(b), "target": to_text(t), "challenge": to_text(c),
                      "band": band})


def _class_extremes(ind: Indicator, peers: Peers) -> tuple[Decimal, Decimal]:
    if not peers.values:
        raise MissingInput(f"{ind.code} 同类单位数值 (class values)")
    vals = list(peers.values.values())
    best, worst = (max(vals), min(vals)) if ind.direction == "higher" else (min(vals), max(vals))
    return best, worst


def efficacy(ind: Indicator, unit: str, inputs: UnitInputs, peers: Peers, as_of: date) -> Earned:
    """功效系数法: c + (1 − c)·(x − 不允许值)/(满意值 − 不允许值), the position clamped to [0, 1].

    ``satisfactory`` and ``allowable`` default to the best and worst value in the class; ``c``
    defaults to 0.6 (the customary 60 + 40 × d on a 100-point scale).
    """
    x = _value(ind, unit, inputs)
    best, worst = _class_extremes(ind, peers)
    h = param(ind, "satisfactory", to_text(best))
    s = param(ind, "allowable", to_text(worst))
    c = param(ind, "c", "0.6")
    d = ONE if h == s else (x - s) / (h - s)
    d, _ = _clamp(d, ZERO, ONE)
    return Earned(c + (ONE - c) * d, {"value": to_text(x), "satisfactory": to_text(h), "allowable": to_text(s),
                                      "position": to_text(d)})


def minmax(ind: Indicator, unit: str, inputs: UnitInputs, peers: Peers, as_of: date) -> Earned:
    """极差标准化 within the class: (x − worst)/(best − worst); all equal → 1."""
    x = _value(ind, unit, inputs)
    best, worst = _class_extremes(ind, peers)
    f = ONE if best == worst else (x - worst) / (best - worst)
    return Earned(f, {"value": to_text(x), "best": to_text(best), "worst": to_text(worst)})


def zscore(ind: Indicator, unit: str, inputs: UnitInputs, peers: Peers, as_of: date) -> Earned:
    """Z 分数 within the class: ``base`` + ``per_sd``·z (defaults 0.6 and 0.2), clamped to [0, cap];
    z uses the population standard deviation and is negated when lower is better.
    """
    x = _value(ind, unit, inputs)
    vals = list(peers.values.values())
    if not vals:
        raise MissingInput(f"{ind.code} 同类单位数值 (class values)")
    n = Decimal(len(vals))
    mean = sum(vals, ZERO) / n
    sd = (sum(((v - mean) ** 2 for v in vals), ZERO) / n).sqrt()
    z = ZERO if sd == 0 else (x - mean) / sd
    if ind.direction == "lower":
        z = -z
    f, capped = _clamp(param(ind, "base", "0.6") + param(ind, "per_sd", "0.2") * z, ZERO, ind.cap)
    return Earned(f, {"value": to_text(x), "mean": to_text(mean), "sd": to_text(sd), "z": to_text(z)}, capped)


def rank_in_class(ind: Indicator, unit: str, inputs: UnitInputs, peers: Peers, as_of: date) -> Earned:
    """位次法: first place earns 1, the last ``floor`` (default 0.6), linearly by rank; tied units
    share the better rank (1, 2, 2, 4)."""
    x = _value(ind, unit, inputs)
    vals = list(peers.values.values())
    better = sum(1 for v in vals if (v > x if ind.direction == "higher" else v < x))
    rank, n = better + 1, len(vals)
    floor = param(ind, "floor", "0.6")
    f = ONE if n <= 1 else ONE - (ONE - floor) * Decimal(rank - 1) / Decimal(n - 1)
    return Earned(f, {"value": to_text(x), "rank": str(rank), "of": str(n)})


def growth(ind: Indicator, unit: str, inputs: UnitInputs, peers: Peers, as_of: date) -> Earned:
    """纵向比较: change against the previous cycle, (x − prev)/|prev| (a reduction when lower is
    better), as a share of ``target_growth``, capped. A previous value of zero is treated as
    missing (no rate of change exists)."""
    x = _value(ind, unit, inputs)
    prev = inputs.previous.get(ind.code)
    if prev is None or prev == 0:
        raise MissingInput(f"{ind.code} 上年数值 (previous cycle value)")
    change = (x - prev) / abs(prev)
    if ind.direction == "lower":
        change = -change
    goal = param(ind, "target_growth")
    if goal <= 0:
        raise BadInput(f"指标 {ind.code}: target_growth 应为正数 (must be positive)", code="method.bad_growth")
    f, capped = _clamp(change / goal, ZERO, ind.cap)
    detail = {"value": to_text(x), "previous": to_text(prev), "change": to_text(change), "target_growth": to_text(goal)}
    if ind.code in inputs.previous_from:  # carried across 区划调整 from the units it names
        detail["previous_from"] = inputs.previous_from[ind.code]
    return Earned(f, detail, capped)


def versus_peers(ind: Indicator, unit: str, inputs: UnitInputs, peers: Peers, as_of: date) -> Earned:
    """横向比较: x against the class average (``basis: class_average``, the default) or a benchmark
    unit's value (``basis: benchmark``, ``benchmark: <unit code>``), as a ratio capped at the cap."""
    x = _value(ind, unit, inputs)
    basis = ind.params.get("basis", "class_average")
    if basis == "benchmark":
        ref_unit = ind.params.get("benchmark", "")
        ref = peers.values.get(ref_unit)
        if ref is None:
            raise MissingInput(f"{ind.code} 标杆单位 {ref_unit} 数值 (benchmark value)")
    else:
        if not peers.values:
            raise MissingInput(f"{ind.code} 同类单位数值 (class values)")
        ref = sum(peers.values.values(), ZERO) / len(peers.values)
    ratio = _ratio(ind, x, ref, if_no_reference=ONE)
    f, capped = _clamp(ratio, ZERO, ind.cap)
    return Earned(f, {"value": to_text(x), "reference": to_text(ref), "basis": basis}, capped)


def task_list(ind: Indicator, unit: str, inputs: UnitInputs, peers: Peers, as_of: date) -> Earned:
    """任务清单: milestones due by ``as_of`` scored on completion (done at all), timeliness (done
    by the due date) and quality, weighted by ``w_completion``/``w_timeliness``/``w_quality``
    (defaults 0.5/0.3/0.2). With nothing due yet the unit is on track (1)."""
    ms = inputs.milestones.get(ind.code)
    if ms is None:
        raise MissingInput(f"{ind.code} 任务清单 (milestones)")
    due = [m for m in ms if m.due <= as_of]
    if not due:
        return Earned(ONE, {"due": "0"}, note="尚无到期任务 (nothing due yet)")
    done = [m for m in due if m.done is not None and m.done <= as_of]
    on_time = [m for m in done if m.done is not None and m.done <= m.due]
    n = Decimal(len(due))
    completion, timeliness = Decimal(len(done)) / n, Decimal(len(on_time)) / n
    quality = sum((m.quality for m in done), ZERO) / len(done) if done else ZERO
    wc, wt, wq = param(ind, "w_completion", "0.5"), param(ind, "w_timeliness", "0.3"), param(ind, "w_quality", "0.2")
    f = (wc * completion + wt * timeliness + wq * quality) / (wc + wt + wq)
    return Earned(f, {"due": str(len(due)), "done": str(len(done)), "on_time": str(len(on_time)),
                      "completion": to_text(completion), "timeliness": to_text(timeliness),
                      "quality": to_text(quality)})


def negative_list(ind: Indicator, unit: str, inputs: UnitInputs, peers: Peers, as_of: date) -> Earned:
    """负面清单: each recorded event deducts its points from the leaf's weight, at most
    ``max_deduction`` in all (default the weight): share = 1 − min(Σ, max)/weight."""
    events = [e for e in inputs.events if e.item == ind.code]
    total = sum((e.points for e in events), ZERO)
    limit = param(ind, "max_deduction", to_text(ind.weight))
    deducted = min(total, limit)
    f = ONE if ind.weight == 0 else ONE - deducted / ind.weight
    return Earned(max(f, ZERO), {"events": str(len(events)), "points": to_text(total), "deducted": to_text(deducted)},
                  capped=total > limit)


def raters(ind: Indicator, unit: str, inputs: UnitInputs, peers: Peers, as_of: date) -> Earned:
    """定性评价: the mean of raters' scores (0..100) / 100; with ``trim: 1`` and at least three
    raters the single highest and lowest scores are dropped first (去掉最高分和最低分)."""
    scores = sorted(inputs.ratings.get(ind.code, ()))
    if not scores:
        raise MissingInput(f"{ind.code} 评分 (ratings)")
    trimmed = param(ind, "trim", "0") == 1 and len(scores) >= 3
    kept = scores[1:-1] if trimmed else scores
    mean = sum(kept, ZERO) / len(kept)
    return Earned(mean / 100, {"raters": str(len(scores)), "trimmed": str(trimmed).lower(), "mean": to_text(mean)})


def survey(ind: Indicator, unit: str, inputs: UnitInputs, peers: Peers, as_of: date) -> Earned:
    """满意度测评: Σ w_g·score_g / Σ w_g over the evaluator groups (params ``group.<name>`` give the
    weights: public, deputies, experts, higher, grassroots …), scores 0..100. A group that did
    not rate is left out and the others are re-weighted; the explanation says so."""
    groups = {k.removeprefix("group."): param(ind, k) for k in ind.params if k.startswith("group.")}
    if not groups:
        raise BadInput(f"指标 {ind.code}: 满意度测评须设评价群体权重 group.<名称> (no evaluator groups)", code="method.no_groups")
    got = inputs.surveys.get(ind.code, {})
    present = {g: w for g, w in groups.items() if g in got}
    if not present:
        raise MissingInput(f"{ind.code} 满意度测评结果 (survey results)")
    total_w = sum(present.values(), ZERO)
    score = sum((w * got[g] for g, w in present.items()), ZERO) / total_w
    missing = sorted(set(groups) - set(present))
    note = f"缺少评价群体 {', '.join(missing)}，其余重新归一 (missing groups re-weighted)" if missing else ""
    return Earned(score / 100, {"score": to_text(score), **{f"group.{g}": to_text(got[g]) for g in present}},
                  note=note)


Method = Callable[[Indicator, str, UnitInputs, Peers, date], Earned]
METHODS: dict[str, Method] = {
    "completion_ratio": completion_ratio,
    "threshold": threshold,
    "efficacy": efficacy,
    "minmax": minmax,
    "zscore": zscore,
    "rank": rank_in_class,
    "growth": growth,
    "versus_peers": versus_peers,
    "task_list": task_list,
    "negative_list": negative_list,
    "raters": raters,
    "survey": survey,
}


def earn(ind: Indicator, unit: str, inputs: UnitInputs, peers: Peers, as_of: date) -> Earned:
    with localcontext(WORK):
        return METHODS[ind.method](ind, unit, inputs, peers, as_of)


def peer_values(ind: Indicator, units: Sequence[str], inputs: Mapping[str, UnitInputs]) -> Peers:
    return Peers({u: v for u in units if (v := inputs.get(u, UnitInputs()).values.get(ind.code)) is not None})
