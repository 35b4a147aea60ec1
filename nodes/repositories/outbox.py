"""Outbox: messages committed with their effect, published later, marked sent on acknowledgement."""

from __future__ import annotations

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from nodes.tables import outbox
from sync.ports import OutboxRecord


class OutboxRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def enqueue(self, subject: str, msg_id: str, payload: bytes, now: int) -> None:
        await self.conn.execute(insert(outbox).values(subject=subject, msg_id=msg_id, payload=payload, created_at=now))

    async def pending(self, limit: int = 100) -> list[OutboxRecord]:
        res = await self.conn.execute(
            select(outbox).where(outbox.c.sent_at.is_(None)).order_by(outbox.c.id).limit(limit))
        return [OutboxRecord(*row) for row in res]

    async def mark_sent(self, row_id: int, now: int) -> None:
        await self.conn.execute(update(outbox).where(outbox.c.id == row_id).values(sent_at=now))

    async def summary(self) -> dict[str, dict[str, int]]:
        """Per subject: how many messages JetStream acknowledged, how many wait, and when the last went."""
        rows = await self.conn.execute(
            select(outbox.c.subject, func.count(outbox.c.sent_at), func.count(), func.max(outbox.c.sent_at))
            .group_by(outbox.c.subject))
        return {subject: {"acknowledged": int(sent), "pending": int(total) - int(sent), "last_sent_at": int(last or 0)}
                for subject, sent, total, last in rows}

    async def pending_count(self) -> int:
        return int((await self.conn.execute(
            select(func.count()).select_from(outbox).where(outbox.c.sent_at.is_(None)))).scalar_one())
