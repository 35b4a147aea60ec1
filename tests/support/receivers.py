"""The receivers' side of a node, for tests that drive the receivers on a real store: a snapshot of
everything but the audit log (its entries, counters and checkpoint), a callback that does nothing,
a county holding its townships' framework, and a township's sending side kept in memory."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from aggregator.framework import Framework
from nodes.store import Store
from nodes.tables import metadata
from proto.appraisal.v1 import appraisal_pb2 as pb
from sync.cascade_receiver import receive_cascade
from sync.identity import Me
from tests.support.hierarchy import NOW, Hierarchy


async def snapshot(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    async with store.read() as r:
        for name, table in metadata.tables.items():
            if not name.startswith("audit_"):
                out[name] = sorted(tuple(row) for row in await r.conn.execute(select(table)))
    return out


async def no_follow_up(tx: Any, *args: Any) -> None:
    return None


async def _county_with_framework(store: Store, h: Hierarchy) -> tuple[Me, Framework, str]:
    """The county issues its framework for its townships (as the node would)."""
    from aggregator.framework import Unit, derive_child_framework
    from sync.cascade_sender import issue_framework

    county = h.me("510104")
    outcome = await receive_cascade(store, county, h.cascade_to_county(), NOW, no_follow_up)
    assert outcome.accepted
    async with store.read() as r:
        row = (await r.frameworks.list(role="received"))[0]
    from nodes.services.context import framework_of

    cfw = framework_of(row)
    tfw = derive_child_framework(cfw, row.digest, "锦江区", "510104",
                                 [Unit("510104017", "锦官驿街道"), Unit("510104018", "东湖街道")],
                                 unit_class="乡镇街道", issued_at=NOW, expires_at=NOW + 86400)
    async with store.tx() as tx:
        digest = await issue_framework(tx, county, tfw, list(pb.CascadeMessage.FromString(row.cascade).frameworks), NOW)
    return county, tfw, digest


class _Bundles(list[Any]):
    """The sent bundles, as a list and as the bundle repository send_bundle writes to."""

    async def last(self, node: str) -> Any:
        return self[-1] if self else None

    async def put(self, **kw: Any) -> None:
        from types import SimpleNamespace

        self.append(SimpleNamespace(id=kw["bundle_id"], seq=kw["seq"], message=kw["message"]))


class _Queue(list[bytes]):
    async def enqueue(self, subject: str, msg_id: str, payload: bytes, now: int) -> None:
        self.append(payload)


class _NoAudit:
    async def append(self, *args: Any) -> None:
        return None


class Memory:
    """A township's sending side, kept in memory (only its outputs matter here)."""

    def __init__(self) -> None:
        self.bundles = _Bundles()
        self.queued = _Queue()
        self.outbox = self.queued
        self.audit = _NoAudit()
