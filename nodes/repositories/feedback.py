"""绩效报告: the stored PDFs (table ``feedback_reports``), and what a report reads of a unit's appeals
and rectification items (read only here; their own services write them)."""

from __future__ import annotations

import builtins
import json
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from nodes.feedback import AppealItem, RectItem
from nodes.repositories._sql import upsert
from nodes.tables import appeals, feedback_reports, rectifications


@dataclass(frozen=True)
class StoredReport:
    cycle: str
    period: str
    unit: str
    publication: str
    sha256: str
    generated_at: int
    generated_by: str
    size: int = 0


def _json_map(text: str) -> dict[str, str]:
    try:
        raw = json.loads(text or "{}")
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}


class FeedbackRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def put(self, *, cycle: str, period: str, unit: str, publication: str, pdf: bytes, sha256: str,
                  generated_at: int, generated_by: str) -> None:
        """One unit's report of one period; a newer one replaces it."""
        row = {"cycle": cycle, "period": period, "unit": unit, "publication": publication, "pdf": pdf, "sha256": sha256,
               "generated_at": generated_at, "generated_by": generated_by}
        await upsert(self.conn, feedback_reports, [row], ["cycle", "period", "unit"],
                     ["publication", "pdf", "sha256", "generated_at", "generated_by"])

    async def pdf(self, cycle: str, period: str, unit: str) -> tuple[StoredReport, bytes] | None:
        t = feedback_reports
        row = (await self.conn.execute(select(t).where(t.c.cycle == cycle, t.c.period == period,
                                                       t.c.unit == unit))).first()
        if row is None:
            return None
        m = row._mapping
        return (StoredReport(m["cycle"], m["period"], m["unit"], m["publication"], m["sha256"], m["generated_at"],
                             m["generated_by"], len(m["pdf"])), bytes(m["pdf"]))

    async def list(self, cycle: str, period: str | None = None) -> list[StoredReport]:
        """Without the PDFs."""
        t = feedback_reports
        q = select(t.c.cycle, t.c.period, t.c.unit, t.c.publication, t.c.sha256, t.c.generated_at,
                   t.c.generated_by).where(t.c.cycle == cycle).order_by(t.c.period, t.c.unit)
        if period is not None:
            q = q.where(t.c.period == period)
        return [StoredReport(*row) for row in await self.conn.execute(q)]

    async def appeals(self, cycle: str, unit: str, period: str | None = None) -> builtins.list[AppealItem]:
        a = appeals
        q = select(a).where(a.c.cycle == cycle, a.c.unit == unit).order_by(a.c.filed_at, a.c.id)
        if period is not None:
            q = q.where(a.c.period == period)
        out = []
        for row in await self.conn.execute(q):
            m = row._mapping
            out.append(AppealItem(m["id"], m["period"], m["target"], m["indicator"], m["reason"], m["status"],
                                  m["filed_by"], m["filed_at"], m["decide_by"], m["decision"], m["decided_by"],
                                  m["decided_at"], _json_map(m["before"]), _json_map(m["after"])))
        return out

    async def rectifications(self, unit: str, up_to_cycle: str) -> builtins.list[RectItem]:
        """The unit's items of this cycle and earlier ones, every status (the report keeps the open ones)."""
        r = rectifications
        q = select(r).where(r.c.unit == unit, r.c.cycle <= up_to_cycle).order_by(r.c.deadline, r.c.id)
        return [RectItem(m["id"], m["cycle"], m["source"], m["ref"], m["title"], m["measure"], m["owner"],
                         m["deadline"], m["status"])
                for m in (row._mapping for row in await self.conn.execute(q))]
