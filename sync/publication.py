"""Published results (公示 → 终审): the signed document, its proof, and checking a proof offline.

A node publishes the results of one (cycle, period, framework) for its evaluated units as a signed
``Publication`` (docs/design.md §3.9): every unit's score, rank and grade, the values and the
assessment document they were computed from, each value marked with where it comes from (a unit
node's signed bundle, or this node's own providers and entry), and the explanation of each score.
During the publicity window (公示) it is version 1, 2 … with state ``publicity``; the office then
finalises it (state ``final``): frozen, sent up in the node's reports, and changed only by a new
version naming the previous one and a reason. Every version is kept.

A ``PublicationProof`` carries what anyone needs to check a publication with the province's key
alone (``appraise public verify FILE --root-key HEX``, :func:`verify_proof`): the publisher's
certificates, the framework it scored by, each cited bundle exactly as its unit's node signed it
(with that node's certificates, approvals and evidence one level deeper), and the publisher's
approval of each. The check, without asking anyone:

1. the certificate chain leads to the province key; the publisher signed the publication and the
   framework, and the framework is the one the publication names;
2. every unit of the framework is published, once, and nothing else is;
3. every cited bundle is signed by the unit it speaks for, answers this framework, is approved by
   the publisher, and its roll-up is recomputed from its own evidence (sync/approvals.py, two levels);
4. every ``reported`` value is the cited bundle's, and no value of that bundle the framework scores
   is left out unless the publisher's providers attested another (``provided``);
5. the scores, ranks, grades and explanations are recomputed by the pure core (aggregator/) from
   those values, the assessment documents and ``as_of``, and must agree exactly.

What the check cannot establish, it says: ``provided`` and ``entered`` values and the assessment
documents are attested by the publisher's signature only (a certified but dishonest publisher can
sign a false rating; it cannot change a unit's signed value, drop a unit or miscount).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from google.protobuf.message import DecodeError

from aggregator.errors import AppraisalError
from aggregator.framework import Framework, FrameworkRef
from aggregator.inputs import to_inputs
from aggregator.numbers import parse_decimal, to_text
from aggregator.scoring import UnitScore, appraise
from proto.appraisal.v1 import appraisal_pb2 as pb
from sync.approvals import is_child, verify_attestations
from sync.codec import decode_bundle, decode_framework
from sync.envelope import (
    PAYLOAD_APPROVAL,
    PAYLOAD_CERTIFICATE,
    PAYLOAD_FRAMEWORK,
    PAYLOAD_PUBLICATION,
    PAYLOAD_RESULTS,
    EnvelopeError,
    digest,
    open_envelope,
    open_signed,
    sign,
)
from sync.identity import Me
from sync.trust import Identity, root_identity, verify_chain, verify_signed_by

PUBLICITY, FINAL = "publicity", "final"
STATES = (PUBLICITY, FINAL)
SOURCES = ("reported", "provided", "entered")
MAX_PROOF_BYTES = 256 * 1024 * 1024  # a province's proof carries every city's bundle with its evidence


class ProofError(EnvelopeError):
    """A publication or its proof that does not hold; the message names the unit, indicator or part."""

    default_code = "publication.invalid"


@dataclass(frozen=True)
class Value:
    indicator: str
    value: Decimal
    source: str  # reported | provided | entered
    bundle_id: str = ""  # reported: the bundle it comes from


@dataclass(frozen=True)
class Figure:
    """One unit as published."""

    unit: str
    name: str
    score: Decimal
    rank: int
    grade: str
    values: tuple[Value, ...]
    assessment: str  # canonical JSON, "" for none
    explanation: str  # canonical JSON

    def explain(self) -> dict[str, object]:
        out: dict[str, object] = json.loads(self.explanation) if self.explanation else {}
        return out


@dataclass(frozen=True)
class Published:
    node: str
    cycle: str
    period: str
    framework: FrameworkRef
    state: str
    version: int
    previous: str
    reason: str
    published_at: int
    as_of: int
    window_opens: int
    window_closes: int
    public: bool
    units: tuple[Figure, ...]
    digest: str = field(default="", compare=False)  # of the signed payload, once encoded

    def unit(self, code: str) -> Figure | None:
        return next((u for u in self.units if u.unit == code), None)


def explanation_text(score: UnitScore) -> str:
    """A score's explanation as stored and published: one canonical text, so it compares exactly."""
    return json.dumps(score.explain(), ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def figures(fw: Framework, values: dict[str, tuple[Value, ...]], assessments: dict[str, str],
            as_of: int, period: str) -> tuple[Figure, ...]:
    """Score every unit of ``fw`` from its published values: what the publisher signs and what
    :func:`verify_proof` recomputes, by the same function."""
    inputs = {u.code: to_inputs({v.indicator: v.value for v in values.get(u.code, ())}, assessments.get(u.code) or None)
              for u in fw.units}
    scored = {s.unit: s for s in appraise(fw, inputs, datetime.fromtimestamp(as_of, UTC), period)}
    out = []
    for u in fw.units:
        s = scored[u.code]
        out.append(Figure(u.code, u.name, s.score, s.rank, s.grade or "",
                          tuple(sorted(values.get(u.code, ()), key=lambda v: v.indicator)),
                          assessments.get(u.code, ""), explanation_text(s)))
    return tuple(out)


# ------------------------------------------------------------------ encoding

def encode(p: Published) -> bytes:
    f = p.framework
    msg = pb.Publication(node=p.node, cycle=p.cycle, period=p.period,
                         framework=pb.FrameworkRef(issuer=f.issuer, cycle=f.cycle, unit_class=f.unit_class,
                                                   version=f.version, digest=f.digest),
                         state=p.state, version=p.version, previous=p.previous, reason=p.reason,
                         published_at=p.published_at, as_of=p.as_of, window_opens=p.window_opens,
                         window_closes=p.window_closes, public=p.public)
    for u in p.units:
        entry = msg.units.add(unit=u.unit, name=u.name, score=to_text(u.score), rank=u.rank, grade=u.grade,
                              assessment=u.assessment, explanation=u.explanation)
        for v in u.values:
            entry.values.add(indicator=v.indicator, value=to_text(v.value), source=v.source, bundle_id=v.bundle_id)
    return msg.SerializeToString(deterministic=True)


def decode(payload: bytes) -> Published:
    msg = pb.Publication()
    try:
        msg.ParseFromString(payload)
    except DecodeError:
        raise ProofError("公布结果无法解析 (malformed publication)", code="publication.malformed") from None
    if msg.state not in STATES or msg.version < 1:
        raise ProofError(f"公布结果的状态 {msg.state[:16]!r} 或版本 {msg.version} 无效 (invalid state or version)",
                         code="publication.bad_header")
    units = []
    seen: set[str] = set()
    for u in msg.units:
        if u.unit in seen:
            raise ProofError(f"单位 {u.unit[:16]} 重复公布 (unit published twice)", code="publication.duplicate_unit")
        seen.add(u.unit)
        vals = []
        for v in u.values:
            if v.source not in SOURCES:
                raise ProofError(f"{u.unit[:16]} 指标 {v.indicator[:40]} 的来源 {v.source[:16]!r} 无效 (invalid source)",
                                 code="publication.bad_source")
            vals.append(Value(v.indicator, _number(v.value, f"{u.unit[:16]} {v.indicator[:40]}"), v.source,
                              v.bundle_id))
        units.append(Figure(u.unit, u.name, _number(u.score, f"{u.unit[:16]} score"), u.rank, u.grade,
                            tuple(vals), u.assessment, u.explanation))
    f = msg.framework
    return Published(msg.node, msg.cycle, msg.period, FrameworkRef(f.issuer, f.cycle, f.unit_class, f.version, f.digest),
                     msg.state, msg.version, msg.previous, msg.reason, msg.published_at, msg.as_of, msg.window_opens,
                     msg.window_closes, msg.public, tuple(units), digest(payload))


def _number(text: str, where: str) -> Decimal:
    try:
        return parse_decimal(text, where)
    except AppraisalError as exc:
        raise ProofError(f"公布结果中的数值无效：{exc} (invalid number)", code="publication.bad_number") from None


def sign_publication(me: Me, p: Published) -> tuple[bytes, Published]:
    """The envelope and the publication as signed (with its digest)."""
    payload = encode(p)
    return sign(PAYLOAD_PUBLICATION, payload, me.key), decode(payload)


def read(envelope: bytes) -> Published:
    """A publication this node stored (it signed it, or verified it on receipt): no check here."""
    return decode(open_envelope(envelope, PAYLOAD_PUBLICATION).payload)


def make_proof(envelope: bytes, chain: Sequence[bytes], framework: bytes, evidence: Sequence[bytes],
               approvals: Sequence[bytes], previous: Sequence[bytes] = ()) -> bytes:
    return pb.PublicationProof(publication=envelope, certificate_chain=list(chain), framework=framework,
                               evidence=list(evidence), approvals=list(approvals),
                               previous=list(previous)).SerializeToString()


def proof_publication(data: bytes) -> bytes:
    """The publication envelope a proof carries (unverified)."""
    return pb.PublicationProof.FromString(data).publication


# ------------------------------------------------------------------ verification

@dataclass
class Checked:
    """What :func:`verify_proof` established, to print."""

    publication: Published
    publisher: str
    units: int = 0
    bundles: int = 0
    approvals: int = 0
    rollups: int = 0  # bundles whose roll-up was recomputed from their own evidence
    reported: int = 0  # values checked against a unit's signed bundle
    attested: int = 0  # values attested by the publisher's signature only (provided, entered)
    assessments: int = 0  # units with an assessment document (attested by the publisher)
    previous: int = 0
    notes: list[str] = field(default_factory=list)


def verify_proof(data: bytes, root: Identity) -> Checked:
    """Check a downloaded proof against the province identity ``root`` (module docstring, 1–5);
    raise :class:`ProofError` (or another :class:`EnvelopeError`) naming the first fault."""
    if len(data) > MAX_PROOF_BYTES:
        raise ProofError(f"证明文件过大：{len(data)} 字节 (proof too large)", code="publication.too_large")
    proof = pb.PublicationProof()
    try:
        proof.ParseFromString(data)
    except DecodeError:
        raise ProofError("不是公布结果证明文件 (not a publication proof)", code="publication.not_a_proof") from None
    chain = list(proof.certificate_chain)
    opened = open_envelope(proof.publication, PAYLOAD_PUBLICATION)
    pub = decode(opened.payload)
    # Certificates are checked as of the publication: a result published under a valid certificate
    # stays checkable after the certificate expires (rule 10).
    signer = verify_chain(chain, root, pub.published_at)
    if signer.code != pub.node:
        raise ProofError(f"公布结果属于 {pub.node[:12]}，却由 {signer.code} 签名 (signed by another node)",
                         code="publication.signer")
    open_signed(proof.publication, PAYLOAD_PUBLICATION, signer.public_key, pb.Publication(), "公布结果无法解析 (malformed)",
                "公布结果的签名无效：内容被改动 (the publication's signature does not verify)",
                not_signed_code="publication.bad_signature")
    out = Checked(pub, signer.code)
    fw = _framework(proof.framework, chain, root, pub)
    _units_match(pub, fw)
    bundles = _bundles(proof, signer, root, fw, pub, out)
    _values_match(pub, bundles, out)
    _scores_match(pub, fw, out)
    _previous(proof, signer, pub, out)
    return out


def verify_with_key(data: bytes, root_key: Ed25519PublicKey) -> Checked:
    """:func:`verify_proof` for someone who holds only the province's public key (a citizen): the
    province's code is read from the first certificate, which that key must have signed."""
    try:
        proof = pb.PublicationProof.FromString(data[:MAX_PROOF_BYTES + 1])
        chain = list(proof.certificate_chain)
        if chain:
            code = pb.NodeCertificate.FromString(open_envelope(chain[0], PAYLOAD_CERTIFICATE).payload).issuer_code
        else:  # the province publishes under its own key: no certificate between it and the key
            code = pb.Publication.FromString(open_envelope(proof.publication, PAYLOAD_PUBLICATION).payload).node
    except DecodeError:
        raise ProofError("不是公布结果证明文件 (not a publication proof)", code="publication.not_a_proof") from None
    return verify_proof(data, root_identity(code, "", root_key))


def _framework(envelope: bytes, chain: list[bytes], root: Identity, pub: Published) -> Framework:
    issuer, payload = verify_signed_by(envelope, PAYLOAD_FRAMEWORK, chain, root, pub.published_at)
    if issuer.code != pub.node or digest(payload) != pub.framework.digest:
        raise ProofError("证明中的指标体系不是公布结果所依据的那一份 (the framework is not the one the publication names)",
                         code="publication.framework_mismatch")
    fw = decode_framework(payload)
    if (fw.cycle, fw.unit_class, fw.version) != (pub.cycle, pub.framework.unit_class, pub.framework.version):
        raise ProofError("指标体系的年度、类别或版本与公布结果不符 (framework header differs)",
                         code="publication.framework_header")
    return fw


def _units_match(pub: Published, fw: Framework) -> None:
    named = {u.code for u in fw.units}
    published = {u.unit for u in pub.units}
    if named - published:
        raise ProofError(f"指标体系中的单位 {', '.join(sorted(named - published)[:5])} 未公布 (units left out)",
                         code="publication.unit_missing")
    if published - named:
        raise ProofError(f"公布了指标体系之外的单位 {', '.join(sorted(published - named)[:5])} (units not in the framework)",
                         code="publication.unit_unknown")


def _bundles(proof: pb.PublicationProof, signer: Identity, root: Identity, fw: Framework, pub: Published,
             out: Checked) -> dict[str, tuple[str, dict[str, Decimal]]]:
    """bundle id → (the node that signed it, its values), for every piece of evidence, each checked
    (module docstring, 3)."""
    approvals: dict[str, pb.Approval] = {}
    for data in proof.approvals:
        a = open_signed(data, PAYLOAD_APPROVAL, signer.public_key, pb.Approval(), "审核记录无法解析 (malformed approval)",
                        f"审核记录不是 {signer.code} 签名的 (approval not signed by the publisher)",
                        not_signed_code="publication.approval_signer")
        if a.approver != signer.code:
            raise ProofError("审核记录的审核节点不是发布者 (approval by another node)", code="publication.approval_signer")
        approvals[a.bundle_id] = a
    held: dict[str, tuple[str, dict[str, Decimal]]] = {}
    for data in proof.evidence:
        msg = pb.ResultMessage()
        try:
            msg.ParseFromString(data)
        except DecodeError:
            raise ProofError("证据中的结果包无法解析 (malformed evidence)", code="publication.malformed_evidence") from None
        bundle_id = digest(open_envelope(msg.bundle, PAYLOAD_RESULTS).payload)
        approval = approvals.get(bundle_id)
        if approval is None:
            raise ProofError(f"结果包 {bundle_id[:12]}… 未经发布者审核 (bundle not approved by the publisher)",
                             code="publication.not_approved")
        at = min(pub.published_at, approval.approved_at)
        unit_node, payload = verify_signed_by(msg.bundle, PAYLOAD_RESULTS, list(msg.certificate_chain), root, at)
        bundle = decode_bundle(payload)
        if not is_child(bundle.node, signer):
            raise ProofError(f"结果包 {bundle_id[:12]}… 由 {bundle.node[:12]} 签名，不是发布者的下级 (evidence from a node "
                             "that is not the publisher's child)", code="publication.evidence_not_child")
        if bundle.node != unit_node.code or approval.node != bundle.node or approval.seq != bundle.seq:
            raise ProofError(f"结果包 {bundle_id[:12]}… 的签名者、单位或序号与审核记录不符 (evidence does not match)",
                             code="publication.evidence_mismatch")
        if bundle.framework_digest != pub.framework.digest or (bundle.cycle, bundle.period) != (pub.cycle, pub.period):
            raise ProofError(f"{bundle.node} 的结果包不属于本次公布的指标体系或报告期 (bundle answers another framework)",
                             code="publication.evidence_framework")
        try:
            attested = verify_attestations(msg, unit_node, bundle, root, at, issued=(fw, pub.framework.digest))
        except EnvelopeError as exc:
            raise ProofError(f"{bundle.node} 的结果包未通过汇总复核：{exc} (its roll-up does not hold)",
                             code="publication.rollup") from None
        out.rollups += 1 if bundle.sources or bundle.provided else 0
        out.approvals += 1 + attested.approved + attested.approved_below
        held[bundle_id] = (bundle.node, dict(bundle.values))
        out.bundles += 1
    return held


def _values_match(pub: Published, bundles: dict[str, tuple[str, dict[str, Decimal]]], out: Checked) -> None:
    for u in pub.units:
        cited: set[str] = set()
        for v in u.values:
            if v.source != "reported":
                out.attested += 1
                continue
            found = bundles.get(v.bundle_id)
            if found is None:
                raise ProofError(f"{u.unit} 指标 {v.indicator} 引用的结果包 {v.bundle_id[:12]}… 不在证明中 (evidence missing)",
                                 code="publication.evidence_missing")
            signed_by, vals = found
            if signed_by != u.unit:  # a unit's reported value comes from that unit's own signed bundle
                raise ProofError(f"{u.unit} 指标 {v.indicator} 引用的是 {signed_by} 的结果包 (value cites another unit's "
                                 "bundle)", code="publication.evidence_unit")
            if vals.get(v.indicator) != v.value:
                signed = to_text(vals[v.indicator]) if v.indicator in vals else "（无）"
                raise ProofError(f"{u.unit} 指标 {v.indicator} 公布为 {to_text(v.value)}，其签名结果包中为 {signed} "
                                 "(value differs from the signed bundle)", code="publication.value_mismatch")
            cited.add(v.bundle_id)
            out.reported += 1
        keys = {v.indicator for v in u.values}
        for bundle_id in cited:
            left_out = [k for k in bundles[bundle_id][1] if k not in keys]
            if left_out:
                raise ProofError(f"{u.unit} 的签名结果包中指标 {', '.join(sorted(left_out)[:5])} 未计入 (signed values left out)",
                                 code="publication.value_left_out")
        out.assessments += 1 if u.assessment else 0
        out.units += 1


def _scores_match(pub: Published, fw: Framework, out: Checked) -> None:
    try:
        again = figures(fw, {u.unit: u.values for u in pub.units}, {u.unit: u.assessment for u in pub.units},
                        pub.as_of, pub.period)
    except (AppraisalError, ValueError, ArithmeticError, LookupError, TypeError, AttributeError) as exc:
        # TypeError/AttributeError: an assessment document that is JSON but not the shape scored
        raise ProofError(f"无法按公布的数值重新计分：{str(exc)[:200]} (cannot recompute the scores)",
                         code="publication.recompute_failed") from None
    for mine in again:
        theirs = pub.unit(mine.unit)
        if theirs is None:  # not reached: _units_match saw the same units
            continue
        for what, a, b in (("名称 name", mine.name, theirs.name),
                           ("得分 score", to_text(mine.score), to_text(theirs.score)), ("排名 rank", mine.rank, theirs.rank),
                           ("等次 grade", mine.grade, theirs.grade), ("说明 explanation", mine.explanation, theirs.explanation)):
            if a != b:
                shown = (str(a)[:60], str(b)[:60])
                raise ProofError(f"{mine.unit} 的{what} 重新计算为 {shown[0]}，公布为 {shown[1]} (recomputed figure differs)",
                                 code="publication.score_mismatch")


def _previous(proof: pb.PublicationProof, signer: Identity, pub: Published, out: Checked) -> None:
    """Each earlier version: signed by the publisher, the same (node, cycle, period, class), one version
    lower, and named by the one after it; version 1 names none and only version 1 does."""
    if (pub.version == 1) != (pub.previous == ""):
        raise ProofError(f"第 {pub.version} 版与其前一版本的引用不符 (version and previous do not agree)",
                         code="publication.version_previous")
    want, newer = pub.previous, pub.version
    for data in proof.previous:
        old = open_signed(data, PAYLOAD_PUBLICATION, signer.public_key, pb.Publication(), "公布结果无法解析 (malformed)",
                          "早先版本的签名无效 (an earlier version's signature does not verify)",
                          not_signed_code="publication.bad_signature")
        same = (old.node, old.cycle, old.period, old.framework.unit_class) == (
            pub.node, pub.cycle, pub.period, pub.framework.unit_class)
        if digest(open_envelope(data, PAYLOAD_PUBLICATION).payload) != want or not same or old.version != newer - 1 \
                or (old.version == 1) != (old.previous == ""):
            raise ProofError("早先版本的链条断开 (the earlier versions do not chain)", code="publication.previous_chain")
        want, newer = old.previous, old.version
        out.previous += 1
    if want:
        out.notes.append("更早的版本未附在证明中 (earlier versions not included)")
