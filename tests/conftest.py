"""Shared fixtures: a real PostgreSQL (from FEDAPPRAISAL_TEST_PG, 127.0.0.1:5432, or a throwaway
pgserver) and a store on each backend."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from nodes.store import Store


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def pg_admin_dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A libpq DSN of a PostgreSQL server we may create databases in."""
    env = os.environ.get("FEDAPPRAISAL_TEST_PG")
    if env:
        yield env
        return
    if _reachable("127.0.0.1", 5432):
        yield "postgresql://postgres@127.0.0.1:5432/postgres"
        return
    import pgserver

    server = pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="stop")
    yield server.get_uri()


class PgDatabases:
    """Creates fresh databases on the test server and drops them afterwards."""

    def __init__(self, admin_dsn: str) -> None:
        self.admin_dsn = admin_dsn
        self.created: list[str] = []

    async def create(self) -> str:
        name = f"fa_test_{uuid.uuid4().hex[:12]}"
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        self.created.append(name)
        return self.url(name)

    def url(self, name: str) -> str:
        base, _, query = self.admin_dsn.partition("?")
        base = base.rsplit("/", 1)[0] + "/" + name
        url = base.replace("postgresql://", "postgresql+asyncpg://", 1)
        return f"{url}?{query}" if query else url

    async def drop_all(self) -> None:
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            for name in self.created:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()
        self.created.clear()


@pytest.fixture
async def pg_databases(pg_admin_dsn: str) -> AsyncIterator[PgDatabases]:
    dbs = PgDatabases(pg_admin_dsn)
    yield dbs
    await dbs.drop_all()


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """The same store interface on every backend."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'node.db'}"
        dbs = None
    else:
        dbs = PgDatabases(request.getfixturevalue("pg_admin_dsn"))
        url = await dbs.create()
    s = await Store.open(url)
    yield s
    await s.close()
    if dbs is not None:
        await dbs.drop_all()

