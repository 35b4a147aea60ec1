"""A node: one government's deployment at one level.

Design: ``config`` loads and checks a node's configuration (and refuses to start half
configured); ``store`` is the node's database behind one interface for SQLite and PostgreSQL,
with Alembic migrations in ``migrations``; ``service`` wires the store, the keys, the NATS
transport, the gRPC server and the HTTP gateway into one process (``appraise node run``);
``demo`` launches a whole federation of such processes; ``cli`` is the ``appraise`` command.
"""
