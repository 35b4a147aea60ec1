"""The Alembic migrations build exactly the schema the code declares (nodes/tables.py), on SQLite
and PostgreSQL: no table, column, type, nullability, key or index differs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, text

from nodes.store import MIGRATIONS as STORE_MIGRATIONS
from nodes.store import Store
from nodes.tables import metadata
from tests.support.pg import PgDatabases

MIGRATIONS = STORE_MIGRATIONS / "versions"


def _diff(conn: Connection) -> list[Any]:
    ctx = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": False})
    return list(compare_metadata(ctx, metadata))


@pytest.fixture(params=["sqlite", "postgresql"])
async def two(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Store, Store]]:
    """Two new databases of one backend: one built by replaying every migration, one by Store.open's
    fresh-schema shortcut."""
    dbs = PgDatabases(request.getfixturevalue("pg_admin_dsn")) if request.param == "postgresql" else None

    async def url(name: str) -> str:
        return await dbs.create() if dbs is not None else f"sqlite+aiosqlite:///{tmp_path / name}"

    replayed = await Store.open(await url("replayed.db"), fresh_schema=False)
    fresh = await Store.open(await url("fresh.db"))
    yield replayed, fresh
    await replayed.close()
    await fresh.close()
    if dbs is not None:
        await dbs.drop_all()


async def _schema(store: Store) -> tuple[list[Any], set[str], str]:
    async with store.engine.connect() as conn:
        diff = await conn.run_sync(_diff)
        names = set(await conn.run_sync(lambda c: c.dialect.get_table_names(c)))
        head = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar_one()
    return diff, names, head


async def test_migrations_produce_the_declared_tables(two: tuple[Store, Store]) -> None:
    diff, names, head = await _schema(two[0])
    assert diff == [], diff
    assert names - {"alembic_version"} == set(metadata.tables)
    assert head == sorted(p.stem.split("_", 1)[0] for p in MIGRATIONS.glob("[0-9]*.py"))[-1]


async def test_a_new_store_gets_the_same_schema_at_once_stamped_at_the_head(two: tuple[Store, Store]) -> None:
    """A new database is built from the declared tables and stamped (Store.open's shortcut): the same
    schema and head the migrations give, so later migrations apply to it as to any other."""
    assert await _schema(two[1]) == await _schema(two[0])
