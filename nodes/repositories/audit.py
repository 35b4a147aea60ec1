"""The hash-chained audit log (its hash rule: nodes/audit.py)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from aggregator.errors import BadInput
from nodes.audit import FIELDS as AUDIT_FIELDS
from nodes.audit import GENESIS, AuditBreak, entry_hash, verify_entries
from nodes.tables import audit_log
from sync.ports import AuditEntry, AuditRecord


def _canonical(detail: Mapping[str, Any]) -> str:
    return json.dumps(dict(detail), ensure_ascii=False, sort_keys=True, separators=(",", ":"))


class AuditRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def _tip(self) -> tuple[int, str]:
        last = (await self.conn.execute(
            select(audit_log.c.seq, audit_log.c.hash).order_by(audit_log.c.seq.desc()).limit(1))).first()
        return (int(last[0]), str(last[1])) if last else (0, GENESIS)

    async def append(self, actor: str, action: str, subject: str, detail: Mapping[str, Any], now: int) -> None:
        await self.append_many([(actor, action, subject, detail)], now)

    async def append_many(self, entries: Sequence[AuditEntry], now: int) -> None:
        """Append (actor, action, subject, detail) entries in order, chained, in one statement."""
        if not entries:
            return
        seq, prev = await self._tip()
        rows = []
        for actor, action, subject, detail in entries:
            seq += 1
            text = _canonical(detail)
            h = entry_hash(prev, seq, now, actor, action, subject, text)
            rows.append({"seq": seq, "at": now, "actor": actor, "action": action, "subject": subject, "detail": text,
                         "prev_hash": prev, "hash": h})
            prev = h
        await self.conn.execute(insert(audit_log), rows)

    async def entries(self, limit: int | None = None, action: str | None = None) -> list[AuditRecord]:
        if limit is not None and limit < 0:
            raise BadInput("limit 不能为负 (limit must not be negative)", code="input.limit")
        q = select(audit_log).order_by(audit_log.c.seq)
        if action is not None:
            q = q.where(audit_log.c.action == action)
        if limit is not None:
            q = q.limit(limit)
        return [AuditRecord(*row) for row in await self.conn.execute(q)]

    async def verify(self) -> AuditBreak | None:
        _, broken = verify_entries({f: getattr(r, f) for f in AUDIT_FIELDS} for r in await self.entries())
        return broken

    async def count(self, action_prefix: str = "") -> int:
        q = select(func.count()).select_from(audit_log)
        if action_prefix:
            q = q.where(audit_log.c.action.like(action_prefix + "%"))
        return int((await self.conn.execute(q)).scalar_one())

    async def head(self) -> tuple[int, str]:
        """The chain's last (seq, hash): what this node reports up as its anchor."""
        return await self._tip()

    async def hash_at(self, seq: int) -> str | None:
        found = (await self.conn.execute(select(audit_log.c.hash).where(audit_log.c.seq == seq))).scalar_one_or_none()
        return None if found is None else str(found)

    async def latest(self, action: str, limit: int) -> list[AuditRecord]:
        """The newest entries of one action, newest first."""
        q = select(audit_log).where(audit_log.c.action == action).order_by(audit_log.c.seq.desc()).limit(limit)
        return [AuditRecord(*row) for row in await self.conn.execute(q)]
