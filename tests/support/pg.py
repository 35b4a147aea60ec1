"""Fresh PostgreSQL databases on the test server (see the ``pg_admin_dsn`` fixture in tests/conftest.py)."""

from __future__ import annotations

import uuid

import asyncpg


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
