"""Results sender: sign this node's result bundle, chain it to the previous one, queue it up.

Each bundle carries its sequence number and the id (payload hash) of this node's previous
bundle, so the parent can detect gaps and forks (docs/design.md rule 9).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal

from proto.appraisal.v1 import appraisal_pb2 as pb
from sync.approvals import Source, attach
from sync.codec import Bundle, encode_bundle
from sync.envelope import PAYLOAD_RESULTS, EnvelopeError, digest, sign
from sync.identity import Me
from sync.limits import DEFAULT_LIMITS
from sync.message_ids import message_id
from sync.ports import ProtocolStore, ProtocolTx

GENESIS = "0" * 64
MAX_PULL_BYTES = DEFAULT_LIMITS.pull_reply_bytes


async def send_bundle(tx: ProtocolTx, me: Me, *, cycle: str, period: str, framework_digest: str,
                      values: dict[str, Decimal], child_scores: tuple[tuple[str, Decimal, int], ...],
                      now: int, sources: Sequence[Source] = (), framework: bytes = b"",
                      provided: Mapping[str, Mapping[str, Decimal]] | None = None) -> str:
    """``sources``: the children's bundles these values were rolled up from; this node approves
    each one (a signature over its hash) and forwards it as evidence (sync/approvals.py), with
    ``framework``, the envelope of the framework it issued to them and rolled them up by, so the
    parent recomputes the values (sync/rollup_check.py). ``provided``: values this node's data
    providers entered about its units (approved here), which count over the units' own."""
    last = await tx.bundles.last(me.code)
    seq, prev = (last.seq + 1, last.id) if last is not None else (1, GENESIS)
    payload = encode_bundle(Bundle(me.code, cycle, period, framework_digest, seq, prev, values, child_scores, now,
                                   tuple((s.node, s.bundle_id) for s in sources),
                                   tuple((u, dict(v)) for u, v in sorted((provided or {}).items()) if v)))
    bundle_id = digest(payload)
    approvals, evidence = attach(me, sources, now)
    message = pb.ResultMessage(bundle=sign(PAYLOAD_RESULTS, payload, me.key), certificate_chain=list(me.chain),
                               approvals=approvals, evidence=evidence,
                               framework=framework if sources or provided else b"").SerializeToString()
    if len(message) > me.limits.message_bytes:
        raise EnvelopeError(f"结果消息 {len(message)} 字节，超过上限 {me.limits.message_bytes} (result message too large)",
                            code="results.too_large")
    await tx.bundles.put(bundle_id=bundle_id, node=me.code, cycle=cycle, period=period, seq=seq, prev_hash=prev,
                        framework_digest=framework_digest, message=message, now=now)
    if me.parent is not None:
        await tx.outbox.enqueue(me.results_subject(), message_id(bundle_id), message, now)
    await tx.audit.append(me.code, "send.results", bundle_id,
                   {"cycle": cycle, "period": period, "seq": seq, "values": len(values), "approved": len(sources)}, now)
    return bundle_id


async def bundles_for_parent(store: ProtocolStore[ProtocolTx], me: Me, requester: str, after_seq: int,
                             max_bytes: int = MAX_PULL_BYTES) -> list[bytes]:
    """This node's bundles after ``after_seq``, exactly as signed, for its parent only (gap repair).
    At most ``max_bytes`` (limits.pull_reply_bytes) in one reply; the parent asks again for the rest."""
    if requester != me.parent:
        return []
    async with store.read() as r:
        rows = await r.bundles.after(me.code, after_seq)
    out: list[bytes] = []
    size = 0
    for row in rows:
        size += len(row.message)
        if out and size > max_bytes:
            break
        out.append(row.message)
    return out
