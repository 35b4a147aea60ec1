"""Table definitions shared by the store and the Alembic migrations."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)

metadata = MetaData()

frameworks = Table(
    "frameworks", metadata,
    Column("digest", String(64), primary_key=True),
    Column("issuer", String(12), nullable=False),
    Column("cycle", String(16), nullable=False),
    Column("unit_class", String(64), nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("role", String(8), nullable=False),  # received | issued
    Column("envelope", LargeBinary, nullable=False),
    Column("cascade", LargeBinary, nullable=False),  # the CascadeMessage that carried / will carry it
    Column("received_at", BigInteger, nullable=False),
    # issued by this node from a file its office wrote (not derived automatically from the parent's)
    Column("authored", Boolean, nullable=False, server_default=false()),
    UniqueConstraint("issuer", "cycle", "unit_class", "version", name="uq_framework_version"),
)

results = Table(
    "results", metadata,
    Column("node", String(12), nullable=False),
    Column("cycle", String(16), nullable=False),
    Column("period", String(16), nullable=False),
    Column("framework_digest", String(64), nullable=False),
    Column("indicator", String(64), nullable=False),
    Column("value", String(64), nullable=False),
    Column("source", String(16), nullable=False),  # entered | reported | rolled_up
    Column("bundle_id", String(64), nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    PrimaryKeyConstraint("node", "cycle", "period", "framework_digest", "indicator", name="pk_results"),
)

bundles = Table(
    "bundles", metadata,
    Column("id", String(64), primary_key=True),
    Column("node", String(12), nullable=False),
    Column("cycle", String(16), nullable=False),
    Column("period", String(16), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("framework_digest", String(64), nullable=False),
    Column("message", LargeBinary, nullable=False),  # the ResultMessage as received / sent
    Column("received_at", BigInteger, nullable=False),
    # accepted | rejected (content) | pending (held for review) | returned (sent back for correction)
    Column("status", String(16), nullable=False, server_default="accepted"),
    Column("reason", Text, nullable=False, server_default=""),
    Column("reviewer", String(64), nullable=False, server_default=""),  # who approved it; "" on receipt
    Column("reviewed_at", BigInteger, nullable=False, server_default="0"),
    UniqueConstraint("node", "seq", name="uq_bundle_seq"),
)

scores = Table(
    "scores", metadata,
    Column("unit", String(12), nullable=False),
    Column("cycle", String(16), nullable=False),
    Column("period", String(16), nullable=False),
    Column("framework_digest", String(64), nullable=False),
    Column("score", String(32), nullable=False),
    Column("rank", Integer, nullable=False),
    Column("explanation", Text, nullable=False),
    PrimaryKeyConstraint("unit", "cycle", "period", "framework_digest", name="pk_scores"),
)

assessments = Table(
    "assessments", metadata,
    Column("unit", String(12), nullable=False),
    Column("cycle", String(16), nullable=False),
    Column("period", String(16), nullable=False),
    Column("document", Text, nullable=False),  # canonical JSON: ratings, surveys, milestones, events, previous
    Column("updated_at", BigInteger, nullable=False),
    PrimaryKeyConstraint("unit", "cycle", "period", name="pk_assessments"),
)

inbox = Table(
    "inbox", metadata,
    Column("origin", String(12), nullable=False),
    Column("msg_id", String(128), nullable=False),
    Column("received_at", BigInteger, nullable=False),
    PrimaryKeyConstraint("origin", "msg_id", name="pk_inbox"),
)

outbox = Table(
    "outbox", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("subject", String(255), nullable=False),
    Column("msg_id", String(128), nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("sent_at", BigInteger, nullable=True),
)

audit_log = Table(
    "audit_log", metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("at", BigInteger, nullable=False),
    Column("actor", String(64), nullable=False),
    Column("action", String(64), nullable=False),
    Column("subject", String(255), nullable=False),
    Column("detail", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

# Refusals counted per (sender, action, code) (sync/refusals.py). ``total`` is every occurrence
# ever; ``pending`` those not yet folded into the chain as a summary entry; ``window_start`` opened
# the current window with a full entry. Not hashed: the chain carries the counts once folded.
audit_counters = Table(
    "audit_counters", metadata,
    Column("sender", String(255), nullable=False),
    Column("action", String(64), nullable=False),
    Column("code", String(64), nullable=False),
    Column("total", BigInteger, nullable=False),
    Column("pending", BigInteger, nullable=False),
    Column("window_start", BigInteger, nullable=False),
    Column("last_at", BigInteger, nullable=False),
    Column("last_subject", String(255), nullable=False),
    Column("last_detail", Text, nullable=False),
    PrimaryKeyConstraint("sender", "action", "code", name="pk_audit_counters"),
)

# The last audit entry whose chain was verified from genesis (one row): later checks start there.
audit_checkpoint = Table(
    "audit_checkpoint", metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
    Column("verified_at", BigInteger, nullable=False),
)

revocation_lists = Table(
    "revocation_lists", metadata,
    Column("issuer", String(12), primary_key=True),  # the latest list in force per issuer
    Column("version", BigInteger, nullable=False),
    Column("envelope", LargeBinary, nullable=False),  # exactly as signed, to forward
    Column("received_at", BigInteger, nullable=False),
)

node_keys = Table(
    "node_keys", metadata,
    Column("code", String(12), nullable=False),
    Column("serial", BigInteger, nullable=False),
    Column("keyid", String(64), nullable=False),
    Column("issuer", String(12), nullable=False),
    Column("previous_keyid", String(64), nullable=False),
    Column("seen_at", BigInteger, nullable=False),
    PrimaryKeyConstraint("code", "serial", name="pk_node_keys"),
)

node_reports = Table(
    "node_reports", metadata,
    Column("node", String(12), primary_key=True),  # the newest report held per descendant
    Column("via", String(12), nullable=False),  # the child whose report carried it; "" when sent by its node
    Column("reported_at", BigInteger, nullable=False),
    Column("audit_seq", BigInteger, nullable=False),  # its audit chain head: the anchor kept outside it
    Column("audit_hash", String(64), nullable=False),
    Column("message", LargeBinary, nullable=False),  # the ReportMessage exactly as signed, to forward
    Column("received_at", BigInteger, nullable=False),
)
