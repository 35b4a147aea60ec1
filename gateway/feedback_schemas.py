"""The JSON body of ``GET /api/v1/feedback/{cycle}/{unit}`` (绩效报告): nodes/feedback.py's Report, with
every number as the canonical decimal text it was published as (never a float)."""

from __future__ import annotations

from decimal import Decimal

from msgspec import Struct

from aggregator.numbers import to_text
from nodes.feedback import Report


class FeedbackPublication(Struct, kw_only=True):
    digest: str
    node: str
    version: int
    state: str
    published_at: int


class FeedbackFramework(Struct, kw_only=True):
    digest: str
    version: int
    title: str


class FeedbackGroup(Struct, kw_only=True):
    code: str
    name: str
    weight: str
    points: str
    share: str
    class_points: str


class FeedbackIndicator(Struct, kw_only=True):
    code: str
    name: str
    group: str
    weight: str
    points: str
    share: str | None
    class_share: str | None
    value: str | None
    target: str | None
    measure_unit: str


class FeedbackWeak(Struct, kw_only=True):
    indicator: str
    reasons: list[str]
    warning: str


class FeedbackTrend(Struct, kw_only=True):
    cycle: str
    period: str
    score: str
    rank: int
    of: int
    grade: str
    state: str
    version: int
    publication: str


class FeedbackAppeal(Struct, kw_only=True):
    id: int
    target: str
    indicator: str
    reason: str
    status: str
    decision: str
    decided_at: int
    before: dict[str, str]
    after: dict[str, str]


class FeedbackRectification(Struct, kw_only=True):
    id: int
    cycle: str
    source: str
    title: str
    owner: str
    deadline: int
    overdue: bool


class FeedbackSource(Struct, kw_only=True):
    indicator: str
    value: str
    source: str
    bundle_id: str
    bundle_node: str
    bundle_seq: int
    received_at: int
    reviewer: str
    reviewed_at: int


class FeedbackReport(Struct, kw_only=True, rename={"unit_class": "class"}):
    unit: str
    name: str
    cycle: str
    period: str
    unit_class: str
    publication: FeedbackPublication
    framework: FeedbackFramework
    score: str
    rank: int
    of: int
    grade: str
    grade_reason: str
    class_average: str
    base: str
    bonus: str
    deduction: str
    groups: list[FeedbackGroup]
    indicators: list[FeedbackIndicator]
    strengths: list[str]
    weak: list[FeedbackWeak]
    trend: list[FeedbackTrend]
    appeals: list[FeedbackAppeal]
    rectifications: list[FeedbackRectification]
    provenance: list[FeedbackSource]
    pdf: str  # where its PDF is


def _t(d: Decimal | None) -> str | None:
    return None if d is None else to_text(d)


def _s(d: Decimal) -> str:
    return to_text(d)


def report_out(r: Report) -> FeedbackReport:
    return FeedbackReport(
        unit=r.unit, name=r.name, cycle=r.cycle, period=r.period, unit_class=r.unit_class,
        publication=FeedbackPublication(digest=r.publication, node=r.node, version=r.version, state=r.state,
                                        published_at=r.published_at),
        framework=FeedbackFramework(digest=r.framework_digest, version=r.framework_version, title=r.framework_title),
        score=_s(r.score), rank=r.rank, of=r.of, grade=r.grade, grade_reason=r.grade_reason,
        class_average=_s(r.class_average.quantize(Decimal("0.01"))), base=_s(r.base), bonus=_s(r.bonus),
        deduction=_s(r.deduction),
        groups=[FeedbackGroup(code=g.code, name=g.name, weight=_s(g.weight), points=_s(g.points),
                              share=_s(g.share.quantize(Decimal("0.0001"))),
                              class_points=_s(g.class_points.quantize(Decimal("0.000001")))) for g in r.groups],
        indicators=[FeedbackIndicator(code=ln.code, name=ln.name, group=ln.group, weight=_s(ln.weight),
                                      points=_s(ln.points),
                                      share=_t(None if ln.share is None else ln.share.quantize(Decimal("0.0001"))),
                                      class_share=_t(None if ln.class_share is None
                                                     else ln.class_share.quantize(Decimal("0.0001"))),
                                      value=_t(ln.value), target=_t(ln.target), measure_unit=ln.measure_unit)
                    for ln in r.lines],
        strengths=[ln.code for ln in r.strengths],
        weak=[FeedbackWeak(indicator=w.line.code, reasons=list(w.reasons), warning=w.warning) for w in r.weak],
        trend=[FeedbackTrend(cycle=p.cycle, period=p.period, score=_s(p.score), rank=p.rank, of=p.of, grade=p.grade,
                             state=p.state, version=p.version, publication=p.digest) for p in r.trend],
        appeals=[FeedbackAppeal(id=a.id, target=a.target, indicator=a.indicator, reason=a.reason, status=a.status,
                                decision=a.decision, decided_at=a.decided_at, before=dict(a.before),
                                after=dict(a.after)) for a in r.appeals],
        rectifications=[FeedbackRectification(id=i.id, cycle=i.cycle, source=i.source, title=i.title, owner=i.owner,
                                              deadline=i.deadline, overdue=i.overdue) for i in r.rectifications],
        provenance=[FeedbackSource(indicator=p.indicator, value=_s(p.value), source=p.source, bundle_id=p.bundle_id,
                                   bundle_node=p.bundle.node if p.bundle else "", bundle_seq=p.bundle.seq if p.bundle else 0,
                                   received_at=p.bundle.received_at if p.bundle else 0,
                                   reviewer=p.bundle.reviewer if p.bundle else "",
                                   reviewed_at=p.bundle.reviewed_at if p.bundle else 0) for p in r.provenance],
        pdf=f"/feedback/{r.cycle}/{r.unit}.pdf?period={r.period}")
