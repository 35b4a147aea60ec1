"""Frameworks held: received from the parent and issued to the children, immutable by digest."""

from __future__ import annotations

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from nodes.tables import frameworks
from sync.ports import FrameworkRecord


def _record(row: object) -> FrameworkRecord:
    return FrameworkRecord(*row)  # type: ignore[misc]  # a Row is a tuple in the table's column order


class FrameworkRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def put(self, *, digest: str, issuer: str, cycle: str, unit_class: str, version: int, role: str,
                  envelope: bytes, cascade: bytes, now: int, authored: bool = False) -> None:
        await self.conn.execute(insert(frameworks).values(
            digest=digest, issuer=issuer, cycle=cycle, unit_class=unit_class, version=version, role=role,
            envelope=envelope, cascade=cascade, received_at=now, authored=authored))

    async def latest(self, issuer: str, cycle: str, unit_class: str) -> FrameworkRecord | None:
        res = await self.conn.execute(
            select(frameworks).where(frameworks.c.issuer == issuer, frameworks.c.cycle == cycle,
                                     frameworks.c.unit_class == unit_class)
            .order_by(frameworks.c.version.desc()).limit(1))
        row = res.first()
        return None if row is None else _record(row)

    async def get(self, digest: str) -> FrameworkRecord | None:
        row = (await self.conn.execute(select(frameworks).where(frameworks.c.digest == digest))).first()
        return None if row is None else _record(row)

    async def list(self, role: str | None = None, cycle: str | None = None) -> list[FrameworkRecord]:
        q = select(frameworks).order_by(frameworks.c.received_at, frameworks.c.issuer, frameworks.c.version)
        if role is not None:
            q = q.where(frameworks.c.role == role)
        if cycle is not None:
            q = q.where(frameworks.c.cycle == cycle)
        return [_record(row) for row in await self.conn.execute(q)]

    async def count(self) -> int:
        return int((await self.conn.execute(select(func.count()).select_from(frameworks))).scalar_one())
