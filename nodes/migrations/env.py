"""Alembic environment: run against the connection the store hands over, or a URL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from nodes.tables import metadata

config = context.config
connection = config.attributes.get("connection")
if connection is not None:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    url = config.get_main_option("sqlalchemy.url") or ""
    sync_url = url.replace("+aiosqlite", "").replace("+asyncpg", "+psycopg")
    with create_engine(sync_url).connect() as conn:
        context.configure(connection=conn, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
