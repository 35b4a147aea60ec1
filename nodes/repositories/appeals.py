"""Appeals (申诉/复核): one row per appeal, changed in place as it moves (the audit log keeps each step)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from nodes.tables import appeals, attachment_links, attachments


@dataclass(frozen=True)
class AppealRecord:
    id: int
    cycle: str
    period: str
    unit: str
    publication: str
    target: str
    indicator: str
    reason: str
    evidence: tuple[str, ...]
    status: str
    filed_by: str
    filed_at: int
    decide_by: int
    reviewer: str
    assigned_by: str
    assigned_at: int
    decision: str
    decided_by: str
    decided_at: int
    before: dict[str, object]
    after: dict[str, object]


def _appeal(row: object) -> AppealRecord:
    m = dict(row._mapping)  # type: ignore[attr-defined]
    m["evidence"] = tuple(json.loads(m["evidence"] or "[]"))
    m["before"] = json.loads(m["before"] or "{}")
    m["after"] = json.loads(m["after"] or "{}")
    return AppealRecord(**m)


def _encode(fields: dict[str, object]) -> dict[str, object]:
    out = dict(fields)
    for k in ("evidence",):
        if k in out:
            out[k] = json.dumps(list(out[k]))  # type: ignore[call-overload]
    for k in ("before", "after"):
        if k in out:
            out[k] = json.dumps(out[k], ensure_ascii=False, sort_keys=True)
    return out


class AppealRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def add(self, **fields: object) -> int:
        result = await self.conn.execute(appeals.insert().values(**_encode(fields)).returning(appeals.c.id))
        return int(result.scalar_one())

    async def get(self, appeal_id: int) -> AppealRecord | None:
        row = (await self.conn.execute(select(appeals).where(appeals.c.id == appeal_id))).first()
        return None if row is None else _appeal(row)

    async def list(self, *, cycle: str | None = None, period: str | None = None, units: Iterable[str] | None = None,
                   reviewer: str | None = None, statuses: Iterable[str] | None = None,
                   publications: Iterable[str] | None = None) -> list[AppealRecord]:
        """Oldest first."""
        q = select(appeals)
        if cycle is not None:
            q = q.where(appeals.c.cycle == cycle)
        if period is not None:
            q = q.where(appeals.c.period == period)
        if units is not None:
            q = q.where(appeals.c.unit.in_(list(units)))
        if reviewer is not None:
            q = q.where(appeals.c.reviewer == reviewer)
        if statuses is not None:
            q = q.where(appeals.c.status.in_(list(statuses)))
        if publications is not None:
            q = q.where(appeals.c.publication.in_(list(publications)))
        return [_appeal(r) for r in await self.conn.execute(q.order_by(appeals.c.id))]

    async def change(self, appeal_id: int, **fields: object) -> None:
        await self.conn.execute(update(appeals).where(appeals.c.id == appeal_id).values(**_encode(fields)))

    # --- evidence files (the intake's attachment store)
    async def files(self, shas: Iterable[str]) -> dict[str, tuple[str, str]]:
        """sha256 → (name, uploaded_by) of the files held among ``shas``."""
        wanted = list(shas)
        if not wanted:
            return {}
        q = select(attachments.c.sha256, attachments.c.name, attachments.c.uploaded_by).where(
            attachments.c.sha256.in_(wanted))
        return {str(s): (str(n), str(b)) for s, n, b in await self.conn.execute(q)}

    async def file_units(self, sha256: str) -> set[str]:
        """The units whose cells a file supports (uploaded through /entry/attach)."""
        q = select(attachment_links.c.unit).where(attachment_links.c.sha256 == sha256)
        return {str(u) for (u,) in await self.conn.execute(q)}
