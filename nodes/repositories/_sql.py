"""What several repositories share: the dialect-specific upsert."""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncConnection


def dialect_insert(conn: AsyncConnection, table: Table) -> Any:
    # Import only the dialect in use: a SQLite node need not carry PostgreSQL's (~3 MB per process).
    dialect: Any = importlib.import_module(f"sqlalchemy.dialects.{conn.dialect.name}")
    return dialect.insert(table)


async def upsert(conn: AsyncConnection, table: Table, rows: Sequence[Mapping[str, Any]], keys: Sequence[str],
                 update_cols: Sequence[str]) -> None:
    if not rows:
        return
    stmt = dialect_insert(conn, table)
    stmt = stmt.on_conflict_do_update(index_elements=list(keys), set_={c: getattr(stmt.excluded, c) for c in update_cols})
    await conn.execute(stmt, list(rows))


COPY_FROM = 256  # rows from which PostgreSQL takes a batch by COPY rather than by a multi-row INSERT


async def bulk_upsert(conn: AsyncConnection, table: Table, rows: Sequence[Mapping[str, Any]], keys: Sequence[str],
                      update_cols: Sequence[str]) -> None:
    """``upsert`` for large batches. On PostgreSQL, with the driver's bulk facility: COPY into a
    temporary table (asyncpg ``copy_records_to_table``, binary, in this transaction), then one
    INSERT … SELECT … ON CONFLICT into ``table``. Each key must occur at most once in ``rows``."""
    if conn.dialect.name != "postgresql" or len(rows) < COPY_FROM:
        await upsert(conn, table, rows, keys, update_cols)
        return
    columns = [c.name for c in table.columns]
    staging = f"_copy_{table.name}"
    # Through SQLAlchemy first: its driver adapter opens the transaction lazily, on its first statement,
    # and the COPY below must run inside that transaction, not in autocommit beside it.
    await conn.exec_driver_sql(f'CREATE TEMP TABLE IF NOT EXISTS "{staging}" (LIKE "{table.name}") '
                               "ON COMMIT DELETE ROWS")
    raw = await conn.get_raw_connection()
    driver: Any = raw.driver_connection  # asyncpg's Connection
    await driver.copy_records_to_table(staging, records=[tuple(r[c] for c in columns) for r in rows], columns=columns)
    listed = ", ".join(f'"{c}"' for c in columns)
    conflict = ", ".join(f'"{k}"' for k in keys)
    updates = ", ".join(f'"{c}" = EXCLUDED."{c}"' for c in update_cols)
    # Identifiers only, and all from our own table metadata: no input reaches this text.
    insert = (f'INSERT INTO "{table.name}" ({listed}) SELECT {listed} FROM "{staging}" '  # noqa: S608
              f"ON CONFLICT ({conflict}) DO UPDATE SET {updates}")
    await conn.exec_driver_sql(insert)
    await conn.exec_driver_sql(f'TRUNCATE "{staging}"')  # the next batch of this transaction starts empty
