"""区划调整: the signed change lists a node accepted, exactly as signed, in acceptance order."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from nodes.tables import division_changes
from sync.reports import ListRef


@dataclass(frozen=True, slots=True)
class DivisionChangeRecord:
    position: int  # acceptance order
    issuer: str
    seq: int
    digest: str
    envelope: bytes
    sender: str
    accepted_at: int
    base: str  # the base tree it was judged on


class DivisionChangeRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def put(self, *, issuer: str, seq: int, digest: str, envelope: bytes, sender: str, now: int,
                  base: str) -> int:
        """Keep one accepted list; returns its position. (issuer, seq) is unique: the service refuses a
        second list under one number before it gets here, and the constraint stops one that slipped by."""
        result = await self.conn.execute(division_changes.insert().values(
            issuer=issuer, seq=seq, digest=digest, envelope=envelope, sender=sender, accepted_at=now, base=base))
        key = result.inserted_primary_key
        return int(key[0]) if key is not None else 0

    async def all(self) -> list[DivisionChangeRecord]:
        """Every list held, in the order it was accepted (the order a restart replays)."""
        rows = await self.conn.execute(select(division_changes).order_by(division_changes.c.position))
        return [DivisionChangeRecord(*row) for row in rows]

    async def refs(self) -> list[ListRef]:
        """(issuer, seq, digest) of every list held, in the order accepted: what a status report names,
        without reading the envelopes."""
        rows = await self.conn.execute(select(division_changes.c.issuer, division_changes.c.seq,
                                              division_changes.c.digest).order_by(division_changes.c.position))
        return [ListRef(str(i), int(n), str(d)) for i, n, d in rows]

    async def get(self, issuer: str, seq: int) -> DivisionChangeRecord | None:
        row = (await self.conn.execute(select(division_changes).where(
            division_changes.c.issuer == issuer, division_changes.c.seq == seq))).first()
        return DivisionChangeRecord(*row) if row is not None else None

    async def last_seq(self, issuer: str) -> int:
        value = (await self.conn.execute(select(func.max(division_changes.c.seq)).where(
            division_changes.c.issuer == issuer))).scalar()
        return int(value or 0)
