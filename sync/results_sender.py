"""Results sender: sign this node's result bundle, chain it to the previous one, queue it up.

Each bundle carries its sequence number and the id (payload hash) of this node's previous
bundle, so the parent can detect gaps and forks (DESIGN.md rule 9).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any, Protocol

from proto.appraisal.v1 import appraisal_pb2 as pb
from sync.approvals import Source, attach
from sync.codec import Bundle, encode_bundle
from sync.envelope import MAX_MESSAGE_BYTES, PAYLOAD_RESULTS, EnvelopeError, digest, sign
from sync.identity import Me

GENESIS = "0" * 64
MAX_PULL_BYTES = 4 * 1024 * 1024  # of bundles in one FetchBundles reply (gRPC messages are capped at 8 MB)


class SendTx(Protocol):
    async def last_bundle(self, node: str) -> Any: ...
    async def put_bundle(self, *, bundle_id: str, node: str, cycle: str, period: str, seq: int, prev_hash: str,
                         framework_digest: str, message: bytes, now: int) -> None: ...
    async def enqueue(self, subject: str, msg_id: str, payload: bytes, now: int) -> None: ...
    async def audit(self, actor: str, action: str, subject: str, detail: dict[str, object], now: int) -> None: ...


async def send_bundle(tx: SendTx, me: Me, *, cycle: str, period: str, framework_digest: str,
                      values: dict[str, Decimal], child_scores: tuple[tuple[str, Decimal, int], ...],
                      now: int, sources: Sequence[Source] = ()) -> str:
    """``sources``: the children's bundles these values were rolled up from; this node approves
    each one (a signature over its hash) and forwards it as evidence (sync/approvals.py)."""
    last = await tx.last_bundle(me.code)
    seq, prev = (last.seq + 1, last.id) if last is not None else (1, GENESIS)
    payload = encode_bundle(Bundle(me.code, cycle, period, framework_digest, seq, prev, values, child_scores, now,
                                   tuple((s.node, s.bundle_id) for s in sources)))
    bundle_id = digest(payload)
    approvals, evidence = attach(me, sources, now)
    message = pb.ResultMessage(bundle=sign(PAYLOAD_RESULTS, payload, me.key), certificate_chain=list(me.chain),
                               approvals=approvals, evidence=evidence).SerializeToString()
    if len(message) > MAX_MESSAGE_BYTES:
        raise EnvelopeError(f"结果消息 {len(message)} 字节，超过上限 {MAX_MESSAGE_BYTES} (result message too large)",
                            code="results.too_large")
    await tx.put_bundle(bundle_id=bundle_id, node=me.code, cycle=cycle, period=period, seq=seq, prev_hash=prev,
                        framework_digest=framework_digest, message=message, now=now)
    if me.parent is not None:
        await tx.enqueue(me.results_subject(), bundle_id, message, now)
    await tx.audit(me.code, "send.results", bundle_id,
                   {"cycle": cycle, "period": period, "seq": seq, "values": len(values), "approved": len(sources)}, now)
    return bundle_id


class BundleSource(Protocol):
    def read(self) -> Any: ...


async def bundles_for_parent(store: BundleSource, me: Me, requester: str, after_seq: int) -> list[bytes]:
    """This node's bundles after ``after_seq``, exactly as signed, for its parent only (gap repair).
    At most :data:`MAX_PULL_BYTES` in one reply; the parent asks again for the rest."""
    if requester != me.parent:
        return []
    async with store.read() as r:
        rows = await r.bundles_after(me.code, after_seq)
    out: list[bytes] = []
    size = 0
    for row in rows:
        size += len(row.message)
        if out and size > MAX_PULL_BYTES:
            break
        out.append(row.message)
    return out
