"""Refusals, replays and gaps: who handed each one over, and how they are counted (docs/design.md §4.6).

Every such message is recorded with its **sender**, the party the transport vouches for, not what
the bytes claim: ``nats:<subject>`` (NATS permissions let only its owner publish there) or
``grpc:<caller>`` (the mutual-TLS certificate's node code; without TLS the caller's host). When the
envelope verified, the entry also names its ``signer``.

They are counted per (sender, action, code) by :meth:`sync.ports.AuditRepo.record`: the first in a
window of ``limits.audit_repeat_seconds`` is a full audit entry, the rest of that window one summary
entry carrying their count, so a flood adds a bounded number of entries and the count stays exact.
"""

from __future__ import annotations

from collections.abc import Sequence

from sync.identity import Me
from sync.ports import Occurrence, ProtocolStore, ProtocolTx

REPLAYED = "replay.results"  # a bundle already taken, sent again: not a refusal, but counted
OUT_OF_SEQUENCE = "gap.results"  # a bundle ahead of the chain: taken later (redelivery or gap repair), counted now
KINDS = ("replay", "gap", "fork", "rejected")  # the metric's kinds (nodes/services/metrics.py)


def from_nats(subject: str) -> str:
    return "nats:" + subject


def from_grpc(caller: str) -> str:
    return "grpc:" + (caller or "unknown")


def sender_of(transport_subject: str | None, peer: str) -> str:
    """A NATS message's subject, else the gRPC peer it came from."""
    return from_nats(transport_subject) if transport_subject is not None else from_grpc(peer)


def kind(action: str, code: str) -> str:
    """What an occurrence counts as in the metrics: replay, gap, fork or (any other refusal) rejected."""
    if action == REPLAYED:
        return "replay"
    if action == OUT_OF_SEQUENCE:
        return "gap"
    return "fork" if code.endswith(".fork") else "rejected"


async def record(tx: ProtocolTx, me: Me, occurrences: Sequence[Occurrence], now: int) -> None:
    """Record in the caller's transaction."""
    await tx.audit.record(occurrences, now, me.limits.audit_repeat_seconds)


async def record_alone(store: ProtocolStore[ProtocolTx], me: Me, occurrences: Sequence[Occurrence], now: int) -> None:
    """Record in a transaction of its own: a refused message changes nothing else."""
    if occurrences:
        async with store.tx() as tx:
            await record(tx, me, occurrences, now)
