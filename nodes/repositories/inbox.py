"""Inbox: which messages were already taken (exactly-once effects under at-least-once delivery)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from nodes.tables import bundles, inbox


class InboxRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def seen(self, origin: str, msg_id: str) -> bool:
        row = await self.conn.execute(select(inbox.c.origin).where(inbox.c.origin == origin, inbox.c.msg_id == msg_id))
        return row.first() is not None

    async def remember(self, origin: str, msg_id: str, now: int) -> None:
        await self.conn.execute(insert(inbox).values(origin=origin, msg_id=msg_id, received_at=now))

    async def remember_many(self, pairs: Sequence[tuple[str, str]], now: int) -> None:
        if pairs:
            await self.conn.execute(insert(inbox), [{"origin": o, "msg_id": m, "received_at": now} for o, m in pairs])

    async def known_bundles(self, pairs: Sequence[tuple[str, str]]) -> set[str]:
        """Of these (origin, bundle id) pairs, the ids already taken (in the inbox or the chain)."""
        ids = sorted({m for _, m in pairs})
        if not ids:
            return set()
        wanted = set(pairs)
        origins = sorted({o for o, _ in pairs})
        found = {str(m) for o, m in await self.conn.execute(
            select(inbox.c.origin, inbox.c.msg_id).where(inbox.c.msg_id.in_(ids), inbox.c.origin.in_(origins)))
            if (o, m) in wanted}
        found |= {str(i) for (i,) in await self.conn.execute(select(bundles.c.id).where(bundles.c.id.in_(ids)))}
        return found
