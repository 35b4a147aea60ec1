"""Cascade receiver: verify a framework chain down to this node, then hand it to the node.

Checks, in order (each failure is a clear reason; nothing is written but the audit entry and
the revocation lists): the message parses; the revocation lists it carries are verified and the
newer ones installed (each list is signed on its own, so this stands even if the framework is then
refused); every certificate on the way is unrevoked and agrees with the keys seen before; every
framework in the chain is signed by the node its certificate chain says issued it; each
framework pins its predecessor and passes the linkage checks; the last one is issued by this
node's parent, names this node among its units and only units in the issuer's scope; it has not
expired; and its version moves forward (rollback, replay and equal-version-different-bytes are
rejected). An exact repeat is answered from the inbox.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from google.protobuf.message import DecodeError

from aggregator.framework import Framework
from proto.appraisal.v1 import appraisal_pb2 as pb
from sync.codec import decode_framework
from sync.envelope import PAYLOAD_FRAMEWORK, EnvelopeError, code_of, open_envelope
from sync.envelope import digest as sha
from sync.framework_checks import check_issued
from sync.identity import Me, Outcome
from sync.limits import DEFAULT_LIMITS, Limits
from sync.ports import Occurrence, ProtocolStore, ProtocolTx, TxT
from sync.refusals import record_alone, sender_of
from sync.trust import (
    Identity,
    RevocationList,
    TrustState,
    accept_revocations,
    chain_identities,
    verify_chain,
    verify_signed_by,
)
from sync.trust_updates import audit_list_problems, persist_trust

MAX_UNITS = DEFAULT_LIMITS.units


# on_accept(tx, framework, digest, upstream): upstream are the envelopes from the root down to it.
Accepted = Callable[[TxT, Framework, str, list[bytes]], Awaitable[None]]
# check(framework): the node's own rule on a verified framework (its units on the division tree in
# force for the cycle); raises EnvelopeError to refuse it.
Check = Callable[[Framework], None]


def verify_cascade(me: Me, data: bytes, now: int) -> tuple[Framework, str, pb.CascadeMessage]:
    """Pure verification of a cascade message addressed to ``me``; raises EnvelopeError."""
    fw, fw_digest, msg = verify_framework_chain(data, me.root, now, me.trust, me.limits)
    if fw.issuer != me.parent:
        raise EnvelopeError(f"指标体系由 {fw.issuer} 发布，不是本节点的上级 {me.parent} (not issued by this node's parent)",
                            code="cascade.not_parent")
    if me.code not in {u.code for u in fw.units}:
        raise EnvelopeError(f"指标体系未将本节点 {me.code} 列为被考评单位 (framework does not address this node)",
                            code="cascade.not_addressed")
    return fw, fw_digest, msg


def parse_cascade(data: bytes) -> pb.CascadeMessage:
    msg = pb.CascadeMessage()
    try:
        msg.ParseFromString(data)
    except DecodeError:
        raise EnvelopeError("下发消息无法解析 (malformed cascade message)", code="cascade.malformed") from None
    return msg


def verify_framework_chain(data: bytes, root: Identity, now: int, state: TrustState | None = None,
                           limits: Limits = DEFAULT_LIMITS, *,
                           internal: bool = False) -> tuple[Framework, str, pb.CascadeMessage]:
    """Verify every framework of a cascade message up to ``root``; return the last one. ``internal``:
    the last is a framework its signer keeps for its own departments (``check_issued(departments=True)``)."""
    if len(data) > limits.message_bytes:
        raise EnvelopeError(f"下发消息 {len(data)} 字节，超过上限 {limits.message_bytes} (cascade message too large)",
                            code="cascade.too_large")
    msg = parse_cascade(data)
    deepest = 4 if internal else 3  # a township's framework for its departments sits below the county's
    if not msg.frameworks or len(msg.frameworks) > deepest:
        raise EnvelopeError(f"下发消息应含1至{deepest}个指标体系，实含 {len(msg.frameworks)} 个 (bad framework chain length)",
                            code="cascade.bad_length")
    if len(msg.certificate_chain) != len(msg.frameworks) - 1:
        raise EnvelopeError("证书链与指标体系链长度不符 (certificate chain does not match framework chain)",
                            code="cascade.chain_mismatch")
    prev: tuple[Framework, str] | None = None
    for depth, env in enumerate(msg.frameworks):
        chain = list(msg.certificate_chain[:depth])
        signer, payload = verify_signed_by(env, PAYLOAD_FRAMEWORK, chain, root, now, state)
        fw = decode_framework(payload)
        fw_digest = sha(payload)
        last = depth == len(msg.frameworks) - 1
        check_issued(fw, signer, prev, now, limits, departments=internal and last, digest=fw_digest)
        prev = (fw, fw_digest)
    assert prev is not None
    return prev[0], prev[1], msg


async def receive_cascade(store: ProtocolStore[TxT], me: Me, data: bytes, now: int, on_accept: Accepted[TxT],
                          transport_subject: str | None = None, *, peer: str = "", check: Check | None = None) -> Outcome:
    """``peer``: who handed the message over without a NATS subject (the gRPC peer: for catch-up,
    the parent this node called). Refusals are recorded per sender (sync/refusals.py)."""
    problems: list[EnvelopeError] = []  # bad revocation lists: audited and skipped, the framework judged on its own
    sender = sender_of(transport_subject, peer)
    try:
        if transport_subject is not None and transport_subject != me.parent_cascade_subject():
            raise EnvelopeError(f"主题 {transport_subject} 不属于本节点的上级 (subject is not the parent's)",
                                code="cascade.wrong_subject")
        _revocations(me, data, now, problems)
        fw, fw_digest, msg = verify_cascade(me, data, now)
        if check is not None:
            check(fw)
    except (EnvelopeError, ArithmeticError) as exc:
        code = code_of(exc, "cascade.arithmetic")
        await _reject(store, me, (code, str(exc)), data, now, "", problems, sender, getattr(exc, "signer", ""))
        return Outcome(False, False, str(exc), code=code)
    duplicate = False
    rejected: tuple[str, str] | None = None  # (code, reason)
    async with store.tx() as tx:
        if await tx.inbox.seen(fw.issuer, fw_digest) or await tx.frameworks.get(fw_digest) is not None:
            duplicate = True
        else:
            latest = await tx.frameworks.latest(fw.issuer, fw.cycle, fw.unit_class)
            if latest is not None and latest.version >= fw.version:
                # Rejections are recorded in a transaction of their own, below; this one writes nothing.
                rejected = (("cascade.fork", f"版本相同但内容不同，疑似伪造 (equal version v{fw.version} with different bytes)")
                            if latest.version == fw.version else
                            ("cascade.rollback",
                             f"版本回退：已有 v{latest.version}，收到 v{fw.version} (rollback or replay of an older version)"))
            else:
                await tx.frameworks.put(digest=fw_digest, issuer=fw.issuer, cycle=fw.cycle, unit_class=fw.unit_class,
                                       version=fw.version, role="received", envelope=bytes(msg.frameworks[-1]),
                                       cascade=data, now=now)
                await tx.inbox.remember(fw.issuer, fw_digest, now)
                await tx.audit.append(me.code, "accept.framework", fw_digest,
                               {"issuer": fw.issuer, "cycle": fw.cycle, "class": fw.unit_class, "version": fw.version},
                               now)
                await on_accept(tx, fw, fw_digest, list(msg.frameworks))
    if rejected is not None:
        await _reject(store, me, rejected, data, now, fw_digest, problems, sender, fw.issuer)
        return Outcome(False, False, rejected[1], fw.issuer, fw_digest, code=rejected[0])
    await persist_trust(store, me, now, keys=not duplicate)  # a repeat may still bring newer lists
    await audit_list_problems(store, me, problems, now, sender)
    if duplicate:
        return Outcome(True, True, "重复消息，已接收过 (duplicate)", fw.issuer, fw_digest)
    return Outcome(True, False, "", fw.issuer, fw_digest)


def _revocations(me: Me, data: bytes, now: int, problems: list[EnvelopeError]) -> list[RevocationList]:
    """Install the lists the message carries, signed by nodes on its certificate chain."""
    msg = parse_cascade(data)
    if not msg.revocations:
        return []
    if len(msg.certificate_chain) > 3:
        raise EnvelopeError("证书链过长 (certificate chain too long)", code="trust.chain_too_long")
    signers = chain_identities(list(msg.certificate_chain), me.root, now, me.trust)
    return accept_revocations(me.trust, list(msg.revocations), signers, now, problems)


async def _reject(store: ProtocolStore[ProtocolTx], me: Me, rejected: tuple[str, str], data: bytes, now: int, subject: str,
                  problems: list[EnvelopeError], sender: str, signer: str) -> None:
    """``rejected``: (code, reason); ``signer``: who signed it, if that verified."""
    await persist_trust(store, me, now, keys=False)  # lists signed on their own stand even if the framework falls
    await audit_list_problems(store, me, problems, now, sender)
    code, reason = rejected
    await record_alone(store, me, [Occurrence(me.code, "reject.framework", subject or _claimed_digest(data), sender,
                                              code, {"reason": reason, "code": code, "bytes": len(data), "signer": signer})],
                       now)


def _claimed_digest(data: bytes) -> str:
    """The digest of the framework a refused message carries, as claimed (its envelope unverified), so
    that the refusal can be reported against the version it concerns; else the message's own hash."""
    try:
        last = parse_cascade(data).frameworks[-1]
        return sha(open_envelope(last, PAYLOAD_FRAMEWORK).payload)
    except (EnvelopeError, IndexError):
        return sha(data)


__all__ = ["receive_cascade", "verify_cascade", "verify_chain", "verify_framework_chain"]
