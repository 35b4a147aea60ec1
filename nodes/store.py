"""The node's store: one interface over SQLite (aiosqlite) and PostgreSQL (asyncpg).

Every write happens in a :class:`Tx`, so a business row, its inbox row, its outbox row and its
audit entry commit together or not at all. A ``Tx`` hands out one repository per domain
(``nodes/repositories/``), all on the same connection. Writes inside one node process are
serialised by a lock, which also keeps the audit hash chain linear.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.schema import CreateIndex, CreateTable

from aggregator.errors import StoreFailure
from nodes.repositories.appeals import AppealRepository
from nodes.repositories.assessments import AssessmentRepository
from nodes.repositories.audit import AuditRepository
from nodes.repositories.bundles import BundleRepository
from nodes.repositories.division_changes import DivisionChangeRepository
from nodes.repositories.feedback import FeedbackRepository
from nodes.repositories.frameworks import FrameworkRepository
from nodes.repositories.inbox import InboxRepository
from nodes.repositories.intake import IntakeRepository
from nodes.repositories.outbox import OutboxRepository
from nodes.repositories.publications import PublicationRepository, UseListRepository
from nodes.repositories.rectification import RectificationRepository
from nodes.repositories.reports import ReportRepository
from nodes.repositories.results import ResultRepository
from nodes.repositories.scores import ScoreRepository
from nodes.repositories.trust import TrustRepository
from nodes.repositories.users import UserRepository
from nodes.tables import metadata
from sync.limits import DEFAULT_LIMITS

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class StoreError(StoreFailure):
    default_code = "store.url"


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


def _create_private(url: str) -> None:
    """A new SQLite store file is created readable by the node's user only (0600, like its keys):
    it holds every value, bundle and audit entry. SQLite gives its -wal and -shm files the same mode.
    An existing file keeps the mode its operator gave it."""
    parsed = make_url(url)
    if parsed.drivername.startswith("sqlite") and parsed.database and parsed.database != ":memory:":
        with contextlib.suppress(FileExistsError):
            os.close(os.open(parsed.database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _schema_head() -> str:
    heads = sorted(p.stem.split("_", 1)[0] for p in (MIGRATIONS / "versions").glob("[0-9]*.py"))
    return heads[-1]


def _upgrade(conn: Connection, fresh: bool = True) -> None:
    # Loading alembic costs memory in every node process; skip it when the schema is current.
    found = inspect(conn)
    if found.has_table("alembic_version"):
        current = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        if current == _schema_head():
            return
    elif fresh and not found.get_table_names():
        # An empty database gets the declared schema at once, stamped at the head, instead of every
        # migration replayed (a province's 3,316 new stores: seconds, not minutes). The migrations build
        # exactly this schema (tests/test_migrations.py), and none of them writes rows.
        metadata.create_all(conn)
        conn.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, "
                          "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))"))
        conn.execute(text("INSERT INTO alembic_version (version_num) VALUES (:v)"), {"v": _schema_head()})
        return
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, "head")



_MIGRATING: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()


def _migrations() -> asyncio.Lock:
    """One migration at a time per event loop: alembic's ``op`` and context are module-global, so two
    stores of one node host upgrading at once would run each other's operations."""
    loop = asyncio.get_running_loop()
    lock = _MIGRATING.get(loop)
    if lock is None:
        lock = _MIGRATING[loop] = asyncio.Lock()
    return lock


# One per kind of server: (dialect, compiled-statement cache), see _adopt_shared.
_SHARED: dict[tuple[str, str | None, int | None], tuple[Any, Any]] = {}
QUERY_CACHE_SIZE = 1200  # distinct statements the whole application issues, with room: shared by a host's stores


def _server_kind(engine: AsyncEngine) -> tuple[str, str | None, int | None]:
    url = engine.sync_engine.url
    return (url.drivername, url.host, url.port)


def _adopt_shared(engine: AsyncEngine) -> None:
    """Let every store of this process on the same kind of server share one dialect and one
    compiled-statement cache.

    SQLAlchemy keys compiled statements (and its type adaptations) by dialect instance, and every
    store has an engine of its own: on a node host each of a county's townships would compile every
    statement again, the largest single cost of a township taking the cascade. A dialect holds what
    it learnt from the server on its first connection (version, features), the same for every
    database of one server, and no per-connection state. Only a dialect that has been initialised is
    shared (_offer_shared runs after the engine's first connection)."""
    shared = _SHARED.get(_server_kind(engine))
    if shared is not None:
        sync = engine.sync_engine
        sync.dialect, sync._compiled_cache = shared
        sync.pool._dialect = shared[0]


def _offer_shared(engine: AsyncEngine) -> None:
    sync = engine.sync_engine
    _SHARED.setdefault(_server_kind(engine), (sync.dialect, sync._compiled_cache))


@functools.lru_cache(maxsize=2)
def _schema_script(dialect: Any) -> str:
    """The declared schema as one SQL script, stamped at the head: what ``create_all`` plus the stamp
    would execute on an empty database, compiled once per process."""
    parts = []
    for table in metadata.sorted_tables:
        parts.append(str(CreateTable(table).compile(dialect=dialect)).strip())
        parts.extend(str(CreateIndex(index).compile(dialect=dialect)).strip()
                     for index in sorted(table.indexes, key=lambda i: i.name or ""))
    parts.append("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, "
                 "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))")
    head = _schema_head()
    if not head.isalnum():
        raise StoreError(f"迁移版本号异常：{head!r} (unexpected migration revision)")
    parts.append(f"INSERT INTO alembic_version (version_num) VALUES ('{head}')")  # noqa: S608 - our own file name, checked
    return "BEGIN;\n" + ";\n".join(parts) + ";\nCOMMIT;\n"


async def _new_sqlite_schema(engine: AsyncEngine) -> None:
    """An empty SQLite store gets the declared schema in one script on the driver's connection: what
    ``create_all`` does statement by statement, each a round trip to aiosqlite's thread (about 700 of
    them, 70 ms of CPU per new store, minutes for the thousands of new stores of a province's hosts).
    A store with any table in it is left to ``_upgrade``."""
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        cursor = await driver.execute("SELECT count(*) FROM sqlite_master")
        (tables,) = await cursor.fetchone()
        await cursor.close()
        if tables == 0:
            await driver.executescript(_schema_script(engine.dialect))


class Store:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._write = asyncio.Lock()
        self.generation = 0  # committed write transactions so far: what read caches are valid against
        self.writes = 0  # committed write transactions, the quiet ones too: whether anything at all changed
        # Called after each committed non-quiet write: how the outbox relay learns of new rows without
        # polling (a node host carries thousands of idle nodes).
        self.on_commit: list[Callable[[], None]] = []

    @classmethod
    async def open(cls, url: str, connections: int = DEFAULT_LIMITS.store_connections, *,
                   fresh_schema: bool = True) -> Store:
        """``connections``: limits.store_connections, the pool's fixed size (no overflow).
        ``fresh_schema`` False: an empty database is built by the migrations too (their test)."""
        check_url(url)
        _create_private(url)
        engine = create_async_engine(url, pool_pre_ping=False, pool_size=connections, max_overflow=0,
                                     query_cache_size=QUERY_CACHE_SIZE)
        _adopt_shared(engine)
        if engine.dialect.name == "sqlite":
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        try:
            if fresh_schema and engine.dialect.name == "sqlite":
                await _new_sqlite_schema(engine)
            async with _migrations(), engine.begin() as conn:
                await conn.run_sync(_upgrade, fresh_schema)
        except BaseException:
            await engine.dispose()  # a store that failed to open leaves no pooled connection behind
            raise
        _offer_shared(engine)
        return cls(engine)

    async def close(self) -> None:
        await self.engine.dispose()

    @asynccontextmanager
    async def tx(self, *, quiet: bool = False) -> AsyncIterator[Tx]:
        """One write transaction. ``quiet``: it writes nothing a cached read shows (the outbox's
        bookkeeping, descendants' reports, audit folding), so it leaves the generation alone."""
        async with self._write:
            async with self.engine.begin() as conn:
                yield Tx(conn)
            self.writes += 1
            if not quiet:
                self.generation += 1  # after the commit: a read that saw the old data is never served again
                for hook in self.on_commit:
                    hook()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Tx]:
        async with self.engine.connect() as conn:
            yield Tx(conn)


class Tx:
    """One transaction (or one read-only connection) and the repositories bound to it."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn
        self.inbox = InboxRepository(conn)
        self.outbox = OutboxRepository(conn)
        self.audit = AuditRepository(conn)
        self.frameworks = FrameworkRepository(conn)
        self.results = ResultRepository(conn)
        self.bundles = BundleRepository(conn)
        self.scores = ScoreRepository(conn)
        self.assessments = AssessmentRepository(conn)
        self.trust = TrustRepository(conn)
        self.reports = ReportRepository(conn)
        self.users = UserRepository(conn)
        self.intake = IntakeRepository(conn)
        self.publications = PublicationRepository(conn)
        self.use_lists = UseListRepository(conn)
        self.feedback = FeedbackRepository(conn)  # 绩效报告 (and what they read of appeals, rectification)
        self.appeals = AppealRepository(conn)
        self.rectification = RectificationRepository(conn)
        self.division_changes = DivisionChangeRepository(conn)  # 区划调整: signed change lists held

    async def counts(self) -> dict[str, int]:
        return {"frameworks": await self.frameworks.count(), "results": await self.results.count(),
                "bundles": await self.bundles.count(), "scores": await self.scores.count(),
                "audit": await self.audit.count(), "outbox_pending": await self.outbox.pending_count(),
                "rejected": await self.audit.refused()}
