"""Rectification items (整改) and public comments (公众评议), and the read of a decided appeal an item
is made from."""

from __future__ import annotations

import builtins
import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from nodes.tables import appeals, public_comments, rectifications


@dataclass(frozen=True)
class RectificationRecord:
    id: int
    cycle: str
    unit: str
    source: str  # weak | appeal | comment | office | carried
    ref: str  # indicator code, appeal or comment id, last year's item id
    title: str
    measure: str
    owner: str
    deadline: int
    status: str  # open | review | done | carried (nodes/rectification.py)
    evidence: tuple[str, ...]
    closure: str
    created_by: str
    created_at: int
    closed_by: str
    closed_at: int
    carried_from: int


@dataclass(frozen=True)
class CommentRecord:
    id: int
    cycle: str
    unit: str
    body: str
    contact: str
    sender: str
    created_at: int
    status: str  # new | answered | hidden
    answer: str
    answered_by: str
    answered_at: int
    rectification: int


@dataclass(frozen=True)
class AppealRef:
    """What an item made from an appeal needs of it."""

    id: int
    cycle: str
    unit: str
    target: str
    indicator: str
    status: str
    decision: str


def _item(row: Any) -> RectificationRecord:
    m = dict(row._mapping)
    m["evidence"] = tuple(json.loads(m["evidence"] or "[]"))
    return RectificationRecord(**m)


def _comment(row: Any) -> CommentRecord:
    return CommentRecord(**dict(row._mapping))


class RectificationRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    # --- items
    async def add(self, item: RectificationRecord) -> RectificationRecord:
        values = {k: v for k, v in item.__dict__.items() if k != "id"}
        values["evidence"] = json.dumps(list(item.evidence))
        new_id = (await self.conn.execute(rectifications.insert().values(**values)
                                          .returning(rectifications.c.id))).scalar_one()
        return replace(item, id=int(new_id))

    async def add_many(self, items: builtins.list[RectificationRecord]) -> builtins.list[RectificationRecord]:
        """Insert in one statement; the records with their ids, in order (writes are serialised by the
        store's lock, so the new ids are those above the highest before)."""
        if not items:
            return []
        before = int((await self.conn.execute(select(func.coalesce(func.max(rectifications.c.id), 0)))).scalar_one())
        rows = []
        for item in items:
            values = {k: v for k, v in item.__dict__.items() if k != "id"}
            values["evidence"] = json.dumps(list(item.evidence))
            rows.append(values)
        await self.conn.execute(rectifications.insert(), rows)
        ids = [int(i) for i in (await self.conn.execute(select(rectifications.c.id).where(
            rectifications.c.id > before).order_by(rectifications.c.id))).scalars()]
        return [replace(item, id=i) for item, i in zip(items, ids, strict=True)]

    async def get(self, item: int) -> RectificationRecord | None:
        row = (await self.conn.execute(select(rectifications).where(rectifications.c.id == item))).first()
        return None if row is None else _item(row)

    async def items(self, *, cycle: str | None = None, units: Iterable[str] | None = None,
                    statuses: Iterable[str] | None = None, source: str | None = None,
                    carried_only: bool = False) -> list[RectificationRecord]:
        q = select(rectifications).order_by(rectifications.c.unit, rectifications.c.id)
        if cycle is not None:
            q = q.where(rectifications.c.cycle == cycle)
        if units is not None:
            q = q.where(rectifications.c.unit.in_(list(units)))
        if statuses is not None:
            q = q.where(rectifications.c.status.in_(list(statuses)))
        if source is not None:
            q = q.where(rectifications.c.source == source)
        if carried_only:
            q = q.where(rectifications.c.carried_from != 0)
        return [_item(r) for r in await self.conn.execute(q)]

    async def find(self, cycle: str, unit: str, source: str, ref: str) -> RectificationRecord | None:
        row = (await self.conn.execute(select(rectifications).where(
            rectifications.c.cycle == cycle, rectifications.c.unit == unit, rectifications.c.source == source,
            rectifications.c.ref == ref).limit(1))).first()
        return None if row is None else _item(row)

    async def carried_from(self, item: int) -> RectificationRecord | None:
        row = (await self.conn.execute(select(rectifications).where(rectifications.c.carried_from == item)
                                       .limit(1))).first()
        return None if row is None else _item(row)

    async def set(self, item: int, **values: Any) -> None:
        if "evidence" in values:
            values["evidence"] = json.dumps(list(values["evidence"]))
        await self.conn.execute(update(rectifications).where(rectifications.c.id == item).values(**values))

    async def set_many(self, items: builtins.list[int], **values: Any) -> None:
        for start in range(0, len(items), 500):
            await self.conn.execute(update(rectifications).where(rectifications.c.id.in_(items[start:start + 500]))
                                    .values(**values))

    # --- the appeal an item answers (the appeals table belongs to the appeals service; read only here)
    async def appeal(self, appeal: int) -> AppealRef | None:
        row = (await self.conn.execute(select(
            appeals.c.id, appeals.c.cycle, appeals.c.unit, appeals.c.target, appeals.c.indicator, appeals.c.status,
            appeals.c.decision).where(appeals.c.id == appeal))).first()
        return None if row is None else AppealRef(*row)

    # --- public comments
    async def add_comment(self, c: CommentRecord) -> CommentRecord:
        values = {k: v for k, v in c.__dict__.items() if k != "id"}
        new_id = (await self.conn.execute(public_comments.insert().values(**values)
                                          .returning(public_comments.c.id))).scalar_one()
        return replace(c, id=int(new_id))

    async def comment(self, comment: int) -> CommentRecord | None:
        row = (await self.conn.execute(select(public_comments).where(public_comments.c.id == comment))).first()
        return None if row is None else _comment(row)

    async def comments(self, *, cycle: str | None = None, units: Iterable[str] | None = None,
                       statuses: Iterable[str] | None = None, limit: int | None = None) -> builtins.list[CommentRecord]:
        """Newest first."""
        q = select(public_comments).order_by(public_comments.c.created_at.desc(), public_comments.c.id.desc())
        if cycle is not None:
            q = q.where(public_comments.c.cycle == cycle)
        if units is not None:
            q = q.where(public_comments.c.unit.in_(list(units)))
        if statuses is not None:
            q = q.where(public_comments.c.status.in_(list(statuses)))
        if limit is not None:
            q = q.limit(limit)
        return [_comment(r) for r in await self.conn.execute(q)]

    async def count_comments(self, *, since: int, sender: str | None = None, unit: str | None = None) -> int:
        q = select(func.count()).select_from(public_comments).where(public_comments.c.created_at >= since)
        if sender is not None:
            q = q.where(public_comments.c.sender == sender)
        if unit is not None:
            q = q.where(public_comments.c.unit == unit)
        return int((await self.conn.execute(q)).scalar_one())

    async def set_comment(self, comment: int, **values: Any) -> None:
        await self.conn.execute(update(public_comments).where(public_comments.c.id == comment).values(**values))
