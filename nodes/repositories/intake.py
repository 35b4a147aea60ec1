"""The task book, entry windows and unlocks, entries and their history, evidence files."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import delete, func, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from nodes.repositories._sql import dialect_insert, upsert
from nodes.tables import attachment_links, attachments, entries, entry_history, task_periods, task_unlocks, tasks


@dataclass(frozen=True)
class TaskRecord:
    cycle: str
    unit: str
    indicator: str
    provider: str
    frequency: str
    confirm: bool
    minimum: str
    maximum: str
    updated_at: int
    updated_by: str


@dataclass(frozen=True)
class PeriodRecord:
    cycle: str
    period: str
    opens_at: int
    due_at: int


@dataclass(frozen=True)
class UnlockRecord:
    cycle: str
    period: str
    provider: str
    until: int
    by: str
    reason: str


@dataclass(frozen=True)
class EntryRecord:
    cycle: str
    period: str
    unit: str
    key: str
    value: str
    comment: str
    status: str
    provider: str
    entered_by: str
    entered_at: int
    submitted_at: int
    late: bool
    decided_by: str
    decided_at: int
    reason: str
    approved_value: str


@dataclass(frozen=True)
class HistoryRecord:
    id: int
    cycle: str
    period: str
    unit: str
    key: str
    at: int
    actor: str
    action: str
    before: str
    value: str
    note: str


@dataclass(frozen=True)
class AttachmentRecord:
    sha256: str
    name: str
    content_type: str
    size: int
    uploaded_by: str
    uploaded_at: int


_ENTRY_UPDATE = ["value", "comment", "status", "provider", "entered_by", "entered_at", "submitted_at", "late",
                 "decided_by", "decided_at", "reason", "approved_value"]


class IntakeRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    # --- the task book
    async def tasks(self, cycle: str, provider: str | None = None, units: Iterable[str] | None = None) -> list[TaskRecord]:
        q = select(tasks).where(tasks.c.cycle == cycle)
        if provider is not None:
            q = q.where(tasks.c.provider == provider)
        if units is not None:
            q = q.where(tasks.c.unit.in_(list(units)))
        return [TaskRecord(*r) for r in await self.conn.execute(q.order_by(tasks.c.provider, tasks.c.unit,
                                                                            tasks.c.indicator))]

    async def put_tasks(self, rows: Sequence[TaskRecord]) -> None:
        await upsert(self.conn, tasks, [r.__dict__ for r in rows], ["cycle", "unit", "indicator"],
                     ["provider", "frequency", "confirm", "minimum", "maximum", "updated_at", "updated_by"])

    async def drop_tasks(self, cycle: str, keys: Iterable[tuple[str, str]]) -> None:
        keys = list(keys)
        if keys:
            await self.conn.execute(delete(tasks).where(tasks.c.cycle == cycle,
                                                        tuple_(tasks.c.unit, tasks.c.indicator).in_(keys)))

    async def providers(self, cycle: str) -> list[str]:
        q = select(tasks.c.provider).where(tasks.c.cycle == cycle).distinct().order_by(tasks.c.provider)
        return [str(p) for (p,) in await self.conn.execute(q)]

    async def periods(self, cycle: str) -> list[PeriodRecord]:
        q = select(task_periods).where(task_periods.c.cycle == cycle).order_by(task_periods.c.period)
        return [PeriodRecord(*r) for r in await self.conn.execute(q)]

    async def put_periods(self, rows: Sequence[PeriodRecord]) -> None:
        await upsert(self.conn, task_periods, [r.__dict__ for r in rows], ["cycle", "period"], ["opens_at", "due_at"])

    async def unlocks(self, cycle: str, period: str | None = None) -> list[UnlockRecord]:
        q = select(task_unlocks).where(task_unlocks.c.cycle == cycle)
        if period is not None:
            q = q.where(task_unlocks.c.period == period)
        return [UnlockRecord(*r) for r in await self.conn.execute(q)]

    async def put_unlock(self, u: UnlockRecord) -> None:
        await upsert(self.conn, task_unlocks, [u.__dict__], ["cycle", "period", "provider"], ["until", "by", "reason"])

    # --- entries
    async def entries(self, cycle: str, period: str | None = None, *, units: Iterable[str] | None = None,
                      statuses: Iterable[str] | None = None, provider: str | None = None,
                      limit: int | None = None) -> list[EntryRecord]:
        q = select(entries).where(entries.c.cycle == cycle)
        if period is not None:
            q = q.where(entries.c.period == period)
        if units is not None:
            q = q.where(entries.c.unit.in_(list(units)))
        if statuses is not None:
            q = q.where(entries.c.status.in_(list(statuses)))
        if provider is not None:
            q = q.where(entries.c.provider == provider)
        q = q.order_by(entries.c.period, entries.c.unit, entries.c.key)
        if limit is not None:
            q = q.limit(limit)
        return [EntryRecord(*r) for r in await self.conn.execute(q)]

    async def entries_at(self, cycle: str, period: str, cells: Iterable[tuple[str, str]]) -> dict[tuple[str, str], EntryRecord]:
        cells = list(cells)
        out: dict[tuple[str, str], EntryRecord] = {}
        for i in range(0, len(cells), 500):
            q = select(entries).where(entries.c.cycle == cycle, entries.c.period == period,
                                      tuple_(entries.c.unit, entries.c.key).in_(cells[i:i + 500]))
            for r in await self.conn.execute(q):
                e = EntryRecord(*r)
                out[(e.unit, e.key)] = e
        return out

    async def approved(self, cycles: Iterable[str], periods: Iterable[str],
                       units: Iterable[str]) -> dict[tuple[str, str, str], str]:
        """(period, unit, key) → the value last approved, for the history shown beside each cell."""
        q = select(entries.c.period, entries.c.unit, entries.c.key, entries.c.approved_value).where(
            entries.c.cycle.in_(list(cycles)), entries.c.period.in_(list(periods)), entries.c.unit.in_(list(units)),
            entries.c.approved_value != "")
        return {(str(p), str(u), str(k)): str(v) for p, u, k, v in await self.conn.execute(q)}

    async def put_entries(self, rows: Sequence[EntryRecord]) -> None:
        await upsert(self.conn, entries, [r.__dict__ for r in rows], ["cycle", "period", "unit", "key"], _ENTRY_UPDATE)

    async def counts(self, cycle: str, *, units: Iterable[str] | None = None,
                     provider: str | None = None) -> dict[tuple[str, str], int]:
        """(period, status) → entries, for task lists."""
        q = select(entries.c.period, entries.c.status, func.count()).where(entries.c.cycle == cycle)
        if units is not None:
            q = q.where(entries.c.unit.in_(list(units)))
        if provider is not None:
            q = q.where(entries.c.provider == provider)
        q = q.group_by(entries.c.period, entries.c.status)
        return {(str(p), str(s)): int(n) for p, s, n in await self.conn.execute(q)}

    async def add_history(self, rows: Sequence[dict[str, object]]) -> None:
        if rows:
            await self.conn.execute(entry_history.insert(), list(rows))

    async def history(self, cycle: str, period: str, cells: Iterable[tuple[str, str]]) -> list[HistoryRecord]:
        wanted = set(cells)
        if not wanted:
            return []
        q = select(entry_history).where(entry_history.c.cycle == cycle, entry_history.c.period == period,
                                        entry_history.c.unit.in_(sorted({u for u, _ in wanted})))
        rows = [HistoryRecord(*r) for r in await self.conn.execute(q.order_by(entry_history.c.id))]
        return [h for h in rows if (h.unit, h.key) in wanted]

    async def set_status(self, cycle: str, period: str, cells: Iterable[tuple[str, str]], **values: object) -> None:
        for u, k in cells:
            await self.conn.execute(update(entries).where(entries.c.cycle == cycle, entries.c.period == period,
                                                          entries.c.unit == u, entries.c.key == k).values(**values))

    # --- evidence
    async def put_attachment(self, sha256: str, name: str, content_type: str, data: bytes, by: str, now: int) -> None:
        stmt = dialect_insert(self.conn, attachments).on_conflict_do_nothing(index_elements=["sha256"])
        await self.conn.execute(stmt, [{"sha256": sha256, "name": name, "content_type": content_type, "size": len(data),
                                        "data": data, "uploaded_by": by, "uploaded_at": now}])

    async def link_attachment(self, sha256: str, cycle: str, period: str, unit: str, key: str) -> None:
        stmt = dialect_insert(self.conn, attachment_links).on_conflict_do_nothing()
        await self.conn.execute(stmt, [{"sha256": sha256, "cycle": cycle, "period": period, "unit": unit, "key": key}])

    async def attachments_of(self, cycle: str, period: str,
                             units: Iterable[str]) -> dict[tuple[str, str], list[AttachmentRecord]]:
        q = select(attachment_links.c.unit, attachment_links.c.key, attachments.c.sha256, attachments.c.name,
                   attachments.c.content_type, attachments.c.size, attachments.c.uploaded_by,
                   attachments.c.uploaded_at).join(attachments, attachments.c.sha256 == attachment_links.c.sha256).where(
            attachment_links.c.cycle == cycle, attachment_links.c.period == period,
            attachment_links.c.unit.in_(list(units))).order_by(attachments.c.uploaded_at)
        out: dict[tuple[str, str], list[AttachmentRecord]] = {}
        for u, k, *rest in await self.conn.execute(q):
            out.setdefault((str(u), str(k)), []).append(AttachmentRecord(*rest))
        return out

    async def attachments_in(self, cycle: str) -> dict[tuple[str, str, str], list[AttachmentRecord]]:
        """(period, unit, key) → the evidence files of every cell of ``cycle``."""
        q = select(attachment_links.c.period, attachment_links.c.unit, attachment_links.c.key, attachments.c.sha256,
                   attachments.c.name, attachments.c.content_type, attachments.c.size, attachments.c.uploaded_by,
                   attachments.c.uploaded_at).join(attachments, attachments.c.sha256 == attachment_links.c.sha256).where(
            attachment_links.c.cycle == cycle).order_by(attachments.c.uploaded_at)
        out: dict[tuple[str, str, str], list[AttachmentRecord]] = {}
        for p, u, k, *rest in await self.conn.execute(q):
            out.setdefault((str(p), str(u), str(k)), []).append(AttachmentRecord(*rest))
        return out

    async def attachment(self, sha256: str) -> tuple[AttachmentRecord, bytes] | None:
        row = (await self.conn.execute(select(attachments).where(attachments.c.sha256 == sha256))).first()
        if row is None:
            return None
        m = row._mapping
        return (AttachmentRecord(m["sha256"], m["name"], m["content_type"], int(m["size"]), m["uploaded_by"],
                                 int(m["uploaded_at"])), bytes(m["data"]))

    async def attachment_cells(self, sha256: str) -> list[tuple[str, str, str, str]]:
        q = select(attachment_links.c.cycle, attachment_links.c.period, attachment_links.c.unit,
                   attachment_links.c.key).where(attachment_links.c.sha256 == sha256)
        return [(str(c), str(p), str(u), str(k)) for c, p, u, k in await self.conn.execute(q)]
