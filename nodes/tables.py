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

# People who work in this node's web application (issue 10). ``roles`` and the scope lists are JSON
# arrays; an empty scope list means the whole node. ``password_hash`` is Argon2id ("" = no password
# login: OIDC only, or never set). ``must_change``: the password was set by someone else (add, reset).
users = Table(
    "users", metadata,
    Column("login", String(64), primary_key=True),
    Column("name", String(64), nullable=False),
    Column("org", String(64), nullable=False, server_default=""),  # the department or unit the person works for
    Column("roles", Text, nullable=False),
    Column("units", Text, nullable=False, server_default="[]"),
    Column("indicators", Text, nullable=False, server_default="[]"),
    Column("password_hash", Text, nullable=False, server_default=""),
    Column("must_change", Boolean, nullable=False, server_default=false()),
    Column("oidc_subject", String(255), nullable=False, server_default=""),
    Column("disabled", Boolean, nullable=False, server_default=false()),
    Column("failed_logins", Integer, nullable=False, server_default="0"),
    Column("locked_until", BigInteger, nullable=False, server_default="0"),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

# Signed-in browser sessions: only the SHA-256 of the cookie's token is kept, so a copy of the store
# does not let anyone sign in. ``csrf`` is the synchroniser token every form and htmx request carries.
sessions = Table(
    "sessions", metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("login", String(64), nullable=False, index=True),
    Column("csrf", String(64), nullable=False),
    Column("via", String(16), nullable=False),  # password | oidc
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Column("last_seen", BigInteger, nullable=False),
)

# --- Data intake (issue 10): the task book, entry windows, entries under review, evidence files.

# 任务书: who enters which key for which unit in a cycle. ``provider`` is an org ("区统计局"), or ""
# for the evaluated unit itself; ``frequency`` M/Q/H/Y; ``confirm``: the evaluated unit confirms or
# objects before the office's reviewer decides; ``minimum``/``maximum`` bound what may be entered.
tasks = Table(
    "tasks", metadata,
    Column("cycle", String(16), nullable=False),
    Column("unit", String(32), nullable=False),
    Column("indicator", String(64), nullable=False),
    Column("provider", String(64), nullable=False),
    Column("frequency", String(1), nullable=False),
    Column("confirm", Boolean, nullable=False, server_default=false()),
    Column("minimum", String(64), nullable=False, server_default=""),
    Column("maximum", String(64), nullable=False, server_default=""),
    Column("updated_at", BigInteger, nullable=False),
    Column("updated_by", String(64), nullable=False),
    PrimaryKeyConstraint("cycle", "unit", "indicator", name="pk_tasks"),
)

# Each period's entry window: open from ``opens_at``, due at ``due_at``; after it only with an unlock.
task_periods = Table(
    "task_periods", metadata,
    Column("cycle", String(16), nullable=False),
    Column("period", String(16), nullable=False),
    Column("opens_at", BigInteger, nullable=False),
    Column("due_at", BigInteger, nullable=False),
    PrimaryKeyConstraint("cycle", "period", name="pk_task_periods"),
)

task_unlocks = Table(
    "task_unlocks", metadata,
    Column("cycle", String(16), nullable=False),
    Column("period", String(16), nullable=False),
    Column("provider", String(64), nullable=False),
    Column("until", BigInteger, nullable=False),
    Column("by", String(64), nullable=False),
    Column("reason", Text, nullable=False),
    PrimaryKeyConstraint("cycle", "period", "provider", name="pk_task_unlocks"),
)

# One cell's working state: what was entered, by whom, where it is in review, and the value last
# approved (what a change after approval is compared with).
entries = Table(
    "entries", metadata,
    Column("cycle", String(16), nullable=False),
    Column("period", String(16), nullable=False),
    Column("unit", String(32), nullable=False),
    Column("key", String(64), nullable=False),
    Column("value", String(64), nullable=False),
    Column("comment", Text, nullable=False, server_default=""),
    Column("status", String(16), nullable=False),
    Column("provider", String(64), nullable=False),
    Column("entered_by", String(64), nullable=False),
    Column("entered_at", BigInteger, nullable=False),
    Column("submitted_at", BigInteger, nullable=False, server_default="0"),
    Column("late", Boolean, nullable=False, server_default=false()),
    Column("decided_by", String(64), nullable=False, server_default=""),
    Column("decided_at", BigInteger, nullable=False, server_default="0"),
    Column("reason", Text, nullable=False, server_default=""),
    Column("approved_value", String(64), nullable=False, server_default=""),
    PrimaryKeyConstraint("cycle", "period", "unit", "key", name="pk_entries"),
)

# Every step of every cell, never updated: the diff of each change is (before, value).
entry_history = Table(
    "entry_history", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("cycle", String(16), nullable=False),
    Column("period", String(16), nullable=False),
    Column("unit", String(32), nullable=False),
    Column("key", String(64), nullable=False),
    Column("at", BigInteger, nullable=False),
    Column("actor", String(64), nullable=False),
    Column("action", String(16), nullable=False),  # save | submit | confirm | object | approve | return
    Column("before", String(64), nullable=False),
    Column("value", String(64), nullable=False),
    Column("note", Text, nullable=False),
)

# 台账 evidence files, stored once under their SHA-256, linked to the cells they support.
attachments = Table(
    "attachments", metadata,
    Column("sha256", String(64), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("content_type", String(128), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("data", LargeBinary, nullable=False),
    Column("uploaded_by", String(64), nullable=False),
    Column("uploaded_at", BigInteger, nullable=False),
)

attachment_links = Table(
    "attachment_links", metadata,
    Column("sha256", String(64), nullable=False),
    Column("cycle", String(16), nullable=False),
    Column("period", String(16), nullable=False),
    Column("unit", String(32), nullable=False),
    Column("key", String(64), nullable=False),
    PrimaryKeyConstraint("sha256", "cycle", "period", "unit", "key", name="pk_attachment_links"),
)

# --- The close of the year (issue 11): publication, appeals, rectification, public comments,
# results use, feedback reports.

# Every signed version of a node's published results (公示 → final), never updated: a later change
# is a new version naming the previous one. ``role``: own (this node published it) | received (a
# child's final results, sent up in its report). ``proof``: the PublicationProof to download ("" for
# received ones, whose evidence stays at the child).
publications = Table(
    "publications", metadata,
    Column("digest", String(64), primary_key=True),
    Column("node", String(12), nullable=False),
    Column("cycle", String(16), nullable=False),
    Column("period", String(16), nullable=False),
    Column("unit_class", String(64), nullable=False),
    Column("framework_digest", String(64), nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("state", String(12), nullable=False),  # publicity | final
    Column("public", Boolean, nullable=False, server_default=false()),
    Column("opens_at", BigInteger, nullable=False, server_default="0"),
    Column("closes_at", BigInteger, nullable=False, server_default="0"),
    Column("reason", Text, nullable=False, server_default=""),
    Column("role", String(8), nullable=False),
    Column("envelope", LargeBinary, nullable=False),
    Column("proof", LargeBinary, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("created_by", String(64), nullable=False),
    UniqueConstraint("node", "cycle", "period", "unit_class", "version", name="uq_publication_version"),
)

# 申诉/复核: an evaluated unit's appeal against one value, score or grade of a publication.
appeals = Table(
    "appeals", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("cycle", String(16), nullable=False),
    Column("period", String(16), nullable=False),
    Column("unit", String(32), nullable=False),
    Column("publication", String(64), nullable=False),  # the publication's digest appealed against
    Column("target", String(8), nullable=False),  # value | score | grade
    Column("indicator", String(64), nullable=False, server_default=""),  # value: the key
    Column("reason", Text, nullable=False),
    Column("evidence", Text, nullable=False, server_default="[]"),  # JSON array of attachment sha256
    Column("status", String(12), nullable=False),  # filed | assigned | upheld | partly | rejected | withdrawn
    Column("filed_by", String(64), nullable=False),
    Column("filed_at", BigInteger, nullable=False),
    Column("decide_by", BigInteger, nullable=False, server_default="0"),  # the deadline for a decision
    Column("reviewer", String(64), nullable=False, server_default=""),
    Column("assigned_by", String(64), nullable=False, server_default=""),
    Column("assigned_at", BigInteger, nullable=False, server_default="0"),
    Column("decision", Text, nullable=False, server_default=""),  # the reason given with the decision
    Column("decided_by", String(64), nullable=False, server_default=""),
    Column("decided_at", BigInteger, nullable=False, server_default="0"),
    Column("before", Text, nullable=False, server_default="{}"),  # JSON: value/score/rank/grade when filed
    Column("after", Text, nullable=False, server_default="{}"),  # JSON: the same after the correction
)

# 整改: one rectification item of a unit, from a weak indicator, an appeal, a public comment or the office.
rectifications = Table(
    "rectifications", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("cycle", String(16), nullable=False),
    Column("unit", String(32), nullable=False),
    Column("source", String(8), nullable=False),  # weak | appeal | comment | office | carried
    Column("ref", String(64), nullable=False, server_default=""),  # indicator code, appeal or comment id
    Column("title", Text, nullable=False),
    Column("measure", Text, nullable=False, server_default=""),  # what the unit will do (整改措施)
    Column("owner", String(64), nullable=False),  # the person or office responsible
    Column("deadline", BigInteger, nullable=False),
    Column("status", String(8), nullable=False),  # open | review (closure asked) | done | carried
    Column("evidence", Text, nullable=False, server_default="[]"),  # JSON array of attachment sha256
    Column("closure", Text, nullable=False, server_default=""),  # how it was closed
    Column("created_by", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("closed_by", String(64), nullable=False, server_default=""),
    Column("closed_at", BigInteger, nullable=False, server_default="0"),
    Column("carried_from", Integer, nullable=False, server_default="0"),  # the item of last year it continues
)

# 公众评议: a comment from the public about a unit, routed to it; the unit answers each one.
public_comments = Table(
    "public_comments", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("cycle", String(16), nullable=False),
    Column("unit", String(32), nullable=False),
    Column("body", Text, nullable=False),
    Column("contact", String(128), nullable=False, server_default=""),
    Column("sender", String(64), nullable=False),  # a hash of the address it came from (rate limits, not identity)
    Column("created_at", BigInteger, nullable=False),
    Column("status", String(8), nullable=False),  # new | answered | hidden
    Column("answer", Text, nullable=False, server_default=""),
    Column("answered_by", String(64), nullable=False, server_default=""),
    Column("answered_at", BigInteger, nullable=False, server_default="0"),
    Column("rectification", Integer, nullable=False, server_default="0"),  # the item it became, if any
)

# 结果运用: signed lists produced by the node's rules from final publications.
use_lists = Table(
    "use_lists", metadata,
    Column("digest", String(64), primary_key=True),
    Column("cycle", String(16), nullable=False),
    Column("list", String(32), nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("envelope", LargeBinary, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("created_by", String(64), nullable=False),
    UniqueConstraint("cycle", "list", "version", name="uq_use_list_version"),
)

# 绩效报告: the PDF of each unit's feedback report, generated in batch from a publication.
feedback_reports = Table(
    "feedback_reports", metadata,
    Column("cycle", String(16), nullable=False),
    Column("period", String(16), nullable=False),
    Column("unit", String(32), nullable=False),
    Column("publication", String(64), nullable=False),
    Column("pdf", LargeBinary, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("generated_at", BigInteger, nullable=False),
    Column("generated_by", String(64), nullable=False),
    PrimaryKeyConstraint("cycle", "period", "unit", name="pk_feedback_reports"),
)

# 区划调整: every signed change list this node accepted (from its ancestors, or issued itself), exactly
# as signed. ``position`` is the acceptance order, which the node replays at start: it is the order the
# lists were judged in, so a restart judges them the same way.
division_changes = Table(
    "division_changes", metadata,
    Column("position", Integer, primary_key=True, autoincrement=True),
    Column("issuer", String(12), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("digest", String(64), nullable=False),
    Column("envelope", LargeBinary, nullable=False),
    Column("sender", String(128), nullable=False),  # who handed it over ("self" for a list this node issued)
    Column("accepted_at", BigInteger, nullable=False),
    # the base tree the lineage was replayed from when it was accepted (e.g. "nbs-2023"): a restart
    # replays from the same one, even after a newer division table was loaded
    Column("base", String(32), nullable=False),
    UniqueConstraint("issuer", "seq", name="uq_division_change_seq"),
)
