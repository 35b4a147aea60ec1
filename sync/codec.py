"""Protobuf <-> domain conversion. The only place that knows both shapes."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from decimal import Decimal

from google.protobuf.message import DecodeError

from aggregator.framework import (
    DEFAULT_GRADED,
    Adjustment,
    Framework,
    FrameworkRef,
    Indicator,
    Link,
    Unit,
    valid_cycle,
    valid_indicator_code,
)
from aggregator.grading import DEFAULT_GRADES, GradeRule
from aggregator.numbers import NumberError, parse_decimal, to_text
from proto.appraisal.v1 import appraisal_pb2 as pb
from sync.envelope import PAYLOAD_FRAMEWORK, PAYLOAD_RESULTS, EnvelopeError, open_envelope

MAX_INDICATORS = 2000
MAX_VALUES = 5000
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _dec(text: str, what: str) -> Decimal:
    try:
        return parse_decimal(text, what)
    except NumberError as exc:
        raise EnvelopeError(str(exc), code=exc.code) from None


def framework_to_pb(fw: Framework) -> pb.Framework:
    msg = pb.Framework(
        issuer=fw.issuer, issuer_name=fw.issuer_name, cycle=fw.cycle, unit_class=fw.unit_class,
        version=fw.version, title=fw.title, issued_at=fw.issued_at, expires_at=fw.expires_at,
    )
    if fw.parent is not None:
        p = fw.parent
        msg.parent.CopyFrom(pb.FrameworkRef(issuer=p.issuer, cycle=p.cycle, unit_class=p.unit_class,
                                            version=p.version, digest=p.digest))
    for u in fw.units:
        msg.units.add(code=u.code, name=u.name, unit_class=u.unit_class)
    for a in fw.adjustments:
        msg.adjustments.add(code=a.code, name=a.name, kind=a.kind, grade_cap=a.grade_cap,
                            max_points="" if a.max_points is None else to_text(a.max_points))
    if fw.grades != DEFAULT_GRADES:
        for g in fw.grades:
            msg.grades.add(name=g.name, min_score=to_text(g.min_score), quota="" if g.quota is None else to_text(g.quota))
    msg.bonus_cap = "" if fw.bonus_cap is None else to_text(fw.bonus_cap)
    msg.deduction_cap = "" if fw.deduction_cap is None else to_text(fw.deduction_cap)
    msg.missing_policy = "" if fw.missing_policy == "zero" else fw.missing_policy
    if fw.graded_periods != DEFAULT_GRADED:  # the default stays unwritten: old frameworks keep their bytes
        msg.graded_periods.extend(fw.graded_periods)
    for ind in fw.indicators:
        m = msg.indicators.add(
            code=ind.code, name=ind.name, parent_code=ind.parent_code, weight=to_text(ind.weight), leaf=ind.leaf,
            measure_unit=ind.measure_unit, direction=ind.direction,
            target="" if ind.target is None else to_text(ind.target), method=ind.method,
            cap=to_text(ind.cap), must_cascade=ind.must_cascade, rollup=ind.rollup,
            provider=ind.provider, frequency=ind.frequency, interim=ind.interim,
        )
        for unit, t in sorted(ind.unit_targets.items()):
            m.unit_targets.add(unit=unit, target=to_text(t))
        for cls, t in sorted(ind.class_targets.items()):
            m.class_targets.add(unit=cls, target=to_text(t))
        for period, t in sorted(ind.period_targets.items()):
            m.period_targets.add(unit=period, target=to_text(t))
        m.params.update(ind.params)
        for link in ind.links:
            m.links.add(parent_framework_digest=link.parent_framework_digest, parent_indicator=link.parent_indicator,
                        rule=link.rule, share="" if link.share == 1 else to_text(link.share))
    return msg


def encode_framework(fw: Framework) -> bytes:
    return framework_to_pb(fw).SerializeToString(deterministic=True)


def decode_framework(payload: bytes) -> Framework:
    """The framework a payload encodes; raises EnvelopeError.

    A pure function of the bytes, and a framework is immutable: the frameworks of one process (a
    node host's nodes all decoding their county's framework) share the result for the same bytes."""
    return _decode_framework(bytes(payload))


@functools.lru_cache(maxsize=64)
def _decode_framework(payload: bytes) -> Framework:
    msg = pb.Framework()
    try:
        msg.ParseFromString(payload)
    except DecodeError as exc:
        raise EnvelopeError(f"指标体系载荷无法解析 (malformed framework payload): {exc}", code="framework.malformed") from None
    if not valid_cycle(msg.cycle) or len(msg.unit_class) > 64 or len(msg.indicators) > MAX_INDICATORS:
        raise EnvelopeError("指标体系的年度、类别或指标数超出允许范围 (framework cycle, class or size out of range)",
                            code="framework.out_of_range")
    parent = None
    if msg.HasField("parent"):
        p = msg.parent
        parent = FrameworkRef(p.issuer, p.cycle, p.unit_class, p.version, p.digest)
    inds = []
    for m in msg.indicators:
        where = f"指标 {m.code}"
        links = tuple(Link(lk.parent_framework_digest, lk.parent_indicator, lk.rule,
                           _dec(lk.share, where + " share") if lk.share else Decimal(1)) for lk in m.links)
        inds.append(Indicator(
            code=m.code, name=m.name, weight=_dec(m.weight, where + " weight"), parent_code=m.parent_code,
            leaf=m.leaf, measure_unit=m.measure_unit, direction=m.direction,
            target=_dec(m.target, where + " target") if m.target else None,
            unit_targets={t.unit: _dec(t.target, where + " target") for t in m.unit_targets},
            method=m.method, cap=_dec(m.cap, where + " cap") if m.cap else Decimal("1.2"),
            must_cascade=m.must_cascade, links=links, rollup=m.rollup or "sum",
            provider=m.provider, frequency=m.frequency, interim=m.interim,
            params=dict(m.params), class_targets={t.unit: _dec(t.target, where + " target") for t in m.class_targets},
            period_targets={t.unit: _dec(t.target, where + " period target") for t in m.period_targets},
        ))
    if len(msg.adjustments) > MAX_INDICATORS or len(msg.grades) > 10 or len(msg.graded_periods) > 32:
        raise EnvelopeError("加减分项、等次规则或评定等次的报告期过多 (too many adjustment items, grades or graded periods)",
                            code="framework.too_many_items")
    adjustments = tuple(Adjustment(a.code, a.name, a.kind, _dec(a.max_points, f"{a.code} max_points") if a.max_points
                                   else None, a.grade_cap) for a in msg.adjustments)
    grades = tuple(GradeRule(g.name, _dec(g.min_score, f"等次 {g.name}"), _dec(g.quota, f"等次 {g.name} quota")
                             if g.quota else None) for g in msg.grades) or DEFAULT_GRADES
    return Framework(
        issuer=msg.issuer, issuer_name=msg.issuer_name, cycle=msg.cycle, unit_class=msg.unit_class,
        version=msg.version, title=msg.title, issued_at=msg.issued_at, expires_at=msg.expires_at,
        units=tuple(Unit(u.code, u.name, u.unit_class) for u in msg.units), indicators=tuple(inds), parent=parent,
        adjustments=adjustments, grades=grades, missing_policy=msg.missing_policy or "zero",
        graded_periods=tuple(msg.graded_periods) or DEFAULT_GRADED,
        bonus_cap=_dec(msg.bonus_cap, "bonus_cap") if msg.bonus_cap else None,
        deduction_cap=_dec(msg.deduction_cap, "deduction_cap") if msg.deduction_cap else None,
    )


@dataclass(frozen=True)
class Bundle:
    node: str
    cycle: str
    period: str
    framework_digest: str
    seq: int
    prev_hash: str
    values: dict[str, Decimal]
    child_scores: tuple[tuple[str, Decimal, int], ...]
    created_at: int
    sources: tuple[tuple[str, str], ...] = ()  # (child node, bundle id) the values were rolled up from
    # unit → values this node's providers entered about it, approved here; they count over the unit's own
    provided: tuple[tuple[str, dict[str, Decimal]], ...] = ()


def encode_bundle(b: Bundle) -> bytes:
    msg = pb.ResultBundle(node=b.node, cycle=b.cycle, period=b.period, framework_digest=b.framework_digest,
                          seq=b.seq, prev_hash=b.prev_hash, created_at=b.created_at)
    for code, v in sorted(b.values.items()):
        msg.values.add(indicator=code, value=to_text(v))
    for unit, score, rank in b.child_scores:
        msg.child_scores.add(unit=unit, score=to_text(score), rank=rank)
    for node, bundle_id in sorted(b.sources):
        msg.sources.add(node=node, bundle_id=bundle_id)
    for unit, vals in sorted(b.provided):
        entry = msg.provided.add(unit=unit)
        for code, v in sorted(vals.items()):
            entry.values.add(indicator=code, value=to_text(v))
    return msg.SerializeToString(deterministic=True)


def decode_bundle(payload: bytes) -> Bundle:
    msg = pb.ResultBundle()
    try:
        msg.ParseFromString(payload)
    except DecodeError as exc:
        raise EnvelopeError(f"结果包载荷无法解析 (malformed result bundle): {exc}", code="bundle.malformed") from None
    if not valid_cycle(msg.cycle) or len(msg.period) > 16:
        raise EnvelopeError(f"结果包年度 {msg.cycle[:16]!r} 或报告期无效 (invalid cycle or period)", code="bundle.bad_cycle")
    if not _HEX64.match(msg.framework_digest) or not _HEX64.match(msg.prev_hash) or msg.seq < 1:
        raise EnvelopeError("结果包的指标体系摘要、前序哈希或序号无效 (invalid digest, previous hash or seq)",
                            code="bundle.bad_header")
    if len(msg.values) > MAX_VALUES:
        raise EnvelopeError(f"结果包数值过多：{len(msg.values)} (too many values)", code="bundle.too_many_values")
    values: dict[str, Decimal] = {}
    for v in msg.values:
        if not valid_indicator_code(v.indicator):
            raise EnvelopeError(f"结果包中指标编码 {v.indicator[:40]!r} 无效 (invalid indicator code)",
                                code="bundle.bad_indicator")
        if v.indicator in values:
            raise EnvelopeError(f"结果包中指标 {v.indicator} 重复 (duplicate indicator in bundle)",
                                code="bundle.duplicate_indicator")
        values[v.indicator] = _dec(v.value, f"指标 {v.indicator} value")
    if len(msg.child_scores) > MAX_VALUES:
        raise EnvelopeError("结果包得分过多 (too many child scores)", code="bundle.too_many_scores")
    scores = tuple((s.unit[:12], _dec(s.score, f"单位 {s.unit[:12]} score"), s.rank) for s in msg.child_scores)
    if len(msg.sources) > MAX_VALUES:
        raise EnvelopeError("结果包来源过多 (too many sources)", code="bundle.too_many_sources")
    sources = tuple((r.node, r.bundle_id) for r in msg.sources)
    if any(not _HEX64.match(b) or not r.isdigit() or len(r) > 12 for r, b in sources) or len(set(sources)) != len(sources):
        raise EnvelopeError("结果包来源的节点代码或摘要无效或重复 (invalid or repeated source)", code="bundle.bad_source")
    return Bundle(msg.node, msg.cycle, msg.period, msg.framework_digest, msg.seq, msg.prev_hash, values, scores,
                  msg.created_at, sources, _provided(msg))


def _provided(msg: pb.ResultBundle) -> tuple[tuple[str, dict[str, Decimal]], ...]:
    if len(msg.provided) > MAX_VALUES or sum(len(p.values) for p in msg.provided) > MAX_VALUES:
        raise EnvelopeError("结果包中数据提供单位报送的数值过多 (too many provided values)", code="bundle.too_many_provided")
    out: list[tuple[str, dict[str, Decimal]]] = []
    seen: set[str] = set()
    for p in msg.provided:
        if not p.unit.isdigit() or len(p.unit) > 12 or p.unit in seen:
            raise EnvelopeError(f"结果包中数据提供单位报送的单位 {p.unit[:16]!r} 无效或重复 (invalid or repeated unit)",
                                code="bundle.bad_provided")
        seen.add(p.unit)
        vals: dict[str, Decimal] = {}
        for v in p.values:
            if not valid_indicator_code(v.indicator) or v.indicator in vals:
                raise EnvelopeError(f"结果包中 {p.unit} 的指标编码 {v.indicator[:40]!r} 无效或重复 (invalid or repeated)",
                                    code="bundle.bad_provided_indicator")
            vals[v.indicator] = _dec(v.value, f"{p.unit} 指标 {v.indicator} value")
        out.append((p.unit, vals))
    return tuple(out)


# ----------------------------------------------------------- stored messages
# The node keeps envelopes exactly as signed; these read them back (already trusted) so that
# nothing outside sync/ needs to know their wire shape.

def framework_from_envelope(envelope: bytes) -> Framework:
    return decode_framework(open_envelope(envelope, PAYLOAD_FRAMEWORK).payload)


def bundle_from_message(message: bytes) -> Bundle:
    return decode_bundle(open_envelope(pb.ResultMessage.FromString(message).bundle, PAYLOAD_RESULTS).payload)


def cascade_envelopes(cascade: bytes) -> list[bytes]:
    """The framework envelopes a stored cascade message carries, root first."""
    return list(pb.CascadeMessage.FromString(cascade).frameworks)


def read_chain(data: bytes) -> tuple[bytes, ...]:
    """A certificate-chain file (what ``appraise keys certify`` writes)."""
    msg = pb.CertificateChain()
    try:
        msg.ParseFromString(data)
    except DecodeError:
        raise EnvelopeError("不是证书链文件 (not a certificate chain)", code="chain_file.malformed") from None
    return tuple(msg.certificates)


def write_chain(certificates: list[bytes] | tuple[bytes, ...]) -> bytes:
    return pb.CertificateChain(certificates=list(certificates)).SerializeToString()
