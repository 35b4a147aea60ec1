"""Every limit of a node in one typed, documented object (docs/design.md §8).

A node's configuration may override any field under ``limits:`` (``nodes/config.py``); the
defaults below are what the tests and the demo run with. Services receive the object from the
composition root (``nodes/runtime.py``); protocol code reads it from :class:`sync.identity.Me`.

Limits that every node must agree on are constants, not settings: three delegations below the
province (four levels, ``sync/trust.py``), one envelope's size (``sync/envelope.py``), and the wire
decoders' counts (2,000 indicators per framework, 5,000 values per bundle, ``sync/codec.py``), and
the items of one assessment body (500, ``nodes/assessments.py``; the gateway's schema states it).
Gap repair needs no retry loop: a gap is pulled once, and the stream's redelivery asks again.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

MiB = 1024 * 1024
GiB = 1024 * MiB
DAY = 86_400


@dataclass(frozen=True)
class Limits:
    # --- sizes of what other nodes send
    message_bytes: int = 7 * MiB
    """One NATS message: a cascade (up to three frameworks and their certificates) or a result
    message with its evidence; the NATS servers run with ``max_payload`` 8 MB."""
    grpc_message_bytes: int = 8 * MiB
    """One gRPC message, either way."""
    pull_reply_bytes: int = 4 * MiB
    """Bundles in one FetchBundles reply (gap repair); the parent asks again for the rest."""
    trust_update_bytes: int = 8 * MiB
    """One heartbeat with its revocation lists."""
    units: int = 10_000
    """Units in one framework."""
    evidence: int = 5_000
    """Source bundles a roll-up may carry as evidence."""
    heartbeat_ttl_seconds: int = 24 * 3600
    """The longest validity a parent may give its heartbeat."""

    # --- batching and retries
    fetch_batch: int = 64
    """Messages per JetStream fetch; the results receiver takes a batch in one transaction."""
    max_deliveries: int = 30
    """Deliveries of one stream message before it is given up (audited, shown in status)."""
    redelivery_seconds: float = 2.0
    """Pause before a message that could not be settled yet is delivered again."""
    retry_initial_seconds: float = 0.5
    """First pause of every retry loop (outbox relay, catch-up, NATS subscribe and fetch)."""
    retry_cap_seconds: float = 5.0
    """Longest pause of a retry loop; the pause doubles up to it, with jitter."""
    catch_up_attempts: int = 20
    """Attempts to reach the parent for frameworks missed before the loop gives up (audited)."""
    catch_up_grace_seconds: float = 2.0
    """How long a framework a heartbeat names may take to come by its stream before the node asks its
    parent for it over gRPC."""

    # --- queries
    query_rate: float = 20.0
    """gRPC queries a second per calling node (token bucket)."""
    query_burst: int = 40
    """Burst of gRPC queries per calling node."""
    query_timeout_seconds: float = 3.0
    """Per child, for a forwarded drill-down query."""
    rpc_timeout_seconds: float = 5.0
    """A catch-up call to the parent (FetchFrameworks)."""
    pull_timeout_seconds: float = 10.0
    """One FetchBundles call of gap repair (up to ``pull_reply_bytes`` of bundles)."""
    query_depth: int = 3
    """Levels a drill-down descends from this node; a deeper request is answered to this depth."""
    store_connections: int = 5
    """Database connections a node holds open, and never more: a busy node queues for one instead of
    opening and closing extra ones (a thread and three PRAGMAs each on SQLite), and fifteen nodes on one
    PostgreSQL server stay well inside its default of 100 clients."""

    # --- the audit log
    audit_repeat_seconds: int = 300
    """Identical refusals (same sender, action and code) in this window are one full audit entry
    plus one summary entry with their count (sync/refusals.py), not one entry each."""

    # --- the close of the year
    appeal_decide_days: int = 10
    """Days after a publicity window closes within which the assigned reviewer decides an appeal
    (申诉/复核); the office may extend one appeal's deadline, audited."""

    # --- the JetStream streams FA_CASCADE and FA_RESULTS, on each server. They apply where streams are
    # made: by the operator (``appraise deploy nats-streams``, from ``nodes.natsconf`` plans), the demo's
    # launcher, or a node on a server where it may create streams (tests). A full stream refuses new
    # messages (discard new, per subject too): the sender's outbox keeps the row pending and says why,
    # so nothing a parent has not yet consumed is ever dropped to make room.
    stream_max_bytes: int = 1 * GiB
    """Bytes one stream may hold; both streams together bound what the nodes can put on a server's
    disk (JetStream reserves this much when the stream is created)."""
    stream_max_msgs: int = 1_000_000
    """Messages one stream may hold."""
    stream_max_msgs_per_subject: int = 10_000
    """Messages one subject may hold, i.e. one node's cascades or one node's results: a node flooding its
    own subject is refused after this many, and the other subjects go on. (NATS has no per-subject byte
    limit: a node sending the largest messages is bounded by ``stream_max_bytes`` only.)"""
    stream_max_age_seconds: int = 90 * DAY
    """Age at which a stored message is removed, consumed or not. Consumed messages are kept until then
    (limits retention), so this is what frees room; one that a parent missed for longer is recovered over
    gRPC (catch-up for frameworks, gap repair for bundles, docs/design.md §3.3)."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"limits.{f.name} 应为正数，实为 {value!r} (must be a positive number)")

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def kinds(cls) -> dict[str, type]:
        return {f.name: (float if f.type in ("float", float) else int) for f in fields(cls)}


DEFAULT_LIMITS = Limits()
