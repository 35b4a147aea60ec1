"""The hash-chained audit log (its hash rule: nodes/audit.py), the counters of repeated refusals
(sync/refusals.py) and the checkpoint up to which the chain was verified."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from aggregator.errors import BadInput
from nodes.audit import FIELDS as AUDIT_FIELDS
from nodes.audit import GENESIS, AuditBreak, entry_hash, verify_entries
from nodes.repositories._sql import upsert
from nodes.tables import audit_checkpoint, audit_counters, audit_log
from sync.ports import AuditEntry, AuditRecord, Occurrence

SUMMARY_FIELDS = ("total", "pending", "window_start", "last_at", "last_subject", "last_detail")


def _canonical(detail: Mapping[str, Any]) -> str:
    return json.dumps(dict(detail), ensure_ascii=False, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class CounterRecord:
    """Occurrences of one (sender, action, code): ``total`` ever, ``pending`` not yet in the chain."""

    sender: str
    action: str
    code: str
    total: int
    pending: int
    window_start: int
    last_at: int
    last_subject: str
    last_detail: str


class AuditRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def tip(self) -> tuple[int, str]:
        """(seq, hash) of the last entry; (0, genesis) for an empty log."""
        last = (await self.conn.execute(
            select(audit_log.c.seq, audit_log.c.hash).order_by(audit_log.c.seq.desc()).limit(1))).first()
        return (int(last[0]), str(last[1])) if last else (0, GENESIS)

    async def append(self, actor: str, action: str, subject: str, detail: Mapping[str, Any], now: int) -> None:
        await self.append_many([(actor, action, subject, detail)], now)

    async def append_many(self, entries: Sequence[AuditEntry], now: int) -> None:
        """Append (actor, action, subject, detail) entries in order, chained, in one statement."""
        if not entries:
            return
        seq, prev = await self.tip()
        rows = []
        for actor, action, subject, detail in entries:
            seq += 1
            text = _canonical(detail)
            h = entry_hash(prev, seq, now, actor, action, subject, text)
            rows.append({"seq": seq, "at": now, "actor": actor, "action": action, "subject": subject, "detail": text,
                         "prev_hash": prev, "hash": h})
            prev = h
        await self.conn.execute(insert(audit_log), rows)

    # ------------------------------------------------------------ repeated refusals
    async def record(self, occurrences: Sequence[Occurrence], now: int, window: int) -> None:
        """Count each occurrence under its (sender, action, code). The first of a window (``window``
        seconds from it) becomes a full entry with ``count`` 1; the rest of the window are counted and
        folded into one summary entry when the window is over (here, or by :meth:`fold`). Counting and
        entries are written in the caller's transaction, so nothing counted is lost."""
        groups: dict[tuple[str, str, str], list[Occurrence]] = {}
        for o in occurrences:
            groups.setdefault((o.sender[:255], o.action, o.code[:64]), []).append(o)
        entries: list[AuditEntry] = []
        rows: list[dict[str, Any]] = []
        for (sender, action, code), group in groups.items():
            row = (await self.conn.execute(select(audit_counters).where(
                audit_counters.c.sender == sender, audit_counters.c.action == action,
                audit_counters.c.code == code))).first()
            old = CounterRecord(*row) if row is not None else None
            first, last = group[0], group[-1]
            if old is None or now >= old.window_start + window:
                if old is not None and old.pending:
                    entries.append(_summary(first.actor, old))
                entries.append((first.actor, action, first.subject, {**first.detail, "sender": sender, "count": 1}))
                pending, start = len(group) - 1, now
            else:
                pending, start = old.pending + len(group), old.window_start
            rows.append({"sender": sender, "action": action, "code": code,
                         "total": (old.total if old else 0) + len(group), "pending": pending, "window_start": start,
                         "last_at": now, "last_subject": last.subject[:255],
                         "last_detail": _canonical({**last.detail, "sender": sender})})
        await self.append_many(entries, now)
        await upsert(self.conn, audit_counters, rows, ("sender", "action", "code"), SUMMARY_FIELDS)

    async def fold(self, now: int, window: int, actor: str) -> int:
        """Fold every window that is over (``window`` 0: every one) into a summary entry; how many."""
        rows = [CounterRecord(*r) for r in await self.conn.execute(
            select(audit_counters).where(audit_counters.c.pending > 0, audit_counters.c.window_start + window <= now)
            .order_by(audit_counters.c.sender, audit_counters.c.action, audit_counters.c.code))]
        await self.append_many([_summary(actor, r) for r in rows], now)
        for r in rows:
            await self.conn.execute(update(audit_counters).where(
                audit_counters.c.sender == r.sender, audit_counters.c.action == r.action,
                audit_counters.c.code == r.code).values(pending=0))
        return len(rows)

    async def open_windows(self) -> int:
        """Counters with occurrences not yet folded into a summary entry."""
        q = select(func.count()).select_from(audit_counters).where(audit_counters.c.pending > 0)
        return int((await self.conn.execute(q)).scalar_one())

    async def counters(self, limit: int = 1000) -> list[CounterRecord]:
        """The counters, most recently seen first."""
        q = select(audit_counters).order_by(audit_counters.c.last_at.desc(), audit_counters.c.sender).limit(limit)
        return [CounterRecord(*r) for r in await self.conn.execute(q)]

    async def refused(self) -> int:
        """Refused messages counted since counting began (actions ``reject.*``), however they were folded."""
        q = select(func.coalesce(func.sum(audit_counters.c.total), 0)).where(audit_counters.c.action.like("reject%"))
        return int((await self.conn.execute(q)).scalar_one())

    # ------------------------------------------------------------ reading
    async def entries(self, limit: int | None = None, action: str | None = None) -> list[AuditRecord]:
        """Oldest first (verification and export read in chain order)."""
        if limit is not None and limit < 0:
            raise BadInput("limit 不能为负 (limit must not be negative)", code="input.limit")
        q = select(audit_log).order_by(audit_log.c.seq)
        if action is not None:
            q = q.where(audit_log.c.action == action)
        if limit is not None:
            q = q.limit(limit)
        return [AuditRecord(*row) for row in await self.conn.execute(q)]

    async def page(self, limit: int, before: int | None = None,
                   action: str | None = None) -> tuple[list[AuditRecord], int | None]:
        """Newest first, up to ``limit`` entries older than ``before``; and the ``before`` of the next
        page (None: nothing older)."""
        if limit < 1:
            raise BadInput("每页至少 1 条 (a page holds at least one entry)", code="input.page_limit")
        q = select(audit_log).order_by(audit_log.c.seq.desc()).limit(limit + 1)
        if before is not None:
            q = q.where(audit_log.c.seq < before)
        if action is not None:
            q = q.where(audit_log.c.action == action)
        rows = [AuditRecord(*row) for row in await self.conn.execute(q)]
        return rows[:limit], (rows[limit - 1].seq if len(rows) > limit else None)

    async def from_seq(self, seq: int, limit: int) -> list[AuditRecord]:
        """Up to ``limit`` entries from ``seq`` on, in chain order."""
        q = select(audit_log).where(audit_log.c.seq >= seq).order_by(audit_log.c.seq).limit(limit)
        return [AuditRecord(*row) for row in await self.conn.execute(q)]

    async def verify(self) -> AuditBreak | None:
        """The whole chain from genesis, in memory (for small logs and tests; the node verifies from
        its checkpoint, nodes/services/audit_log.py)."""
        _, broken = verify_entries({f: getattr(r, f) for f in AUDIT_FIELDS} for r in await self.entries())
        return broken

    async def count(self, action_prefix: str = "") -> int:
        q = select(func.count()).select_from(audit_log)
        if action_prefix:
            q = q.where(audit_log.c.action.like(action_prefix + "%"))
        return int((await self.conn.execute(q)).scalar_one())

    async def head(self) -> tuple[int, str]:
        """The chain's last (seq, hash): what this node reports up as its anchor."""
        return await self.tip()

    async def hash_at(self, seq: int) -> str | None:
        found = (await self.conn.execute(select(audit_log.c.hash).where(audit_log.c.seq == seq))).scalar_one_or_none()
        return None if found is None else str(found)

    async def latest(self, action: str, limit: int) -> list[AuditRecord]:
        """The newest entries of one action, newest first."""
        q = select(audit_log).where(audit_log.c.action == action).order_by(audit_log.c.seq.desc()).limit(limit)
        return [AuditRecord(*row) for row in await self.conn.execute(q)]

    # ------------------------------------------------------------ checkpoint
    async def checkpoint(self) -> tuple[int, str] | None:
        row = (await self.conn.execute(select(audit_checkpoint.c.seq, audit_checkpoint.c.hash)
                                       .where(audit_checkpoint.c.id == 1))).first()
        return (int(row[0]), str(row[1])) if row else None

    async def set_checkpoint(self, seq: int, hash_: str, now: int) -> None:
        await upsert(self.conn, audit_checkpoint, [{"id": 1, "seq": seq, "hash": hash_, "verified_at": now}], ("id",),
                     ("seq", "hash", "verified_at"))


def _summary(actor: str, c: CounterRecord) -> AuditEntry:
    """The entry for a window's repeats after its first: the last one's detail (its subject, reason,
    signer …) with their ``count`` and the window they fell in (``from`` its full entry, ``to`` the last)."""
    return (actor, c.action, c.last_subject,
            {**json.loads(c.last_detail), "code": c.code, "sender": c.sender, "count": c.pending, "summary": True,
             "from": c.window_start, "to": c.last_at})
