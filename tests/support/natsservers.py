"""A real nats-server configured exactly as the demo renders it (nodes/natsconf.py through
nodes/launcher.NatsServer): one account per node of the demo topology, the streams in FEDERATION made
by the operator with their limits; and connections as a node would make them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
from nats.aio.client import Client

from nodes.launcher import NatsServer, load_topology
from nodes.natsconf import NodeAccess, inbox_prefix


def topology_access() -> list[NodeAccess]:
    """Every node of the demo topology with its path, as the demo's Federation hands them to NATS."""
    specs = load_topology()
    by = {s.code: s for s in specs}

    def path(code: str) -> tuple[str, ...]:
        parent = by[code].parent
        return (*path(parent), code) if parent else (code,)

    return [NodeAccess(s.code, path(s.code), s.parent is not None, bool(s.children)) for s in specs]


@contextlib.contextmanager
def demo_nats(workdir: Path) -> Iterator[NatsServer]:
    server = NatsServer(workdir)
    server.add_nodes(topology_access())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.asynccontextmanager
async def demo_nats_async(workdir: Path) -> AsyncIterator[NatsServer]:
    """``demo_nats`` inside a running event loop (the server's start runs its own, as in the demo)."""
    server = NatsServer(workdir)
    server.add_nodes(topology_access())
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        server.stop()


async def as_node(server: NatsServer, code: str) -> Client:
    """A core connection with node ``code``'s own credentials and inbox prefix (as NatsTransport.connect)."""
    return await nats.connect(server.url_for(code), inbox_prefix=inbox_prefix(code), allow_reconnect=False)
