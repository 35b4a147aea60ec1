"""Results receiver: verify a child's signed bundle, store its values exactly once.

Three layers of checks, with three different consequences:

1. Identity (the signer is a direct child of this node, owns the subject the bundle came on,
   and is the bundle's node; the bytes verify): failure → rejected, nothing recorded but the
   audit entry.
2. Chain (seq + 1 and the previous bundle's id): a gap → ``retry`` (the transport redelivers
   later; the missing bundle may still arrive); a fork → rejected and reported, never merged.
3. Content (the bundle answers a framework this node issued to that child, for that cycle, with
   known indicators and a valid period): failure → the bundle still joins the child's chain,
   marked rejected with its reason, and none of its values are stored. A child's chain is a
   property of what it signed, so one bad bundle does not block every later one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from google.protobuf.message import DecodeError

from aggregator.framework import Framework, reportable_keys, valid_period
from aggregator.numbers import to_text
from proto.appraisal.v1 import appraisal_pb2 as pb
from sync.codec import Bundle, decode_bundle, framework_from_envelope
from sync.envelope import PAYLOAD_RESULTS, EnvelopeError, digest
from sync.identity import Me, Outcome
from sync.results_sender import GENESIS
from sync.trust import verify_signed_by

Accepted = Callable[[Any, Bundle], Awaitable[None]]


class ResultsStore(Protocol):
    def tx(self) -> Any: ...


def verify_result_message(me: Me, data: bytes, now: int, transport_subject: str | None) -> tuple[Bundle, str]:
    """Layer 1: who signed it, and may they speak for this bundle on this subject."""
    msg = pb.ResultMessage()
    try:
        msg.ParseFromString(data)
    except DecodeError:
        raise EnvelopeError("结果消息无法解析 (malformed result message)") from None
    signer, payload = verify_signed_by(msg.bundle, PAYLOAD_RESULTS, list(msg.certificate_chain), me.root, now, me.trust)
    if signer.path[:-1] != me.path or signer.code not in me.children:
        raise EnvelopeError(f"签名者 {signer.code} 不是本节点的下级 (signer is not a child of this node)")
    if transport_subject is not None and transport_subject != "res." + ".".join(signer.path):
        raise EnvelopeError(f"签名者 {signer.code} 不拥有主题 {transport_subject} (signer does not own the subject)")
    bundle = decode_bundle(payload)
    if bundle.node != signer.code:
        raise EnvelopeError(f"结果包属于 {bundle.node}，却由 {signer.code} 签名 (bundle node is not the signer)")
    return bundle, digest(payload)


async def receive_results(store: ResultsStore, me: Me, data: bytes, now: int, on_accept: Accepted,
                          transport_subject: str | None = None) -> Outcome:
    try:
        bundle, bundle_id = verify_result_message(me, data, now, transport_subject)
    except (EnvelopeError, ArithmeticError) as exc:
        await _reject(store, me, str(exc), data, now, "")
        return Outcome(False, False, str(exc))
    async with store.tx() as tx:
        if await tx.seen(bundle.node, bundle_id) or await tx.bundle(bundle_id) is not None:
            return Outcome(True, True, "重复结果包，已接收过 (duplicate)", bundle.node, bundle_id)
        chain = await _check_chain(tx, bundle)
        if chain == "gap":
            return Outcome(False, False, f"缺少 {bundle.node} 序号 {bundle.seq} 之前的结果包，稍后重试 "
                                         "(gap in the bundle chain; retry later)", bundle.node, bundle_id, retry=True)
        if chain:
            rejected = chain
        else:
            try:
                rejected = await _check_content(tx, bundle)
            except (EnvelopeError, ArithmeticError, ValueError) as exc:  # never an exception that retries forever
                rejected = f"结果包无法核对 (bundle cannot be checked): {exc}"
            await tx.put_bundle(bundle_id=bundle_id, node=bundle.node, cycle=bundle.cycle, period=bundle.period,
                                seq=bundle.seq, prev_hash=bundle.prev_hash, framework_digest=bundle.framework_digest,
                                message=data, now=now, status="rejected" if rejected else "accepted", reason=rejected)
            await tx.remember(bundle.node, bundle_id, now)
            if me.trust.has_new_keys():
                await tx.put_keys(me.trust.take_new(), now)
            if not rejected:
                await tx.put_values(node=bundle.node, cycle=bundle.cycle, period=bundle.period,
                                    framework_digest=bundle.framework_digest,
                                    values={k: to_text(v) for k, v in bundle.values.items()},
                                    source="reported", bundle_id=bundle_id, now=now)
                await tx.audit(me.code, "accept.results", bundle_id,
                               {"node": bundle.node, "seq": bundle.seq, "cycle": bundle.cycle,
                                "period": bundle.period, "values": len(bundle.values),
                                "via": transport_subject or "grpc"}, now)
                await on_accept(tx, bundle)
    if rejected:
        await _reject(store, me, rejected, data, now, bundle_id)
        return Outcome(False, False, rejected, bundle.node, bundle_id)
    return Outcome(True, False, "", bundle.node, bundle_id)


async def _check_chain(tx: Any, bundle: Bundle) -> str:
    last = await tx.last_bundle(bundle.node)
    if last is None:
        if bundle.seq == 1 and bundle.prev_hash == GENESIS:
            return ""
        return "gap" if bundle.seq > 1 else f"{bundle.node} 的首个结果包序号应为 1 (first bundle must have seq 1)"
    if bundle.seq <= last.seq:
        return f"{bundle.node} 的结果包链分叉：序号 {bundle.seq} 已有不同内容 (forked bundle chain)"
    if bundle.seq > last.seq + 1:
        return "gap"
    if bundle.prev_hash != last.id:
        return f"{bundle.node} 的结果包链分叉：序号 {bundle.seq} 未接续已收到的结果包 (forked bundle chain)"
    return ""


# Frameworks are immutable under their digest: decode each once.
_FRAMEWORKS: dict[str, Framework] = {}


def _framework(digest_: str, envelope: bytes) -> Framework:
    fw = _FRAMEWORKS.get(digest_)
    if fw is None:
        if len(_FRAMEWORKS) >= 256:
            _FRAMEWORKS.clear()
        fw = _FRAMEWORKS[digest_] = framework_from_envelope(envelope)
    return fw


async def _check_content(tx: Any, bundle: Bundle) -> str:
    fw_row = await tx.framework(bundle.framework_digest)
    if fw_row is None or fw_row.role != "issued":
        return f"结果包引用的指标体系 {bundle.framework_digest[:12]}… 不是本节点发布的 (unknown framework)"
    fw = _framework(fw_row.digest, fw_row.envelope)
    if bundle.node not in {u.code for u in fw.units}:
        return f"{bundle.node} 不是该指标体系的被考评单位 (not a unit of that framework)"
    if bundle.cycle != fw.cycle:
        return f"结果包年度 {bundle.cycle} 与指标体系年度 {fw.cycle} 不符 (cycle does not match the framework)"
    if not valid_period(bundle.period, fw.cycle):
        return f"报告期 {bundle.period!r} 无效，应如 {fw.cycle}-Y、{fw.cycle}-Q1、{fw.cycle}-M03 (invalid period)"
    unknown = sorted(set(bundle.values) - reportable_keys(fw))
    if unknown:
        return f"结果包含该指标体系中不存在的指标 {', '.join(unknown[:5])} (unknown indicators)"
    return ""


async def _reject(store: ResultsStore, me: Me, reason: str, data: bytes, now: int, subject: str) -> None:
    async with store.tx() as tx:
        await tx.audit(me.code, "reject.results", subject or digest(data), {"reason": reason, "bytes": len(data)}, now)
