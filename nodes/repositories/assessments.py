"""Assessments recorded about this node's units: ratings, surveys, milestones, events."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from nodes.repositories._sql import upsert
from nodes.tables import assessments


class AssessmentRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def get(self, unit: str, cycle: str, period: str) -> str | None:
        row = (await self.conn.execute(select(assessments.c.document).where(
            assessments.c.unit == unit, assessments.c.cycle == cycle, assessments.c.period == period))).first()
        return None if row is None else str(row[0])

    async def put(self, unit: str, cycle: str, period: str, document: str, now: int) -> None:
        await upsert(self.conn, assessments, [{"unit": unit, "cycle": cycle, "period": period, "document": document,
                                               "updated_at": now}], ["unit", "cycle", "period"], ["document", "updated_at"])

    async def for_period(self, cycle: str, period: str) -> dict[str, str]:
        rows = await self.conn.execute(select(assessments.c.unit, assessments.c.document).where(
            assessments.c.cycle == cycle, assessments.c.period == period))
        return {str(unit): str(doc) for unit, doc in rows}
