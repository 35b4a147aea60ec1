"""Results receiver: verify a child's signed bundle, store its values exactly once.

Three layers of checks, with three different consequences:

1. Identity (the signer is a direct child of this node, owns the subject the bundle came on,
   and is the bundle's node; the bytes verify): failure → rejected, nothing recorded but the
   audit entry.
2. Chain (seq + 1 and the previous bundle's id): a gap → ``retry`` (the transport redelivers
   later; the missing bundle may still arrive); a fork → rejected and reported, never merged.
3. Content (the bundle answers a framework this node issued to that child, for that cycle, with
   known indicators and a valid period, and the approvals and evidence it carries for the bundles
   it was rolled up from verify two levels down, see sync/approvals.py): failure → the bundle still joins the child's chain,
   marked rejected with its reason, and none of its values are stored. A child's chain is a
   property of what it signed, so one bad bundle does not block every later one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from google.protobuf.message import DecodeError

from aggregator.framework import Framework, reportable_keys, valid_period
from aggregator.numbers import to_text
from proto.appraisal.v1 import appraisal_pb2 as pb
from sync.approvals import Attested, verify_attestations
from sync.codec import Bundle, decode_bundle, framework_from_envelope
from sync.envelope import PAYLOAD_RESULTS, EnvelopeError, code_of, digest, open_envelope
from sync.identity import Me, Outcome
from sync.ports import FrameworkRecord, Occurrence, ProtocolStore, ProtocolTx, TxT
from sync.refusals import OUT_OF_SEQUENCE, REPLAYED, record, sender_of
from sync.results_sender import GENESIS
from sync.rollup_check import RollupMismatch
from sync.trust import CertificateTimeError, Identity, verify_signed_by
from sync.trust_updates import persist_trust

Accepted = Callable[[TxT, list[Bundle]], Awaitable[None]]
Rejection = tuple[str, str]  # (code, reason): the stable code for programs, the reason for people


def verify_result_message(me: Me, data: bytes, now: int, transport_subject: str | None) -> tuple[Bundle, str]:
    """Layer 1: who signed it, and may they speak for this bundle on this subject."""
    bundle, bundle_id, _, _, late = _verify(me, data, now, transport_subject)
    if late is not None:
        raise EnvelopeError(late[1], code=late[0])
    return bundle, bundle_id


def _verify(me: Me, data: bytes, now: int,
            transport_subject: str | None) -> tuple[Bundle, str, pb.ResultMessage, Identity, Rejection | None]:
    """Layer 1; the last item is set when the signer's certificate expired while the bundle
    was on its way: genuine when signed, so it joins the chain (nothing else of the child's blocks
    behind it), but as content refused, with that reason."""
    if len(data) > me.limits.message_bytes:
        raise EnvelopeError(f"结果消息 {len(data)} 字节，超过上限 {me.limits.message_bytes} (result message too large)",
                            code="results.too_large")
    msg = pb.ResultMessage()
    try:
        msg.ParseFromString(data)
    except DecodeError:
        raise EnvelopeError("结果消息无法解析 (malformed result message)", code="results.malformed") from None
    chain = list(msg.certificate_chain)
    late: Rejection | None = None
    try:
        signer, payload = verify_signed_by(msg.bundle, PAYLOAD_RESULTS, chain, me.root, now, me.trust)
    except CertificateTimeError:
        signed_at = decode_bundle(open_envelope(msg.bundle, PAYLOAD_RESULTS).payload).created_at
        if not 0 < signed_at <= now:
            raise
        signer, payload = verify_signed_by(msg.bundle, PAYLOAD_RESULTS, chain, me.root, signed_at, me.trust)
        late = ("results.expired_in_transit", f"签名者证书在结果包送达前已过期（签于 {signed_at}），不计入数值 "
                "(the signer's certificate expired before the bundle arrived; its values do not count)")
    try:
        if signer.path[:-1] != me.path or signer.code not in me.children:
            raise EnvelopeError(f"签名者 {signer.code} 不是本节点的下级 (signer is not a child of this node)",
                                code="results.not_child")
        if transport_subject is not None and transport_subject != "res." + ".".join(signer.path):
            raise EnvelopeError(f"签名者 {signer.code} 不拥有主题 {transport_subject} (signer does not own the subject)",
                                code="results.wrong_subject")
        bundle = decode_bundle(payload)
        if bundle.node != signer.code:
            raise EnvelopeError(f"结果包属于 {bundle.node}，却由 {signer.code} 签名 (bundle node is not the signer)",
                                code="results.node_not_signer")
    except EnvelopeError as exc:
        exc.signer = signer.code  # the signature verified: the audit entry names who signed it
        raise
    return bundle, digest(payload), msg, signer, late


async def receive_results(store: ProtocolStore[TxT], me: Me, data: bytes, now: int, on_accept: Accepted[TxT],
                          transport_subject: str | None = None, *, hold: bool = False, peer: str = "") -> Outcome:
    return (await receive_results_batch(store, me, [(data, transport_subject)], now, on_accept, hold=hold,
                                        peer=peer))[0]


async def receive_results_batch(store: ProtocolStore[TxT], me: Me, items: Sequence[tuple[bytes, str | None]], now: int,
                                on_accept: Accepted[TxT], *, hold: bool = False, peer: str = "") -> list[Outcome]:
    """Take a batch of messages (data, transport subject) in one transaction; one outcome each, in order.

    Verification (CPU) happens first, outside the transaction. Inside it, each child's bundles are
    taken in sequence order, so a batch that arrived out of order is not mistaken for a gap.
    ``on_accept`` runs once per batch with the bundles accepted (the node re-scores each affected
    cycle, period and framework once, not once per bundle).

    ``hold`` (review: manual): a bundle that passes every check joins the child's chain as
    ``pending``; its values count only once a person approves it (the node's review step).

    ``peer``: who handed the messages over without a NATS subject (the gRPC caller). Refusals,
    replays and gaps are recorded per sender (sync/refusals.py)."""
    outcomes: list[Outcome | None] = [None] * len(items)
    verified: list[tuple[int, Bundle, str, bytes, str | None, pb.ResultMessage, Identity, Rejection | None]] = []
    flagged: list[Occurrence] = []  # refusals, replays and gaps, recorded in the same transaction
    details: dict[str, dict[str, object]] = {}  # bundle id → what a refused roll-up's audit entry names

    def flag(action: str, rejection: Rejection, bundle_id: str, data: bytes, subject: str | None, signer: str) -> None:
        code, reason = rejection
        flagged.append(Occurrence(me.code, action, bundle_id or digest(data), sender_of(subject, peer), code,
                                  {"reason": reason, "code": code, "bytes": len(data), "signer": signer,
                                   **details.get(bundle_id, {})}))

    for i, (data, subject) in enumerate(items):
        try:
            bundle, bundle_id, msg, signer, late = _verify(me, data, now, subject)
        except (EnvelopeError, ArithmeticError) as exc:
            code = code_of(exc, "results.arithmetic")
            outcomes[i] = Outcome(False, False, str(exc), code=code)
            flag("reject.results", (code, str(exc)), "", data, subject, getattr(exc, "signer", ""))
            continue
        verified.append((i, bundle, bundle_id, data, subject, msg, signer, late))
    verified.sort(key=lambda v: (v[1].node, v[1].seq))
    async with store.tx() as tx:
        accepted: list[Bundle] = []
        if verified:
            known = await tx.inbox.known_bundles([(v[1].node, v[2]) for v in verified])
            last = {node: await tx.bundles.last(node) for node in {v[1].node for v in verified}}
            tips: dict[str, tuple[int, str]] = {n: (row.seq, row.id) for n, row in last.items() if row is not None}
            bundle_rows: list[dict[str, Any]] = []
            values: dict[tuple[str, str, str, str, str], dict[str, Any]] = {}
            audits: list[tuple[str, str, str, dict[str, object]]] = []
            fw_rows: dict[str, FrameworkRecord | None] = {}
            for i, bundle, bundle_id, data, subject, msg, signer, late in verified:
                if bundle_id in known:
                    outcomes[i] = Outcome(True, True, "重复结果包，已接收过 (duplicate)", bundle.node, bundle_id)
                    flag(REPLAYED, ("results.replay", "重复结果包，已接收过 (duplicate of a bundle already received)"),
                         bundle_id, data, subject, signer.code)
                    continue
                chain = _check_chain(tips.get(bundle.node), bundle)
                if chain is not None and chain[0] == GAP:
                    outcomes[i] = Outcome(False, False, chain[1], bundle.node, bundle_id, retry=True, code=GAP)
                    flag(OUT_OF_SEQUENCE, chain, bundle_id, data, subject, signer.code)
                    continue
                rejected = chain or late
                attested = Attested(0, 0)
                if rejected is None:
                    try:
                        rejected, issued = await _check_content(tx, me, bundle, fw_rows)
                        if rejected is None:
                            attested = verify_attestations(msg, signer, bundle, me.root, now, me.trust, me.limits.evidence,
                                                           issued=issued)
                    except RollupMismatch as exc:  # 防止弄虚作假: audited with the indicator, both values, the sources
                        rejected = (exc.code, str(exc))
                        details[bundle_id] = exc.detail
                    except (EnvelopeError, ArithmeticError, ValueError) as exc:  # never one that retries forever
                        rejected = (code_of(exc, "results.unchecked"), f"结果包无法核对 (bundle cannot be checked): {exc}")
                if chain is not None:  # a fork: not part of the chain, reported
                    outcomes[i] = Outcome(False, False, chain[1], bundle.node, bundle_id, code=chain[0])
                    flag("reject.results", chain, bundle_id, data, subject, signer.code)
                    continue
                known.add(bundle_id)
                tips[bundle.node] = (bundle.seq, bundle_id)
                status = "rejected" if rejected else ("pending" if hold else "accepted")
                bundle_rows.append({"bundle_id": bundle_id, "node": bundle.node, "cycle": bundle.cycle,
                                    "period": bundle.period, "seq": bundle.seq, "prev_hash": bundle.prev_hash,
                                    "framework_digest": bundle.framework_digest, "message": data,
                                    "status": status, "reason": rejected[1] if rejected else ""})
                if rejected:
                    outcomes[i] = Outcome(False, False, rejected[1], bundle.node, bundle_id, code=rejected[0])
                    flag("reject.results", rejected, bundle_id, data, subject, signer.code)
                    continue
                detail: dict[str, object] = {
                    "node": bundle.node, "seq": bundle.seq, "cycle": bundle.cycle, "period": bundle.period,
                    "values": len(bundle.values), "via": subject or "grpc", "approved": attested.approved,
                    "approved_below": attested.approved_below}
                outcomes[i] = Outcome(True, False, "", bundle.node, bundle_id)
                if hold:
                    audits.append((me.code, "accept.results", bundle_id, {**detail, "review": "pending"}))
                    continue
                for k, v in bundle.values.items():  # a later bundle of the batch overwrites an earlier one
                    values[(bundle.node, bundle.cycle, bundle.period, bundle.framework_digest, k)] = {
                        "value": to_text(v), "bundle_id": bundle_id}
                audits.append((me.code, "accept.results", bundle_id, detail))
                accepted.append(bundle)
            await tx.bundles.put_many(bundle_rows, now)
            await tx.inbox.remember_many([(r["node"], r["bundle_id"]) for r in bundle_rows], now)
            await tx.results.put_reported(values, now)
            await tx.audit.append_many(audits, now)
        await record(tx, me, flagged, now)
        if accepted:
            await on_accept(tx, accepted)
    if any(o is not None and o.accepted and not o.duplicate for o in outcomes):
        await persist_trust(store, me, now, keys=True)
    return [o for o in outcomes if o is not None]


async def pull_missing(store: ProtocolStore[TxT], me: Me, child: str, fetch: Callable[[int], Awaitable[list[bytes]]],
                       clock: Callable[[], int], on_accept: Accepted[TxT], batch: int, *, hold: bool = False) -> list[Outcome]:
    """Gap repair: ask ``child`` (``fetch(after_seq)``, over gRPC) for its bundles after the last one
    this node holds, verify and take them like any other, and ask again until its chain stops growing.
    Every pulled bundle is checked exactly as if it had come over NATS: the child's word is not trusted."""
    outcomes: list[Outcome] = []
    while True:
        async with store.read() as r:
            last = await r.bundles.last(child)
        before = last.seq if last is not None else 0
        messages = await fetch(before)
        for start in range(0, len(messages), batch):
            done = await receive_results_batch(store, me, [(d, None) for d in messages[start:start + batch]], clock(),
                                               on_accept, hold=hold, peer=child)
            outcomes += done
            if any(o.retry for o in done):  # the child sent a gap itself: stop, the stream will ask again
                return outcomes
        async with store.read() as r:
            last = await r.bundles.last(child)
        if not messages or (last.seq if last is not None else 0) <= before:
            return outcomes


GAP = "results.gap"  # not a rejection: the transport delivers the bundle again later


def _gap(bundle: Bundle) -> Rejection:
    return GAP, f"缺少 {bundle.node} 序号 {bundle.seq} 之前的结果包，稍后重试 (gap in the bundle chain; retry later)"


def _check_chain(tip: tuple[int, str] | None, bundle: Bundle) -> Rejection | None:
    """``tip``: (seq, id) of the last bundle in the child's chain. None: the bundle continues it;
    a gap (code :data:`GAP`); or a fork."""
    if tip is None:
        if bundle.seq == 1 and bundle.prev_hash == GENESIS:
            return None
        return _gap(bundle) if bundle.seq > 1 else ("results.bad_first_seq",
                                                     f"{bundle.node} 的首个结果包序号应为 1 (first bundle must have seq 1)")
    last_seq, last_id = tip
    if bundle.seq <= last_seq:
        return "results.fork", f"{bundle.node} 的结果包链分叉：序号 {bundle.seq} 已有不同内容 (forked bundle chain)"
    if bundle.seq > last_seq + 1:
        return _gap(bundle)
    if bundle.prev_hash != last_id:
        return "results.fork", f"{bundle.node} 的结果包链分叉：序号 {bundle.seq} 未接续已收到的结果包 (forked bundle chain)"
    return None


_REPORTABLE: dict[str, frozenset[str]] = {}  # framework digest → its reportable keys (immutable under the digest)


def _reportable(digest_: str, fw: Framework) -> frozenset[str]:
    keys = _REPORTABLE.get(digest_)
    if keys is None:
        if len(_REPORTABLE) >= 256:
            _REPORTABLE.clear()
        keys = _REPORTABLE[digest_] = frozenset(reportable_keys(fw))
    return keys


def _framework(cache: dict[str, Framework], digest_: str, envelope: bytes) -> Framework:
    fw = cache.get(digest_)
    if fw is None:
        if len(cache) >= 256:
            cache.clear()
        fw = cache[digest_] = framework_from_envelope(envelope)
    return fw


async def _check_content(tx: ProtocolTx, me: Me, bundle: Bundle, fw_rows: dict[str, FrameworkRecord | None]
                         ) -> tuple[Rejection | None, tuple[Framework, str] | None]:
    """A rejection, or None with the framework (and its digest) this node issued that the bundle answers."""
    if bundle.framework_digest not in fw_rows:
        fw_rows[bundle.framework_digest] = await tx.frameworks.get(bundle.framework_digest)
    fw_row = fw_rows[bundle.framework_digest]
    if fw_row is None or fw_row.role != "issued":
        return ("results.unknown_framework",
                f"结果包引用的指标体系 {bundle.framework_digest[:12]}… 不是本节点发布的 (unknown framework)"), None
    fw = _framework(me.decoded, fw_row.digest, fw_row.envelope)
    if bundle.node not in {u.code for u in fw.units}:
        return ("results.not_a_unit", f"{bundle.node} 不是该指标体系的被考评单位 (not a unit of that framework)"), None
    if bundle.cycle != fw.cycle:
        return ("results.cycle_mismatch",
                f"结果包年度 {bundle.cycle} 与指标体系年度 {fw.cycle} 不符 (cycle does not match the framework)"), None
    if not valid_period(bundle.period, fw.cycle):
        return ("results.bad_period",
                f"报告期 {bundle.period!r} 无效，应如 {fw.cycle}-Y、{fw.cycle}-Q1、{fw.cycle}-M03 (invalid period)"), None
    unknown = sorted(bundle.values.keys() - _reportable(fw_row.digest, fw))
    if unknown:
        return ("results.unknown_indicators",
                f"结果包含该指标体系中不存在的指标 {', '.join(unknown[:5])} (unknown indicators)"), None
    return None, (fw, fw_row.digest)
