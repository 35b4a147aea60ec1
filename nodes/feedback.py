"""绩效报告 (feedback reports): what one unit is told about its year, from what was published (pure; no I/O).

A report is built from one signed publication (sync/publication.py ``Published``) and the unit's
figure in it: every number it shows is a number of that publication, or of the framework the
publication names, or of the bundles its values cite. Nothing is recomputed from the live store.

- **Breakdown by indicator group**: each top-level indicator of the framework (a 一级指标), the
  points its leaves earned against its weight, and the class average of the same.
- **Rank and grade in the class**: as published, with the number of units ranked and the class average.
- **Strengths**: the leaves with the highest share of their weight earned (at most :data:`TOP`, and
  at most a third of the leaves), each at or above the class average on it.
- **Weak indicators**: a leaf is weak when it is among the lowest shares of weight earned (as many), or below
  the class average share on that leaf by more than :data:`BELOW_AVERAGE`, or its value lags its
  target (aggregator/progress.py ``warn``, as ``/api/v1/warnings`` computes it: yellow or red).
- **Trend**: the unit's figure in the latest publication of each earlier cycle this node holds.
- **Appeals** and their outcomes; **open rectification items** (overdue ones flagged).
- **Provenance**: the publication (digest, version, state, when) and, for every value, where it
  comes from: a unit node's signed bundle (id, sequence number, when received, who approved it and
  when), or this node's own providers and entry (attested by the publisher's signature only).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, localcontext

from aggregator.errors import AppraisalError, NotFound
from aggregator.framework import Framework, Indicator
from aggregator.numbers import WORK, parse_decimal
from aggregator.progress import warn
from sync.publication import Figure, Published

ZERO = Decimal(0)
TOP = 3  # strengths and lowest shares shown
BELOW_AVERAGE = Decimal("0.05")  # a share this much under the class average on a leaf is weak
SOURCE_ZH = {"reported": "下级节点签名报送", "provided": "本级数据提供单位填报", "entered": "本级录入"}
SOURCE_EN = {"reported": "signed bundle of the unit's node", "provided": "this node's data provider",
             "entered": "entered at this node"}


@dataclass(frozen=True)
class BundleInfo:
    """A bundle a value cites, as this node holds it (tx.bundles)."""

    id: str
    node: str
    seq: int
    received_at: int
    status: str
    reviewer: str
    reviewed_at: int


@dataclass(frozen=True)
class AppealItem:
    id: int
    period: str
    target: str  # value | score | grade
    indicator: str
    reason: str
    status: str  # filed | assigned | upheld | partly | rejected | withdrawn
    filed_by: str
    filed_at: int
    decide_by: int
    decision: str
    decided_by: str
    decided_at: int
    before: Mapping[str, str] = field(default_factory=dict)
    after: Mapping[str, str] = field(default_factory=dict)

    @property
    def decided(self) -> bool:
        return self.status in ("upheld", "partly", "rejected", "withdrawn")


@dataclass(frozen=True)
class RectItem:
    id: int
    cycle: str
    source: str  # weak | appeal | comment | office | carried
    ref: str
    title: str
    measure: str
    owner: str
    deadline: int
    status: str
    overdue: bool = False


@dataclass(frozen=True)
class Line:
    """One leaf indicator of the unit's score."""

    code: str
    name: str
    group: str  # the top-level indicator it belongs to
    method: str
    weight: Decimal
    points: Decimal
    share: Decimal | None  # points / weight; None: missing or not appraised
    class_share: Decimal | None  # the class average share on this leaf
    value: Decimal | None
    measure_unit: str
    target: Decimal | None
    note: str
    missing: bool


@dataclass(frozen=True)
class Group:
    code: str
    name: str
    weight: Decimal
    points: Decimal
    class_points: Decimal  # the class average of the same
    leaves: int

    @property
    def share(self) -> Decimal:
        return ZERO if self.weight == 0 else self.points / self.weight


@dataclass(frozen=True)
class Weak:
    line: Line
    reasons: tuple[str, ...]  # lowest | below_average | lagging:<level> | missing
    warning: str = ""  # green | yellow | red | "" (no target or not appraised)


@dataclass(frozen=True)
class TrendPoint:
    cycle: str
    period: str
    score: Decimal
    rank: int
    of: int
    grade: str
    state: str
    version: int
    digest: str


@dataclass(frozen=True)
class Provenance:
    indicator: str
    name: str
    value: Decimal
    source: str  # reported | provided | entered
    bundle: BundleInfo | None  # reported: the bundle as held here (None: not held)
    bundle_id: str


@dataclass(frozen=True)
class SourceGroup:
    """The values that share one origin: one cited bundle, or this node's providers or entry."""

    number: int  # 1-based, as the indicator table refers to it
    source: str
    bundle_id: str
    bundle: BundleInfo | None
    indicators: tuple[str, ...]


@dataclass(frozen=True)
class Adjustment:
    item: str
    name: str
    kind: str
    points: Decimal
    note: str


@dataclass(frozen=True)
class Report:
    unit: str
    name: str
    cycle: str
    period: str
    unit_class: str
    node: str
    node_name: str
    framework_title: str
    framework_version: int
    framework_digest: str
    publication: str  # digest
    version: int
    state: str  # publicity | final
    published_at: int
    score: Decimal
    rank: int
    of: int
    grade: str
    grade_reason: str
    assessed: bool
    complete: bool
    class_average: Decimal
    base: Decimal
    bonus: Decimal
    deduction: Decimal
    adjustments: tuple[Adjustment, ...]
    groups: tuple[Group, ...]
    lines: tuple[Line, ...]
    strengths: tuple[Line, ...]
    weak: tuple[Weak, ...]
    trend: tuple[TrendPoint, ...]
    appeals: tuple[AppealItem, ...]
    rectifications: tuple[RectItem, ...]
    provenance: tuple[Provenance, ...]
    sources: tuple[SourceGroup, ...]  # the provenance grouped by origin (one row per bundle in the report)
    generated_at: int

    def source_number(self, indicator: str) -> int:
        return next((g.number for g in self.sources if indicator in g.indicators), 0)


def _dec(raw: object) -> Decimal:
    return parse_decimal(str(raw), "explanation") if raw not in (None, "") else ZERO


def _parts(fig: Figure) -> dict[str, dict[str, object]]:
    parts = fig.explain().get("parts", [])
    return {str(p["indicator"]): p for p in parts if isinstance(p, dict)} if isinstance(parts, list) else {}


def _group_of(fw: Framework) -> dict[str, Indicator]:
    """leaf code → its top-level indicator (a leaf at the top is its own group)."""
    by_code = {i.code: i for i in fw.indicators}
    out: dict[str, Indicator] = {}
    for leaf in fw.leaves():
        top = leaf
        seen = 0
        while top.parent_code and top.parent_code in by_code and seen < 16:
            top, seen = by_code[top.parent_code], seen + 1
        out[leaf.code] = top
    return out


def _share(part: Mapping[str, object] | None) -> Decimal | None:
    if part is None or "share" not in part:
        return None
    weight = _dec(part.get("weight"))
    if weight == 0:
        return None
    with localcontext(WORK):
        return _dec(part.get("score")) / weight


def _mean(xs: Sequence[Decimal]) -> Decimal:
    if not xs:
        return ZERO
    with localcontext(WORK):
        return sum(xs, ZERO) / len(xs)


@dataclass(frozen=True)
class ClassView:
    """What every report of one publication shares: each unit's explained parts, the ranked units and
    the class averages per leaf and per group (computed once per batch, not once per unit)."""

    parts: Mapping[str, Mapping[str, Mapping[str, object]]]  # unit → leaf → part
    scored: tuple[Figure, ...]
    leaf_share: Mapping[str, Decimal | None]  # leaf → class average share
    group_points: Mapping[str, Decimal]  # group → class average points
    average: Decimal


def class_view(pub: Published, fw: Framework) -> ClassView:
    groups_of = _group_of(fw)
    parts = {f.unit: _parts(f) for f in pub.units}
    scored = tuple(f for f in pub.units if f.explain().get("assessed", True) and f.rank > 0)
    leaf_share: dict[str, Decimal | None] = {}
    for leaf in fw.leaves():
        peers = [s for s in (_share(parts[f.unit].get(leaf.code)) for f in scored) if s is not None]
        leaf_share[leaf.code] = _mean(peers) if peers else None
    group_points: dict[str, Decimal] = {}
    for top in {g.code for g in groups_of.values()}:
        leaves = [code for code, g in groups_of.items() if g.code == top]
        group_points[top] = _mean([sum((_dec(parts[f.unit].get(code, {}).get("score")) for code in leaves), ZERO)
                                   for f in scored])
    return ClassView(parts, scored, leaf_share, group_points, _mean([f.score for f in scored]))


def build(pub: Published, fw: Framework, unit: str, *, history: Sequence[Published] = (),
          appeals: Sequence[AppealItem] = (), rectifications: Sequence[RectItem] = (),
          bundles: Mapping[str, BundleInfo] | None = None, node_name: str = "", now: int = 0,
          view: ClassView | None = None) -> Report:
    """The report of ``unit`` from publication ``pub`` of framework ``fw`` (see the module docstring);
    ``view``: :func:`class_view` of the same publication, when a batch has it already."""
    fig = pub.unit(unit)
    if fig is None:
        raise NotFound(f"单位 {unit[:16]} 不在 {pub.cycle} 年度 {pub.period} 的公布结果中 (unit not in the publication)",
                       code="feedback.unit_not_published")
    bundles = bundles or {}
    groups_of = _group_of(fw)
    explained = fig.explain()
    view = view or class_view(pub, fw)
    scored = view.scored
    values = {v.indicator: v.value for v in fig.values}
    unit_class = fw.unit_class_of(unit)

    lines: list[Line] = []
    for leaf in fw.leaves():
        part = view.parts[unit].get(leaf.code)
        share = _share(part)
        lines.append(Line(
            code=leaf.code, name=leaf.name, group=groups_of[leaf.code].code, method=leaf.method,
            weight=leaf.weight, points=_dec(part.get("score")) if part else ZERO, share=share,
            class_share=view.leaf_share.get(leaf.code), value=values.get(leaf.code), measure_unit=leaf.measure_unit,
            target=leaf.target_for(unit, unit_class), note=str(part.get("note", "")) if part else "",
            missing=part is not None and "share" not in part and not str(part.get("note", "")).startswith("中期不考核")))

    groups: list[Group] = []
    tops = [i for i in fw.indicators if not i.parent_code]
    for top in tops:
        mine = [ln for ln in lines if ln.group == top.code]
        if not mine:
            continue
        groups.append(Group(top.code, top.name, top.weight, sum((ln.points for ln in mine), ZERO),
                            view.group_points.get(top.code, ZERO), len(mine)))

    measured = [ln for ln in lines if ln.share is not None and ln.weight > 0]
    k = max(1, min(TOP, len(measured) // 3))  # a third of the leaves at most: two leaves are one strength, one weak
    strengths = tuple(ln for ln in sorted(measured, key=lambda ln: (-(ln.share or ZERO), -ln.weight, ln.code))[:k]
                      if (ln.share or ZERO) > 0 and (ln.class_share is None or (ln.share or ZERO) >= ln.class_share))
    lowest = {ln.code for ln in sorted(measured, key=lambda ln: (ln.share or ZERO, -ln.weight, ln.code))[:k]
              if (ln.share or ZERO) < 1 and ln not in strengths}
    weak: list[Weak] = []
    for ln in lines:
        reasons: list[str] = []
        level = ""
        if ln.missing:
            reasons.append("missing")
        if ln.code in lowest:
            reasons.append("lowest")
        if ln.share is not None and ln.class_share is not None and ln.share < ln.class_share - BELOW_AVERAGE:
            reasons.append("below_average")
        ind = fw.indicator(ln.code)
        if ind is not None and ln.value is not None and ln.target is not None:
            try:
                w = warn(ind, unit, ln.value, pub.period)
            except (AppraisalError, ArithmeticError):
                w = None
            if w is not None:
                level = w.level
                if w.level != "green":
                    reasons.append(f"lagging:{w.level}")
        if reasons:
            weak.append(Weak(ln, tuple(reasons), level))
    weak.sort(key=lambda w: (w.line.share if w.line.share is not None else Decimal(-1), w.line.code))

    trend: list[TrendPoint] = []
    for earlier in sorted(history, key=lambda p: (p.cycle, p.version)):
        f = earlier.unit(unit)
        if f is None or earlier.cycle >= pub.cycle:
            continue
        ranked = sum(1 for u in earlier.units if u.rank > 0)
        trend.append(TrendPoint(earlier.cycle, earlier.period, f.score, f.rank, ranked, f.grade, earlier.state,
                                earlier.version, earlier.digest))
    trend.append(TrendPoint(pub.cycle, pub.period, fig.score, fig.rank, len(scored), fig.grade, pub.state,
                            pub.version, pub.digest))

    names = {i.code: i.name for i in fw.indicators}
    adj_names = {a.code: a.name for a in fw.adjustments}
    raw_adj = explained.get("adjustments", [])
    adjustments = tuple(Adjustment(str(a.get("item", "")), adj_names.get(str(a.get("item", "")), ""), str(a.get("kind", "")),
                                   _dec(a.get("points")), str(a.get("note", "")))
                        for a in (raw_adj if isinstance(raw_adj, list) else []) if isinstance(a, dict))
    provenance = tuple(Provenance(v.indicator, names.get(v.indicator, ""), v.value, v.source,
                                  bundles.get(v.bundle_id) if v.bundle_id else None, v.bundle_id)
                       for v in sorted(fig.values, key=lambda v: v.indicator))
    grouped: dict[tuple[str, str], list[str]] = {}
    for p in provenance:
        grouped.setdefault((p.source, p.bundle_id), []).append(p.indicator)
    sources = tuple(SourceGroup(n, src, bid, bundles.get(bid) if bid else None, tuple(codes))
                    for n, ((src, bid), codes) in enumerate(sorted(grouped.items(), key=lambda kv: (kv[0][0] != "reported",
                                                                                                kv[0])), 1))
    rects = tuple(RectItem(r.id, r.cycle, r.source, r.ref, r.title, r.measure, r.owner, r.deadline, r.status,
                           overdue=r.status == "open" and 0 < r.deadline < now)
                  for r in sorted(rectifications, key=lambda r: (r.deadline, r.id)) if r.status == "open")
    return Report(
        unit=unit, name=fig.name, cycle=pub.cycle, period=pub.period, unit_class=pub.framework.unit_class,
        node=pub.node, node_name=node_name or fw.issuer_name or pub.node, framework_title=fw.title,
        framework_version=pub.framework.version, framework_digest=pub.framework.digest, publication=pub.digest,
        version=pub.version, state=pub.state, published_at=pub.published_at, score=fig.score, rank=fig.rank,
        of=len(scored), grade=fig.grade, grade_reason=str(explained.get("grade_reason", "")),
        assessed=bool(explained.get("assessed", True)), complete=bool(explained.get("complete", True)),
        class_average=view.average, base=_dec(explained.get("base")),
        bonus=_dec(explained.get("bonus")), deduction=_dec(explained.get("deduction")), adjustments=adjustments,
        groups=tuple(groups), lines=tuple(lines), strengths=strengths, weak=tuple(weak), trend=tuple(trend),
        appeals=tuple(sorted(appeals, key=lambda a: (a.filed_at, a.id))), rectifications=rects,
        provenance=provenance, sources=sources, generated_at=now)
