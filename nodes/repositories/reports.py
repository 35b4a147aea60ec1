"""Descendants' signed status reports (sync/reports.py): the newest one held per node."""

from __future__ import annotations

from collections.abc import Sequence
from hashlib import sha256

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from nodes.repositories._sql import upsert
from nodes.tables import node_reports
from sync.reports import Report, parse_stored


class ReportRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def put_newer(self, reports: Sequence[Report], now: int) -> list[Report]:
        """Keep each report unless one at least as new is held (an older one forwarded again
        must not turn a descendant's state back); returns those kept."""
        held = await self.reported_at([r.node for r in reports])
        kept = [r for r in reports if r.reported_at > held.get(r.node, 0)]
        rows = [{"node": r.node, "via": r.via, "reported_at": r.reported_at, "audit_seq": r.audit_seq,
                 "audit_hash": r.audit_hash, "message": r.message, "received_at": now} for r in kept]
        await upsert(self.conn, node_reports, rows, ["node"],
                     ["via", "reported_at", "audit_seq", "audit_hash", "message", "received_at"])
        return kept

    async def digests(self) -> dict[str, bytes]:
        """Per descendant, the SHA-256 of the report held."""
        q = select(node_reports.c.node, node_reports.c.message)
        return {str(n): sha256(bytes(m)).digest() for n, m in await self.conn.execute(q)}

    async def reported_at(self, nodes: Sequence[str]) -> dict[str, int]:
        q = select(node_reports.c.node, node_reports.c.reported_at).where(node_reports.c.node.in_(list(nodes)))
        return {str(n): int(t) for n, t in await self.conn.execute(q)}

    async def all(self) -> dict[str, Report]:
        q = select(node_reports.c.node, node_reports.c.via, node_reports.c.message)
        return {str(n): parse_stored(bytes(m), str(v)) for n, v, m in await self.conn.execute(q)}

    async def message(self, node: str) -> bytes | None:
        q = select(node_reports.c.message).where(node_reports.c.node == node)
        found = (await self.conn.execute(q)).scalar_one_or_none()
        return None if found is None else bytes(found)

    async def direct(self) -> list[bytes]:
        """The children's own reports (not those they forwarded), to forward up in this node's report."""
        q = select(node_reports.c.message).where(node_reports.c.via == "").order_by(node_reports.c.node)
        return [bytes(m) for (m,) in await self.conn.execute(q)]
