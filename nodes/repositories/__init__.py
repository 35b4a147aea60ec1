"""The node's repositories, one module per domain, each bound to one connection.

They implement the ports of ``sync/ports.py`` (and the node-only ones for scores and
assessments) over SQLAlchemy Core, on SQLite and PostgreSQL alike, and return typed records,
never driver rows. ``nodes/store.py`` hands them out, all on one transaction, as a ``Tx``.
"""
