"""Scores, ranks and grades of this node's units, with each score's derivation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from nodes.repositories._sql import upsert
from nodes.tables import scores


@dataclass(frozen=True, slots=True)
class ScoreRecord:
    unit: str
    cycle: str
    period: str
    framework_digest: str
    score: str
    rank: int
    explanation: str  # JSON: the score's full derivation


class ScoreRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def put(self, rows: Sequence[Mapping[str, Any]]) -> None:
        await upsert(self.conn, scores, rows, ["unit", "cycle", "period", "framework_digest"],
                     ["score", "rank", "explanation"])

    async def annual(self) -> list[ScoreRecord]:
        """Every unit's score for each cycle's whole-year period, oldest cycle first."""
        q = select(scores).where(scores.c.period == scores.c.cycle + "-Y").order_by(scores.c.cycle, scores.c.unit)
        return [ScoreRecord(*row) for row in await self.conn.execute(q)]

    async def list(self, cycle: str, period: str | None = None) -> list[ScoreRecord]:
        q = select(scores).where(scores.c.cycle == cycle).order_by(scores.c.period, scores.c.rank, scores.c.unit)
        if period is not None:
            q = q.where(scores.c.period == period)
        return [ScoreRecord(*row) for row in await self.conn.execute(q)]

    async def count(self) -> int:
        return int((await self.conn.execute(select(func.count()).select_from(scores))).scalar_one())
