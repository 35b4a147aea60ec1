"""Status reports up (上报状态): what each node holds, issued and refused, and its audit chain head.

A node signs a :class:`pb.NodeReport` and hands it to its parent over gRPC (``Federation.Report``)
every few heartbeats, and at once when it changes. It carries:

- the latest framework it holds from its parent and the latest it issued, per cycle and class (with
  the units each addresses), so every ancestor can tell a descendant that lags behind its parent's
  latest version from one that is current;
- the cascade messages it refused, with the code and reason (a refusal below a node is never silent);
- the head (sequence, hash) of its hash-chained audit log: the parent keeps it, so an operator who
  rewrites the node's own history and recomputes every hash is caught by ``appraise audit verify``,
  which compares the local chain with the last head the parent holds (``FetchAnchor``);
- the 区划调整 change lists it holds (issuer, sequence number, digest), so an ancestor sees which
  descendant has not taken a list its parent holds (:attr:`DescendantState.lists_behind`);
- its children's latest reports, each exactly as its own node signed it, so the province sees every
  descendant's state without trusting the nodes in between: a node can withhold a child's report, or
  forward an older one, but cannot alter one.

Receiving (:func:`verify_report`) is pure: the signer must be a direct child of this node (and the
mTLS caller, when known) and the report's node; every nested report must be signed by a child of the
node whose report carried it. A nested report that fails is dropped and named, the rest stand.
:func:`cascade_states` turns the reports held into one state per descendant.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from hashlib import sha256

from google.protobuf.message import DecodeError

from aggregator.framework import LEVELS
from proto.appraisal.v1 import appraisal_pb2 as pb
from sync import publication
from sync.envelope import PAYLOAD_PUBLICATION, PAYLOAD_REPORT, EnvelopeError, open_envelope, sign, verify_signature
from sync.identity import Me
from sync.trust import Identity, valid_code, verify_signed_by

MAX_REFS = 200  # frameworks held or issued, per report
MAX_REFUSALS = 20
MAX_PUBLICATIONS = 64  # latest final results per (cycle, period, class) a report carries
MAX_LISTS = 500  # division change lists held, per report
MAX_DEPTH = 3  # a province sees cities, counties and townships
CLOCK_SKEW = 300  # seconds a report's time may run ahead of the receiver's clock


@dataclass(frozen=True)
class Ref:
    issuer: str
    cycle: str
    unit_class: str
    version: int
    digest: str
    units: tuple[str, ...] = ()  # issued frameworks: whom it addresses


@dataclass(frozen=True)
class ListRef:
    """A division change list held: its issuer, sequence number and payload digest."""

    issuer: str
    seq: int
    digest: str


@dataclass(frozen=True)
class ListBehind:
    """A descendant holds ``issuer``'s lists up to ``held`` (0: none); its parent holds up to ``expected``."""

    issuer: str
    expected: int
    held: int


@dataclass(frozen=True)
class Refusal:
    framework_digest: str
    issuer: str
    version: int
    code: str
    reason: str
    refused_at: int


@dataclass(frozen=True)
class Report:
    node: str
    reported_at: int
    received: tuple[Ref, ...]
    issued: tuple[Ref, ...]
    refusals: tuple[Refusal, ...]
    audit_seq: int
    audit_hash: str
    message: bytes = field(repr=False)  # the ReportMessage exactly as signed: what is stored and forwarded
    via: str = ""  # the node whose report carried it; "" when its node sent it itself
    bundle_seq: int = 0  # the last bundle it signed for its parent
    # its latest final results (Envelope(Publication)), each checked as signed by this node and final,
    # and the same decoded (by _open, once)
    publications: tuple[bytes, ...] = field(default=(), repr=False)
    published: tuple[publication.Published, ...] = field(default=(), repr=False)
    division_lists: tuple[ListRef, ...] = ()


def make_report(me: Me, *, received: Sequence[Ref], issued: Sequence[Ref], refusals: Sequence[Refusal],
                audit_head: tuple[int, str], descendants: Sequence[bytes], now: int, bundle_seq: int = 0,
                publications: Sequence[bytes] = (), division_lists: Sequence[ListRef] = ()) -> bytes:
    """This node's ReportMessage, signed (``publications``: its latest final results, sent up;
    ``division_lists``: the change lists it holds, in the order taken)."""
    report = pb.NodeReport(node=me.code, reported_at=now, audit_seq=audit_head[0], audit_hash=audit_head[1],
                           descendants=list(descendants), bundle_seq=bundle_seq,
                           publications=list(publications)[:MAX_PUBLICATIONS],
                           division_lists=[pb.DivisionListRef(issuer=x.issuer, seq=x.seq, digest=x.digest)
                                           for x in list(division_lists)[-MAX_LISTS:]])
    for r in list(received)[:MAX_REFS]:
        report.received.add(issuer=r.issuer, cycle=r.cycle, unit_class=r.unit_class, version=r.version, digest=r.digest)
    for r in list(issued)[:MAX_REFS]:
        report.issued.add(framework=pb.FrameworkRef(issuer=r.issuer, cycle=r.cycle, unit_class=r.unit_class,
                                                    version=r.version, digest=r.digest), units=list(r.units))
    for f in list(refusals)[:MAX_REFUSALS]:
        report.refusals.add(framework_digest=f.framework_digest, issuer=f.issuer, version=f.version, code=f.code,
                            reason=f.reason[:300], refused_at=f.refused_at)
    return pb.ReportMessage(report=sign(PAYLOAD_REPORT, report.SerializeToString(deterministic=True), me.key),
                            certificate_chain=list(me.chain)).SerializeToString()


def content_key(data: bytes) -> bytes:
    """What a report says, without when it said it: a sender resends only when this changes (or to
    keep its anchor fresh)."""
    msg = pb.ReportMessage.FromString(data)
    report = pb.NodeReport.FromString(open_envelope(msg.report, PAYLOAD_REPORT).payload)
    report.reported_at = 0
    return report.SerializeToString(deterministic=True)


def verify_report(me: Me, data: bytes, now: int, caller: str | None = None,
                  held: Container[bytes] = frozenset()) -> tuple[list[Report], list[str]]:
    """The child's own report, then every descendant's inside it; and what was dropped, and why.
    Raises EnvelopeError when the child's own report fails.

    ``held``: the SHA-256 digests of the reports this node already holds (each verified when it was
    taken). A forwarded report with exactly those bytes is left out, with everything nested in it: it
    says nothing new, and a city forwarding its whole subtree every time one township changes would
    otherwise have the province verify every descendant's signature again, for as long as a cascade
    lasts. The child's own report is always verified."""
    if len(data) > me.limits.message_bytes:
        raise EnvelopeError(f"状态报告 {len(data)} 字节，超过上限 (status report too large)", code="report.too_large")
    signer, report, published = _open(data, me.root, now, me)
    if signer.path[:-1] != me.path or signer.code not in me.children:
        raise EnvelopeError(f"状态报告签名者 {signer.code} 不是本节点的下级 (report signer is not a child of this node)",
                            code="report.not_child")
    if caller is not None and caller != signer.code:
        raise EnvelopeError(f"TLS 证书属于 {caller[:12]}，报告却由 {signer.code} 签名 (report signed by another node "
                            "than the caller)", code="report.not_caller")
    out = [_report(report, data, "", published)]
    dropped: list[str] = []
    _nested(me, report, signer, now, 1, out, dropped, held)
    return out, dropped


def _open(data: bytes, root: Identity, now: int,
          me: Me) -> tuple[Identity, pb.NodeReport, tuple[publication.Published, ...]]:
    msg = pb.ReportMessage()
    try:
        msg.ParseFromString(data)
    except DecodeError:
        raise EnvelopeError("状态报告无法解析 (malformed status report)", code="report.malformed") from None
    signer, payload = verify_signed_by(msg.report, PAYLOAD_REPORT, list(msg.certificate_chain), root, now, me.trust)
    report = pb.NodeReport()
    try:
        report.ParseFromString(payload)
    except DecodeError:
        raise EnvelopeError("状态报告载荷无法解析 (malformed status report payload)", code="report.malformed_payload") from None
    if report.node != signer.code:
        raise EnvelopeError(f"状态报告属于 {report.node[:12]}，却由 {signer.code} 签名 (report node is not the signer)",
                            code="report.node_not_signer")
    if not 0 < report.reported_at <= now + CLOCK_SKEW:
        raise EnvelopeError("状态报告时间无效或在未来 (report time invalid or in the future)", code="report.bad_time")
    if (len(report.received) > MAX_REFS or len(report.issued) > MAX_REFS or len(report.refusals) > MAX_REFUSALS
            or len(report.descendants) > me.limits.units or len(report.publications) > MAX_PUBLICATIONS
            or len(report.division_lists) > MAX_LISTS):
        raise EnvelopeError("状态报告条目过多 (status report too long)", code="report.too_long")
    for x in report.division_lists:
        # the issuer of a list this node holds is the node or one of its ancestors: its code is a prefix
        if not (x.issuer and signer.code.startswith(x.issuer) and 0 < x.seq < 2**32 and len(x.digest) == 64):
            raise EnvelopeError(f"{signer.code} 报告中的区划变更清单引用无效 (a division list reference names an issuer "
                                "not on the node's path, or a bad number or digest)", code="report.bad_division_list")
    published = []
    for envelope in report.publications:
        # final results travel up as their publisher signed them: each one checked here, so a child
        # cannot forward another node's results, nor a publicity version as final
        try:
            opened = open_envelope(envelope, PAYLOAD_PUBLICATION)
            verify_signature(opened, signer.public_key)
            pub = publication.decode(opened.payload)  # every field readable, so the receiver can keep it
        except EnvelopeError:
            raise EnvelopeError(f"{signer.code} 报告中的终审结果未由其签名或无法解析 (a final result not signed by the "
                                "reporting node)", code="report.bad_publication") from None
        if len(pub.cycle) > 16 or len(pub.period) > 16 or len(pub.framework.unit_class) > 64 \
                or len(pub.framework.digest) != 64:
            raise EnvelopeError(f"{signer.code} 报告中的终审结果字段过长 (a final result's header is too long)",
                                code="report.publication_header")
        published.append(pub)
        if pub.node != signer.code or pub.state != "final":
            raise EnvelopeError(f"{signer.code} 报告中的结果不是其本级的终审结果 (not the reporting node's final result)",
                                code="report.not_final")
    return signer, report, tuple(published)


def _nested(me: Me, report: pb.NodeReport, signer: Identity, now: int, depth: int, out: list[Report],
            dropped: list[str], held: Container[bytes]) -> None:
    if depth >= MAX_DEPTH or signer.level == "township":
        if report.descendants:
            dropped.append(f"{signer.code}: 层级过深的下级报告被忽略 (reports nested too deep ignored)")
        return
    below = LEVELS[LEVELS.index(signer.level) + 1]
    for data in report.descendants:
        if held and sha256(data).digest() in held:
            continue
        try:
            child, inner, inner_published = _open(data, me.root, now, me)
            if child.path[:-1] != signer.path or not valid_code(child.code, below):
                raise EnvelopeError(f"{child.code} 不是 {signer.code} 的下级 (not a child of the forwarding node)",
                                    code="report.not_descendant")
        except (EnvelopeError, ValueError, ArithmeticError) as exc:
            dropped.append(f"{signer.code} 转来的下级报告 (a report forwarded by {signer.code}): {exc}"[:300])
            continue
        out.append(_report(inner, data, signer.code, inner_published))
        _nested(me, inner, child, now, depth + 1, out, dropped, held)


def _report(r: pb.NodeReport, data: bytes, via: str, published: tuple[publication.Published, ...] = ()) -> Report:
    return Report(
        node=r.node, reported_at=r.reported_at,
        received=tuple(Ref(x.issuer, x.cycle, x.unit_class, x.version, x.digest) for x in r.received),
        issued=tuple(Ref(x.framework.issuer, x.framework.cycle, x.framework.unit_class, x.framework.version,
                         x.framework.digest, tuple(x.units)) for x in r.issued),
        refusals=tuple(Refusal(x.framework_digest, x.issuer, x.version, x.code, x.reason, x.refused_at)
                       for x in r.refusals),
        audit_seq=r.audit_seq, audit_hash=r.audit_hash, message=data, via=via, bundle_seq=r.bundle_seq,
        publications=tuple(r.publications), published=published,
        division_lists=tuple(ListRef(x.issuer, x.seq, x.digest) for x in r.division_lists))


def parse_stored(data: bytes, via: str = "") -> Report:
    """A report this node verified when it took it, read back from the store."""
    return _report(pb.NodeReport.FromString(open_envelope(pb.ReportMessage.FromString(data).report,
                                                          PAYLOAD_REPORT).payload), data, via)


@dataclass(frozen=True)
class DescendantState:
    node: str
    parent: str
    state: str  # current | lagging | refused | unreported
    reported_at: int
    audit_seq: int
    expected: tuple[Ref, ...]  # what its parent issued to it last, per cycle and class
    held: tuple[Ref, ...]
    refusals: tuple[Refusal, ...]  # refusals of what it was expected to hold
    lists_behind: tuple[ListBehind, ...] = ()  # change lists its parent holds and it does not

    @property
    def ok(self) -> bool:
        return self.state == "current"


def lists_behind(parent_lists: Iterable[ListRef], node: str, held: Iterable[ListRef]) -> tuple[ListBehind, ...]:
    """The issuers on ``node``'s path whose lists its parent holds beyond what ``node`` holds."""
    def last(refs: Iterable[ListRef]) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in refs:
            out[r.issuer] = max(out.get(r.issuer, 0), r.seq)
        return out

    mine = last(held)
    return tuple(ListBehind(issuer, seq, mine.get(issuer, 0)) for issuer, seq in sorted(last(parent_lists).items())
                 if node.startswith(issuer) and node != issuer and mine.get(issuer, 0) < seq)


def cascade_states(me_code: str, my_issued: Iterable[Ref], children: Iterable[str],
                   reports: Mapping[str, Report], my_lists: Iterable[ListRef] = ()) -> list[DescendantState]:
    """One state per descendant this node knows of: its configured children, every unit a reported
    framework addresses below them, and every node whose report one of them forwarded. A descendant
    is current when it holds the latest framework its parent issued to it for each cycle and class;
    refused when it refused one of those; lagging when it holds an older one or none; unreported
    when no report of it is held. Beside the state: the division change lists its parent holds
    (``my_lists`` for this node's own children) that it has not taken."""
    issued_by: dict[str, list[Ref]] = {me_code: list(my_issued)}
    lists_of: dict[str, tuple[ListRef, ...]] = {me_code: tuple(my_lists)}
    for code, r in reports.items():
        issued_by[code] = list(r.issued)
        lists_of[code] = r.division_lists
    known: dict[str, str] = dict.fromkeys(children, me_code)
    queue = list(known)
    while queue:
        code = queue.pop()
        for ref in issued_by.get(code, []) if code in reports else []:
            for unit in ref.units:
                if unit not in known and unit.startswith(code) and len(known) < 100_000:
                    known[unit] = code
                    queue.append(unit)
    for code, r in sorted(reports.items(), key=lambda kv: len(kv[0])):  # reported, if no framework names it yet
        if code not in known and r.via in known and len(known) < 100_000:
            known[code] = r.via
    out = []
    for node, parent in sorted(known.items()):
        expected = tuple(ref for ref in issued_by.get(parent, []) if node in ref.units)
        report = reports.get(node)
        if report is None:
            out.append(DescendantState(node, parent, "unreported", 0, 0, expected, (), ()))
            continue
        held = {r.digest for r in report.received}
        refused = tuple(f for f in report.refusals if f.framework_digest in {e.digest for e in expected} - held)
        missing = [e for e in expected if e.digest not in held]
        state = "refused" if refused else ("lagging" if missing else "current")
        out.append(DescendantState(node, parent, state, report.reported_at, report.audit_seq, expected,
                                   report.received, refused,
                                   lists_behind(lists_of.get(parent, ()), node, report.division_lists)))
    return out


@dataclass(frozen=True)
class Anchor:
    """The head of a node's audit chain as its parent holds it, signed by the node itself."""

    seq: int
    hash: str
    reported_at: int


def anchor_of(data: bytes, me_code: str, root: Identity) -> Anchor:
    """Open the report a parent returned for this node (``FetchAnchor``): it must be this node's own,
    signed under a certificate valid when it was made (the key may have rotated since)."""
    msg = pb.ReportMessage()
    try:
        msg.ParseFromString(data)
        report = pb.NodeReport.FromString(open_envelope(msg.report, PAYLOAD_REPORT).payload)
    except DecodeError:
        raise EnvelopeError("上级返回的锚点无法解析 (malformed anchor)", code="anchor.malformed") from None
    signer, _ = verify_signed_by(msg.report, PAYLOAD_REPORT, list(msg.certificate_chain), root, report.reported_at)
    if signer.code != me_code or report.node != me_code:
        raise EnvelopeError(f"上级返回的锚点不是本节点签名的 (the anchor is not this node's own): {signer.code}",
                            code="anchor.not_own")
    return Anchor(report.audit_seq, report.audit_hash, report.reported_at)


def check_anchor(anchor: Anchor, hashes: Mapping[int, str], last_seq: int) -> str | None:
    """None when the local chain still holds the anchored head; else what is wrong. ``hashes``:
    local seq → hash (the chain itself verified already)."""
    if anchor.seq == 0:
        return None
    if last_seq < anchor.seq:
        return (f"本地审计日志只有 {last_seq} 条，上级所持锚点为第 {anchor.seq} 条：日志被截断 "
                f"(the local log ends before the anchored head: truncated)")
    if hashes.get(anchor.seq) != anchor.hash:
        return (f"第 {anchor.seq} 条的哈希与上级所持锚点不符：日志在该处之前被改写 "
                f"(entry {anchor.seq} differs from the head the parent holds: history rewritten)")
    return None
