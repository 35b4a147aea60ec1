"""Trust updates: the parent's signed heartbeat and the revocation lists (sender and receiver).

Sender: every few seconds a parent signs a short-lived Heartbeat naming the latest framework it
issued per (cycle, class) and the version of its own revocation list, and sends it with the
revocation lists it holds (its ancestors' and its own) and its certificate chain. Heartbeats go
over core NATS (``hb.<path>``), not a stream: an expired heartbeat is worth nothing, and a stream
would only fill up with them. The same update answers a child's catch-up over gRPC.

Receiver: the chain must prove the sender is this node's parent; newer revocation lists are
installed, persisted and audited even if the heartbeat itself is bad (each list is signed on its
own); the heartbeat must verify, be no older than the last one (an older one is a replay) and be
unexpired.
A child whose last heartbeat has expired says it may be frozen on old data (rule 7); one whose
heartbeat names a framework it does not hold asks its parent for it.

Revoking: an issuer revokes only certificates it issued (its direct children). Its new list
repeats every earlier entry; versions go up by one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import DecodeError

from proto.appraisal.v1 import appraisal_pb2 as pb
from sync.envelope import PAYLOAD_HEARTBEAT, EnvelopeError, code_of, open_signed, sign
from sync.identity import Me
from sync.limits import DEFAULT_LIMITS
from sync.ports import Occurrence, ProtocolStore, ProtocolTx
from sync.refusals import from_nats, record_alone
from sync.trust import (
    CLOCK_SKEW,
    RevocationList,
    TrustError,
    accept_revocations,
    chain_identities,
    decode_revocations,
    sign_revocations,
)

MAX_TRUST_UPDATE = DEFAULT_LIMITS.trust_update_bytes
MAX_HEARTBEAT_TTL = DEFAULT_LIMITS.heartbeat_ttl_seconds


@dataclass(frozen=True)
class Pulse:
    """The last good heartbeat from the parent."""

    issued_at: int
    expires_at: int
    frameworks: tuple[tuple[str, str, int, str], ...]  # (cycle, class, version, digest)
    revocations_version: int
    returned: tuple[tuple[str, int, str, int], ...] = ()  # this node's bundles sent back: (id, seq, reason, at)

    def fresh(self, now: int) -> bool:
        return now <= self.expires_at


# ------------------------------------------------------------------ sender

def heartbeat_update(me: Me, issued: list[tuple[str, str, int, str]], now: int, ttl: int,
                     returned: Sequence[tuple[str, str, int, str, int]] = ()) -> bytes:
    """A signed heartbeat plus the revocation lists in force, as one TrustUpdate.
    ``returned``: children's bundles sent back for correction, (node, id, seq, reason, at)."""
    own = me.trust.lists.get(me.code)
    hb = pb.Heartbeat(issuer_code=me.code, issued_at=now, expires_at=now + ttl,
                      revocations_version=own.version if own is not None else 0)
    for cycle, unit_class, version, digest in issued:
        hb.frameworks.add(issuer=me.code, cycle=cycle, unit_class=unit_class, version=version, digest=digest)
    for node, bundle_id, seq, reason, at in returned:
        hb.returned.add(node=node, bundle_id=bundle_id, seq=seq, reason=reason[:500], returned_at=at)
    return pb.TrustUpdate(heartbeat=sign(PAYLOAD_HEARTBEAT, hb.SerializeToString(), me.key),
                          revocations=me.trust.envelopes(me.path),
                          certificate_chain=list(me.chain)).SerializeToString()


async def revoke(store: ProtocolStore[ProtocolTx], me: Me, code: str, serial: int, reason: str, now: int,
                 actor: str = "") -> RevocationList:
    """Revoke certificate ``serial`` of child ``code``: sign the next version of this node's list,
    commit it, and only then put it in force here (so nothing uncommitted is ever sent down)."""
    if code not in me.children:
        raise TrustError(f"{code[:12]} 不是本节点签发证书的下级，无法吊销 (a node revokes only its children's certificates)",
                         code="revocations.not_a_child")
    if serial < 1:
        raise TrustError("证书序号应为正整数 (serial must be a positive integer)", code="revocations.bad_serial")
    async with store.tx() as tx:  # under the store's write lock: two revocations cannot take one version
        current = me.trust.lists.get(me.code)
        entries = dict(current.revoked) if current is not None else {}
        if current is not None and (code, serial) in entries:
            return current  # already revoked: nothing to sign
        entries[(code, serial)] = (now, reason[:200])
        version = (current.version + 1) if current is not None else 1
        data = sign_revocations(me.key, me.code, version, now, entries)
        crl = decode_revocations(data, chain_identities(me.chain, me.root, now)[-1], now)
        await tx.trust.put_revocations(me.code, version, data, now)
        await tx.audit.append(actor or me.code, "revoke.certificate", code,
                       {"serial": serial, "reason": reason[:200], "list_version": version}, now)
    me.trust.offer(crl, saved=True)
    return crl


# ---------------------------------------------------------------- receiver

async def persist_trust(store: ProtocolStore[ProtocolTx], me: Me, now: int, *, keys: bool) -> None:
    """Save what the trust state installed or saw since the last save, in a transaction of its own:
    newer revocation lists (audited) and, with ``keys``, the certificate keys seen. Whatever a failed
    save leaves stays pending for the next one. ``keys`` False after a rejected message: a rejection
    leaves the store as it was but for its audit entry and the revocation lists, which stand alone."""
    lists = list(me.trust.unsaved.values())
    new_keys = me.trust.pending_keys() if keys else []
    if not lists and not new_keys:
        return
    async with store.tx() as tx:
        for crl in lists:
            await tx.trust.put_revocations(crl.issuer, crl.version, crl.envelope, now)
            await tx.audit.append(me.code, "accept.revocations", crl.issuer,
                           {"version": crl.version, "revoked": [f"{c}#{s}" for c, s in sorted(crl.revoked)][:50]}, now)
        if new_keys:
            await tx.trust.put_keys(new_keys, now)
    me.trust.mark_saved(lists, new_keys)


async def audit_list_problems(store: ProtocolStore[ProtocolTx], me: Me, problems: list[EnvelopeError], now: int,
                              sender: str) -> None:
    """``sender``: who handed over the message that carried the lists (sync/refusals.py)."""
    await record_alone(store, me, [Occurrence(me.code, "reject.revocations", me.parent or "", sender, p.code,
                                              {"reason": str(p)[:500], "code": p.code}) for p in problems], now)


async def receive_trust_update(store: ProtocolStore[ProtocolTx], me: Me, data: bytes, now: int,
                               last: Pulse | None, sent_by: str = "") -> tuple[Pulse, int]:
    """Verify a parent's TrustUpdate; return the new pulse and how many newer revocation lists it
    brought. Raises EnvelopeError (audited, naming ``sent_by``: sync/refusals.py) if refused."""
    sent_by = sent_by or from_nats("hb." + ".".join(me.path[:-1]))
    installed: list[RevocationList] = []
    problems: list[EnvelopeError] = []
    try:
        if len(data) > me.limits.trust_update_bytes:
            raise EnvelopeError("信任更新过大 (trust update too large)", code="heartbeat.too_large")
        msg = pb.TrustUpdate()
        try:
            msg.ParseFromString(data)
        except DecodeError:
            raise EnvelopeError("信任更新无法解析 (malformed trust update)", code="heartbeat.malformed_update") from None
        signers = chain_identities(list(msg.certificate_chain), me.root, now, me.trust)
        sender = signers[-1]
        if sender.code != me.parent:
            raise EnvelopeError(f"信任更新由 {sender.code} 签发，不是本节点的上级 (not from this node's parent)",
                                code="heartbeat.not_parent")
        installed = accept_revocations(me.trust, list(msg.revocations), signers, now, problems)
        pulse = _verify_heartbeat(msg.heartbeat, sender.public_key, sender.code, now, last, me.code,
                                  me.limits.heartbeat_ttl_seconds)
        me.trust.check(sender)  # a list just installed may revoke the sender itself
    except (EnvelopeError, ArithmeticError) as exc:
        code = code_of(exc, "heartbeat.arithmetic")
        await persist_trust(store, me, now, keys=False)
        await audit_list_problems(store, me, problems, now, sent_by)
        await record_alone(store, me, [Occurrence(me.code, "reject.heartbeat", me.parent or "", sent_by, code,
                                                  {"reason": str(exc), "code": code, "bytes": len(data)})], now)
        raise EnvelopeError(str(exc), code=code) from None
    await persist_trust(store, me, now, keys=True)
    await audit_list_problems(store, me, problems, now, sent_by)
    return pulse, len(installed)


def _verify_heartbeat(data: bytes, key: Any, sender: str, now: int, last: Pulse | None, me: str,
                      max_ttl: int = MAX_HEARTBEAT_TTL) -> Pulse:
    hb = open_signed(data, PAYLOAD_HEARTBEAT, key, pb.Heartbeat(), "心跳无法解析 (malformed heartbeat)",
                     malformed_code="heartbeat.malformed")
    if hb.issuer_code != sender:
        raise EnvelopeError(f"心跳声明的签发者 {hb.issuer_code[:12]} 不是签名者 {sender} (issuer is not the signer)",
                            code="heartbeat.issuer_not_signer")
    if hb.issued_at > now + CLOCK_SKEW or not hb.issued_at < hb.expires_at <= hb.issued_at + max_ttl:
        raise EnvelopeError("心跳的时间无效 (heartbeat times are invalid)", code="heartbeat.bad_times")
    if hb.expires_at < now:
        raise EnvelopeError(f"心跳已于 {hb.expires_at} 过期 (stale heartbeat: expired)", code="heartbeat.stale")
    if last is not None and hb.issued_at < last.issued_at:  # equal: one second can carry several
        raise EnvelopeError(f"心跳早于已收到的心跳 (heartbeat replayed or out of date: {hb.issued_at} < {last.issued_at})",
                            code="heartbeat.replay")
    refs = tuple((f.cycle, f.unit_class, f.version, f.digest) for f in hb.frameworks[:1000])
    returned = tuple((r.bundle_id[:64], r.seq, r.reason[:500], r.returned_at) for r in hb.returned[:5000] if r.node == me)
    return Pulse(hb.issued_at, hb.expires_at, refs, hb.revocations_version, returned)
