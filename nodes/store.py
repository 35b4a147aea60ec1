"""The node's store: one interface over SQLite (aiosqlite) and PostgreSQL (asyncpg).

Every write happens in a :class:`Tx`, so a business row, its inbox row, its outbox row and its
audit entry commit together or not at all. Writes inside one node process are serialised by
a lock, which also keeps the audit hash chain linear.
"""

from __future__ import annotations

import asyncio
import importlib
import json
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Row, case, event, func, insert, inspect, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from nodes.audit import FIELDS as AUDIT_FIELDS
from nodes.audit import GENESIS, AuditBreak, entry_hash, verify_entries
from nodes.tables import (
    assessments,
    audit_log,
    bundles,
    frameworks,
    inbox,
    node_keys,
    outbox,
    results,
    revocation_lists,
    scores,
)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class StoreError(ValueError):
    pass


def check_url(url: str) -> str:
    """Refuse store URLs we cannot drive, with the fix spelled out."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(f"存储地址无法解析：{url!r}；示例 sqlite+aiosqlite:///node.db 或 "
                         "postgresql+asyncpg://user@host/db (cannot parse store URL)") from None
    if parsed.drivername not in ("sqlite+aiosqlite", "postgresql+asyncpg"):
        raise StoreError(f"不支持的存储驱动 {parsed.drivername!r}；请使用 sqlite+aiosqlite 或 postgresql+asyncpg "
                         "(unsupported driver)")
    return url


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()


def _schema_head() -> str:
    heads = sorted(p.stem.split("_", 1)[0] for p in (MIGRATIONS / "versions").glob("[0-9]*.py"))
    return heads[-1]


def _upgrade(conn: Connection) -> None:
    # Loading alembic costs memory in every node process; skip it when the schema is current.
    if inspect(conn).has_table("alembic_version"):
        current = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        if current == _schema_head():
            return
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, "head")



class Store:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._write = asyncio.Lock()

    @classmethod
    async def open(cls, url: str) -> Store:
        check_url(url)
        engine = create_async_engine(url, pool_pre_ping=False)
        if engine.dialect.name == "sqlite":
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        async with engine.begin() as conn:
            await conn.run_sync(_upgrade)
        return cls(engine)

    async def close(self) -> None:
        await self.engine.dispose()

    @asynccontextmanager
    async def tx(self) -> AsyncIterator[Tx]:
        async with self._write, self.engine.begin() as conn:
            yield Tx(conn)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Tx]:
        async with self.engine.connect() as conn:
            yield Tx(conn)


class Tx:
    """Operations inside one transaction (or one read-only connection)."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    # ------------------------------------------------------------ helpers
    async def _upsert(self, table: Any, rows: Sequence[Mapping[str, Any]], keys: Sequence[str],
                      update_cols: Sequence[str]) -> None:
        if not rows:
            return
        # Import only the dialect in use: a SQLite node need not carry PostgreSQL's (~3 MB per process).
        dialect: Any = importlib.import_module(f"sqlalchemy.dialects.{self.conn.dialect.name}")
        stmt = dialect.insert(table)
        stmt = stmt.on_conflict_do_update(index_elements=list(keys),
                                          set_={c: getattr(stmt.excluded, c) for c in update_cols})
        await self.conn.execute(stmt, list(rows))

    # -------------------------------------------------------------- inbox
    async def seen(self, origin: str, msg_id: str) -> bool:
        row = await self.conn.execute(
            select(inbox.c.origin).where(inbox.c.origin == origin, inbox.c.msg_id == msg_id))
        return row.first() is not None

    async def remember(self, origin: str, msg_id: str, now: int) -> None:
        await self.conn.execute(insert(inbox).values(origin=origin, msg_id=msg_id, received_at=now))

    async def remember_many(self, pairs: Sequence[tuple[str, str]], now: int) -> None:
        if pairs:
            await self.conn.execute(insert(inbox), [{"origin": o, "msg_id": m, "received_at": now} for o, m in pairs])

    async def known_bundles(self, pairs: Sequence[tuple[str, str]]) -> set[str]:
        """Of these (origin, bundle id) pairs, the ids already taken (in the inbox or the chain)."""
        ids = sorted({m for _, m in pairs})
        if not ids:
            return set()
        wanted = set(pairs)
        origins = sorted({o for o, _ in pairs})
        found = {str(m) for o, m in await self.conn.execute(
            select(inbox.c.origin, inbox.c.msg_id).where(inbox.c.msg_id.in_(ids), inbox.c.origin.in_(origins)))
            if (o, m) in wanted}
        found |= {str(i) for (i,) in await self.conn.execute(select(bundles.c.id).where(bundles.c.id.in_(ids)))}
        return found

    # ------------------------------------------------------------- outbox
    async def enqueue(self, subject: str, msg_id: str, payload: bytes, now: int) -> None:
        await self.conn.execute(insert(outbox).values(subject=subject, msg_id=msg_id, payload=payload, created_at=now))

    async def pending_outbox(self, limit: int = 100) -> list[Row[Any]]:
        res = await self.conn.execute(
            select(outbox).where(outbox.c.sent_at.is_(None)).order_by(outbox.c.id).limit(limit))
        return list(res)

    async def outbox_summary(self) -> dict[str, dict[str, int]]:
        """Per subject: how many messages JetStream acknowledged, how many wait, and when the last went."""
        rows = await self.conn.execute(
            select(outbox.c.subject, func.count(outbox.c.sent_at), func.count(), func.max(outbox.c.sent_at))
            .group_by(outbox.c.subject))
        return {subject: {"acknowledged": int(sent), "pending": int(total) - int(sent), "last_sent_at": int(last or 0)}
                for subject, sent, total, last in rows}

    async def bundle_summary(self) -> dict[str, dict[str, int]]:
        """Per child: bundles taken into its chain, the last sequence number, when it arrived, and how
        many of them had their content rejected."""
        rows = await self.conn.execute(
            select(bundles.c.node, func.count(), func.max(bundles.c.seq), func.max(bundles.c.received_at),
                   func.sum(case((bundles.c.status == "rejected", 1), else_=0)))
            .group_by(bundles.c.node))
        return {node: {"bundles": int(n), "last_seq": int(seq), "last_at": int(at), "rejected": int(rej or 0)}
                for node, n, seq, at, rej in rows}

    async def mark_sent(self, row_id: int, now: int) -> None:
        await self.conn.execute(update(outbox).where(outbox.c.id == row_id).values(sent_at=now))

    # -------------------------------------------------------------- audit
    async def audit(self, actor: str, action: str, subject: str, detail: Mapping[str, Any], now: int) -> None:
        last = (await self.conn.execute(
            select(audit_log.c.seq, audit_log.c.hash).order_by(audit_log.c.seq.desc()).limit(1))).first()
        seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
        text = json.dumps(dict(detail), ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        h = entry_hash(prev, seq, now, actor, action, subject, text)
        await self.conn.execute(insert(audit_log).values(
            seq=seq, at=now, actor=actor, action=action, subject=subject, detail=text, prev_hash=prev, hash=h))

    async def audit_many(self, entries: Sequence[tuple[str, str, str, Mapping[str, Any]]], now: int) -> None:
        """Append (actor, action, subject, detail) entries in order, chained, in one statement."""
        if not entries:
            return
        last = (await self.conn.execute(
            select(audit_log.c.seq, audit_log.c.hash).order_by(audit_log.c.seq.desc()).limit(1))).first()
        seq, prev = (last[0], last[1]) if last else (0, GENESIS)
        rows = []
        for actor, action, subject, detail in entries:
            seq += 1
            text = json.dumps(dict(detail), ensure_ascii=False, sort_keys=True, separators=(",", ":"))
            h = entry_hash(prev, seq, now, actor, action, subject, text)
            rows.append({"seq": seq, "at": now, "actor": actor, "action": action, "subject": subject, "detail": text,
                         "prev_hash": prev, "hash": h})
            prev = h
        await self.conn.execute(insert(audit_log), rows)

    async def audit_entries(self, limit: int | None = None, action: str | None = None) -> list[Row[Any]]:
        q = select(audit_log).order_by(audit_log.c.seq)
        if limit is not None and limit < 0:
            raise StoreError("limit 不能为负 (limit must not be negative)")
        if action is not None:
            q = q.where(audit_log.c.action == action)
        if limit is not None:
            q = q.limit(limit)
        return list(await self.conn.execute(q))

    async def verify_audit(self) -> AuditBreak | None:
        _, broken = verify_entries({f: getattr(r, f) for f in AUDIT_FIELDS} for r in await self.audit_entries())
        return broken

    # --------------------------------------------------------- frameworks
    async def put_framework(self, *, digest: str, issuer: str, cycle: str, unit_class: str, version: int,
                            role: str, envelope: bytes, cascade: bytes, now: int, authored: bool = False) -> None:
        await self.conn.execute(insert(frameworks).values(
            digest=digest, issuer=issuer, cycle=cycle, unit_class=unit_class, version=version, role=role,
            envelope=envelope, cascade=cascade, received_at=now, authored=authored))

    async def latest_framework(self, issuer: str, cycle: str, unit_class: str) -> Row[Any] | None:
        res = await self.conn.execute(
            select(frameworks).where(frameworks.c.issuer == issuer, frameworks.c.cycle == cycle,
                                     frameworks.c.unit_class == unit_class)
            .order_by(frameworks.c.version.desc()).limit(1))
        return res.first()

    async def framework(self, digest: str) -> Row[Any] | None:
        return (await self.conn.execute(select(frameworks).where(frameworks.c.digest == digest))).first()

    async def frameworks(self, role: str | None = None, cycle: str | None = None) -> list[Row[Any]]:
        q = select(frameworks).order_by(frameworks.c.received_at, frameworks.c.issuer, frameworks.c.version)
        if role is not None:
            q = q.where(frameworks.c.role == role)
        if cycle is not None:
            q = q.where(frameworks.c.cycle == cycle)
        return list(await self.conn.execute(q))

    # ------------------------------------------------------------ results
    async def put_values(self, *, node: str, cycle: str, period: str, framework_digest: str,
                         values: Mapping[str, str], source: str, bundle_id: str, now: int) -> None:
        rows = [{"node": node, "cycle": cycle, "period": period, "framework_digest": framework_digest, "indicator": k,
                     "value": v, "source": source, "bundle_id": bundle_id, "updated_at": now} for k, v in values.items()]
        await self._upsert(results, rows, ["node", "cycle", "period", "framework_digest", "indicator"],
                           ["value", "source", "bundle_id", "updated_at"])

    async def put_reported_values(self, values: Mapping[tuple[str, str, str, str, str], Mapping[str, str]],
                                  now: int) -> None:
        """Values of many bundles at once: (node, cycle, period, framework digest, indicator) →
        {value, bundle_id}; each key at most once, so one statement upserts them all."""
        rows = [{"node": n, "cycle": c, "period": p, "framework_digest": f, "indicator": i, "value": v["value"],
                 "source": "reported", "bundle_id": v["bundle_id"], "updated_at": now}
                for (n, c, p, f, i), v in values.items()]
        await self._upsert(results, rows, ["node", "cycle", "period", "framework_digest", "indicator"],
                           ["value", "source", "bundle_id", "updated_at"])

    async def source_bundles(self, cycle: str, period: str, framework_digest: str,
                             nodes: Iterable[str]) -> list[Row[Any]]:
        """The children's bundles (node, id, seq, message) whose values are held for this framework and period."""
        ids = select(results.c.bundle_id).where(
            results.c.cycle == cycle, results.c.period == period, results.c.framework_digest == framework_digest,
            results.c.node.in_(list(nodes)), results.c.source == "reported").distinct()
        q = select(bundles.c.node, bundles.c.id, bundles.c.seq, bundles.c.message, bundles.c.reviewer).where(
            bundles.c.id.in_(ids)).order_by(bundles.c.node, bundles.c.seq)
        return list(await self.conn.execute(q))

    async def values(self, cycle: str, period: str, framework_digest: str,
                     nodes: Iterable[str] | None = None) -> dict[str, dict[str, str]]:
        q = select(results.c.node, results.c.indicator, results.c.value).where(
            results.c.cycle == cycle, results.c.period == period, results.c.framework_digest == framework_digest)
        if nodes is not None:
            q = q.where(results.c.node.in_(list(nodes)))
        out: dict[str, dict[str, str]] = {}
        for node, ind, val in await self.conn.execute(q):
            out.setdefault(node, {})[ind] = val
        return out

    async def values_of(self, node: str, cycle: str | None = None) -> list[Row[Any]]:
        q = select(results).where(results.c.node == node).order_by(results.c.cycle, results.c.period,
                                                                   results.c.indicator)
        if cycle is not None:
            q = q.where(results.c.cycle == cycle)
        return list(await self.conn.execute(q))

    async def values_for_indicator(self, cycle: str, period: str, indicator: str) -> list[Row[Any]]:
        q = select(results).where(results.c.cycle == cycle, results.c.period == period,
                                  results.c.indicator == indicator).order_by(results.c.node)
        return list(await self.conn.execute(q))

    # ------------------------------------------------------------ bundles
    async def last_bundle(self, node: str) -> Row[Any] | None:
        res = await self.conn.execute(
            select(bundles).where(bundles.c.node == node).order_by(bundles.c.seq.desc()).limit(1))
        return res.first()

    async def bundles_after(self, node: str, after_seq: int, limit: int = 1000) -> list[Row[Any]]:
        res = await self.conn.execute(select(bundles).where(bundles.c.node == node, bundles.c.seq > after_seq)
                                      .order_by(bundles.c.seq).limit(limit))
        return list(res)

    async def review_bundle(self, bundle_id: str, status: str, reviewer: str, reason: str, now: int) -> None:
        await self.conn.execute(update(bundles).where(bundles.c.id == bundle_id).values(
            status=status, reviewer=reviewer, reason=reason, reviewed_at=now))

    async def bundles_by_status(self, status: str, limit: int = 1000) -> list[Row[Any]]:
        q = (select(bundles.c.id, bundles.c.node, bundles.c.seq, bundles.c.cycle, bundles.c.period,
                    bundles.c.framework_digest, bundles.c.received_at, bundles.c.reason, bundles.c.reviewer,
                    bundles.c.reviewed_at)
             .where(bundles.c.status == status).order_by(bundles.c.received_at.desc(), bundles.c.node).limit(limit))
        return list(await self.conn.execute(q))

    async def later_bundles(self, node: str, seq: int, cycle: str, period: str, framework_digest: str) -> list[Row[Any]]:
        """The same child's later bundles for the same framework and period (they supersede this one)."""
        return list(await self.conn.execute(select(bundles.c.id, bundles.c.seq, bundles.c.status).where(
            bundles.c.node == node, bundles.c.seq > seq, bundles.c.cycle == cycle, bundles.c.period == period,
            bundles.c.framework_digest == framework_digest)))

    async def all_bundles(self) -> list[Row[Any]]:
        return list(await self.conn.execute(select(bundles).order_by(bundles.c.node, bundles.c.seq)))

    async def bundle(self, bundle_id: str) -> Row[Any] | None:
        return (await self.conn.execute(select(bundles).where(bundles.c.id == bundle_id))).first()

    async def put_bundles(self, rows: Sequence[Mapping[str, Any]], now: int) -> None:
        if rows:
            await self.conn.execute(insert(bundles), [
                {"id": r["bundle_id"], "received_at": now, **{k: v for k, v in r.items() if k != "bundle_id"}}
                for r in rows])

    async def put_bundle(self, *, bundle_id: str, node: str, cycle: str, period: str, seq: int, prev_hash: str,
                         framework_digest: str, message: bytes, now: int, status: str = "accepted",
                         reason: str = "") -> None:
        await self.conn.execute(insert(bundles).values(
            id=bundle_id, node=node, cycle=cycle, period=period, seq=seq, prev_hash=prev_hash,
            framework_digest=framework_digest, message=message, received_at=now, status=status, reason=reason))

    # -------------------------------------------------------- assessments
    async def assessment(self, unit: str, cycle: str, period: str) -> str | None:
        row = (await self.conn.execute(select(assessments.c.document).where(
            assessments.c.unit == unit, assessments.c.cycle == cycle, assessments.c.period == period))).first()
        return None if row is None else str(row[0])

    async def put_assessment(self, unit: str, cycle: str, period: str, document: str, now: int) -> None:
        await self._upsert(assessments, [{"unit": unit, "cycle": cycle, "period": period, "document": document,
                                          "updated_at": now}], ["unit", "cycle", "period"], ["document", "updated_at"])

    async def assessments(self, cycle: str, period: str) -> dict[str, str]:
        rows = await self.conn.execute(select(assessments.c.unit, assessments.c.document).where(
            assessments.c.cycle == cycle, assessments.c.period == period))
        return {str(unit): str(doc) for unit, doc in rows}

    # ------------------------------------------------------------- scores
    async def put_scores(self, rows: Sequence[Mapping[str, Any]]) -> None:
        await self._upsert(scores, rows, ["unit", "cycle", "period", "framework_digest"],
                           ["score", "rank", "explanation"])

    async def annual_scores(self) -> list[Row[Any]]:
        """Every unit's score for each cycle's whole-year period, oldest cycle first."""
        q = select(scores).where(scores.c.period == scores.c.cycle + "-Y").order_by(scores.c.cycle, scores.c.unit)
        return list(await self.conn.execute(q))

    async def scores(self, cycle: str, period: str | None = None) -> list[Row[Any]]:
        q = select(scores).where(scores.c.cycle == cycle).order_by(scores.c.period, scores.c.rank, scores.c.unit)
        if period is not None:
            q = q.where(scores.c.period == period)
        return list(await self.conn.execute(q))

    # -------------------------------------------------------- trust state
    async def put_revocations(self, issuer: str, version: int, envelope: bytes, now: int) -> None:
        await self._upsert(revocation_lists, [{"issuer": issuer, "version": version, "envelope": envelope,
                                               "received_at": now}], ["issuer"], ["version", "envelope", "received_at"])

    async def revocation_lists(self) -> list[Row[Any]]:
        return list(await self.conn.execute(select(revocation_lists).order_by(revocation_lists.c.issuer)))

    async def put_keys(self, infos: Sequence[Any], now: int) -> None:
        """Remember (node, serial) → key; the first one seen stays (a different key later is a fork)."""
        if not infos:
            return
        dialect: Any = importlib.import_module(f"sqlalchemy.dialects.{self.conn.dialect.name}")
        stmt = dialect.insert(node_keys).on_conflict_do_nothing(index_elements=["code", "serial"])
        await self.conn.execute(stmt, [{"code": i.code, "serial": i.serial, "keyid": i.keyid, "issuer": i.issuer,
                                        "previous_keyid": i.previous_keyid, "seen_at": now} for i in infos])

    async def known_keys(self) -> list[Row[Any]]:
        return list(await self.conn.execute(select(node_keys).order_by(node_keys.c.code, node_keys.c.serial)))

    # ------------------------------------------------------------- status
    async def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for name, table in (("frameworks", frameworks), ("results", results), ("bundles", bundles),
                            ("scores", scores), ("audit", audit_log)):
            out[name] = int((await self.conn.execute(select(func.count()).select_from(table))).scalar_one())
        out["outbox_pending"] = int((await self.conn.execute(
            select(func.count()).select_from(outbox).where(outbox.c.sent_at.is_(None)))).scalar_one())
        out["rejected"] = int((await self.conn.execute(
            select(func.count()).select_from(audit_log).where(audit_log.c.action.like("reject%")))).scalar_one())
        return out
