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
