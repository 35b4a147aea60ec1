"""The Alembic migrations build exactly the schema the code declares (nodes/tables.py), on SQLite
and PostgreSQL: no table, column, type, nullability, key or index differs."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection

from nodes.store import Store
from nodes.tables import metadata


def _diff(conn: Connection) -> list[Any]:
    ctx = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": False})
    return list(compare_metadata(ctx, metadata))


async def test_migrations_produce_the_declared_tables(store: Store) -> None:
    async with store.engine.connect() as conn:
        diff = await conn.run_sync(_diff)
        names = set(await conn.run_sync(lambda c: c.dialect.get_table_names(c)))
    assert diff == [], diff
    assert names - {"alembic_version"} == set(metadata.tables)
