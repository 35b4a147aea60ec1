"""What the protocol roles need from a store: typed records and narrow repository Protocols.

``sync/`` defines these ports and ``nodes/repositories/`` implements them over SQLAlchemy
(SQLite and PostgreSQL), so the protocol code is typed for real without importing the node.
A receiver asks for a transaction that offers just the repositories it uses; the node's ``Tx``
offers all of them (docs/design.md §6).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from sync.approvals import Source
from sync.trust import CertInfo


@dataclass(frozen=True, slots=True)
class FrameworkRecord:
    digest: str
    issuer: str
    cycle: str
    unit_class: str
    version: int
    role: str  # received | issued
    envelope: bytes
    cascade: bytes  # the CascadeMessage that carried it (received) or will carry it (issued)
    received_at: int
    authored: bool  # issued from a file the office wrote, not derived from the parent's


@dataclass(frozen=True, slots=True)
class BundleHeader:
    """A bundle's place in its sender's chain and its review state, without its bytes."""

    id: str
    node: str
    cycle: str
    period: str
    seq: int
    prev_hash: str
    framework_digest: str
    received_at: int
    status: str  # accepted | rejected | pending | returned
    reason: str
    reviewer: str
    reviewed_at: int


@dataclass(frozen=True, slots=True)
class BundleRecord(BundleHeader):
    message: bytes  # the ResultMessage exactly as received or sent


@dataclass(frozen=True, slots=True)
class OutboxRecord:
    id: int
    subject: str
    msg_id: str
    payload: bytes
    created_at: int
    sent_at: int | None


@dataclass(frozen=True, slots=True)
class AuditRecord:
    seq: int
    at: int
    actor: str
    action: str
    subject: str
    detail: str  # canonical JSON text, exactly as hashed
    prev_hash: str
    hash: str


@dataclass(frozen=True, slots=True)
class ResultRecord:
    node: str
    cycle: str
    period: str
    framework_digest: str
    indicator: str
    value: str
    source: str  # entered | reported | rolled_up
    bundle_id: str
    updated_at: int


@dataclass(frozen=True, slots=True)
class RevocationRecord:
    issuer: str
    version: int
    envelope: bytes
    received_at: int


@dataclass(frozen=True, slots=True)
class KeyRecord:
    code: str
    serial: int
    keyid: str
    issuer: str
    previous_keyid: str
    seen_at: int


AuditEntry = tuple[str, str, str, Mapping[str, Any]]  # actor, action, subject, detail


@dataclass(frozen=True, slots=True)
class Occurrence:
    """A refusal, replay or gap to record (sync/refusals.py): counted per (sender, action, code), so
    a flood of identical ones adds a bounded number of audit entries and loses no count."""

    actor: str
    action: str
    subject: str
    sender: str  # who handed it over: "nats:<subject>" or "grpc:<caller>"
    code: str
    detail: Mapping[str, Any]
ValueKey = tuple[str, str, str, str, str]  # node, cycle, period, framework digest, indicator


class InboxRepo(Protocol):
    async def seen(self, origin: str, msg_id: str) -> bool: ...
    async def remember(self, origin: str, msg_id: str, now: int) -> None: ...
    async def remember_many(self, pairs: Sequence[tuple[str, str]], now: int) -> None: ...
    async def known_bundles(self, pairs: Sequence[tuple[str, str]]) -> set[str]: ...


class OutboxRepo(Protocol):
    async def enqueue(self, subject: str, msg_id: str, payload: bytes, now: int) -> None: ...


class AuditRepo(Protocol):
    async def append(self, actor: str, action: str, subject: str, detail: Mapping[str, Any], now: int) -> None: ...
    async def append_many(self, entries: Sequence[AuditEntry], now: int) -> None: ...
    async def record(self, occurrences: Sequence[Occurrence], now: int, window: int) -> None: ...


class FrameworkRepo(Protocol):
    async def put(self, *, digest: str, issuer: str, cycle: str, unit_class: str, version: int, role: str,
                  envelope: bytes, cascade: bytes, now: int, authored: bool = False) -> None: ...
    async def get(self, digest: str) -> FrameworkRecord | None: ...
    async def latest(self, issuer: str, cycle: str, unit_class: str) -> FrameworkRecord | None: ...


class BundleRepo(Protocol):
    async def last(self, node: str) -> BundleRecord | None: ...
    async def after(self, node: str, after_seq: int, limit: int = 1000) -> list[BundleRecord]: ...
    async def put(self, *, bundle_id: str, node: str, cycle: str, period: str, seq: int, prev_hash: str,
                  framework_digest: str, message: bytes, now: int, status: str = "accepted",
                  reason: str = "") -> None: ...
    async def put_many(self, rows: Sequence[Mapping[str, Any]], now: int) -> None: ...


class ResultRepo(Protocol):
    async def put_reported(self, values: Mapping[ValueKey, Mapping[str, str]], now: int) -> None: ...
    async def sources(self, cycle: str, period: str, framework_digest: str, nodes: Iterable[str]) -> list[Source]: ...


class TrustRepo(Protocol):
    async def put_revocations(self, issuer: str, version: int, envelope: bytes, now: int) -> None: ...
    async def put_keys(self, infos: Sequence[CertInfo], now: int) -> None: ...


class ProtocolTx(Protocol):
    """A transaction (or read-only connection) offering what the protocol roles use."""

    @property
    def inbox(self) -> InboxRepo: ...
    @property
    def outbox(self) -> OutboxRepo: ...
    @property
    def audit(self) -> AuditRepo: ...
    @property
    def frameworks(self) -> FrameworkRepo: ...
    @property
    def bundles(self) -> BundleRepo: ...
    @property
    def results(self) -> ResultRepo: ...
    @property
    def trust(self) -> TrustRepo: ...


TxCo_co = TypeVar("TxCo_co", bound=ProtocolTx, covariant=True)
TxT = TypeVar("TxT", bound=ProtocolTx)  # for functions that hand the store's own Tx to a callback


class ProtocolStore(Protocol[TxCo_co]):
    """A store whose transactions offer at least :class:`ProtocolTx` (the node's ``Tx`` offers more)."""

    def tx(self) -> AbstractAsyncContextManager[TxCo_co]: ...
    def read(self) -> AbstractAsyncContextManager[TxCo_co]: ...
