"""Cascade sender: sign a framework, store it as issued, and queue it for the children.

The framework row and the outbox row commit in one transaction; the relay publishes later
and marks the row sent only after JetStream acknowledges it.
"""

from __future__ import annotations

from collections.abc import Sequence

from aggregator.framework import Framework
from proto.appraisal.v1 import appraisal_pb2 as pb
from sync.codec import encode_framework
from sync.envelope import PAYLOAD_FRAMEWORK, EnvelopeError, digest, sign
from sync.identity import Me
from sync.message_ids import message_id
from sync.ports import ProtocolTx


async def issue_framework(tx: ProtocolTx, me: Me, fw: Framework, upstream: list[bytes], now: int, *,
                          authored: bool = False, internal: bool = False, division_changes: Sequence[bytes] = ()) -> str:
    """Sign ``fw`` as ``me``; ``upstream`` are the framework envelopes it decomposes, root first.

    ``authored``: the office wrote it (rather than the node deriving it from the parent's).
    ``internal``: a framework for ``me``'s own departments (分类考评): stored signed, with the chain it
    decomposes, under role ``internal``, and queued for no one (no node receives it).
    ``division_changes``: the signed change lists (区划调整) this node holds, carried down with it."""
    payload = encode_framework(fw)
    envelope = sign(PAYLOAD_FRAMEWORK, payload, me.key)
    fw_digest = digest(payload)
    cascade = pb.CascadeMessage(frameworks=[*upstream, envelope], certificate_chain=list(me.chain),
                                revocations=[] if internal else me.trust.envelopes(me.path),
                                division_changes=[] if internal else list(division_changes)).SerializeToString()
    if len(cascade) > me.limits.message_bytes:
        raise EnvelopeError(f"下发消息 {len(cascade)} 字节，超过上限 {me.limits.message_bytes} (cascade message too large)",
                            code="cascade.too_large")
    await tx.frameworks.put(digest=fw_digest, issuer=fw.issuer, cycle=fw.cycle, unit_class=fw.unit_class,
                           version=fw.version, role="internal" if internal else "issued", envelope=envelope,
                           cascade=cascade, now=now, authored=authored)
    if not internal:
        await tx.outbox.enqueue(me.cascade_subject(), message_id(fw_digest), cascade, now)
    await tx.audit.append(me.code, "issue.framework.internal" if internal else "issue.framework", fw_digest,
                   {"cycle": fw.cycle, "class": fw.unit_class, "version": fw.version,
                    "units": [u.code for u in fw.units]}, now)
    return fw_digest
