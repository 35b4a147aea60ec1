"""Result bundles: this node's own chain and each child's, with their review state."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import case, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from nodes.tables import bundles
from sync.ports import BundleHeader, BundleRecord

_HEADER = [bundles.c.id, bundles.c.node, bundles.c.cycle, bundles.c.period, bundles.c.seq, bundles.c.prev_hash,
           bundles.c.framework_digest, bundles.c.received_at, bundles.c.status, bundles.c.reason, bundles.c.reviewer,
           bundles.c.reviewed_at]
_FULL = [*_HEADER, bundles.c.message]


class BundleRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def last(self, node: str) -> BundleRecord | None:
        row = (await self.conn.execute(
            select(*_FULL).where(bundles.c.node == node).order_by(bundles.c.seq.desc()).limit(1))).first()
        return None if row is None else BundleRecord(*row)

    async def after(self, node: str, after_seq: int, limit: int = 1000) -> list[BundleRecord]:
        res = await self.conn.execute(select(*_FULL).where(bundles.c.node == node, bundles.c.seq > after_seq)
                                      .order_by(bundles.c.seq).limit(limit))
        return [BundleRecord(*row) for row in res]

    async def get(self, bundle_id: str) -> BundleRecord | None:
        row = (await self.conn.execute(select(*_FULL).where(bundles.c.id == bundle_id))).first()
        return None if row is None else BundleRecord(*row)

    async def all(self) -> list[BundleRecord]:
        return [BundleRecord(*row) for row in
                await self.conn.execute(select(*_FULL).order_by(bundles.c.node, bundles.c.seq))]

    async def by_status(self, status: str, limit: int = 1000) -> list[BundleHeader]:
        q = (select(*_HEADER).where(bundles.c.status == status)
             .order_by(bundles.c.received_at.desc(), bundles.c.node).limit(limit))
        return [BundleHeader(*row) for row in await self.conn.execute(q)]

    async def later(self, node: str, seq: int, cycle: str, period: str, framework_digest: str) -> list[BundleHeader]:
        """The same child's later bundles for the same framework and period (they supersede this one)."""
        return [BundleHeader(*row) for row in await self.conn.execute(select(*_HEADER).where(
            bundles.c.node == node, bundles.c.seq > seq, bundles.c.cycle == cycle, bundles.c.period == period,
            bundles.c.framework_digest == framework_digest).order_by(bundles.c.seq))]

    async def review(self, bundle_id: str, status: str, reviewer: str, reason: str, now: int) -> None:
        await self.conn.execute(update(bundles).where(bundles.c.id == bundle_id).values(
            status=status, reviewer=reviewer, reason=reason, reviewed_at=now))

    async def put_many(self, rows: Sequence[Mapping[str, Any]], now: int) -> None:
        if rows:
            await self.conn.execute(insert(bundles), [
                {"id": r["bundle_id"], "received_at": now, **{k: v for k, v in r.items() if k != "bundle_id"}}
                for r in rows])

    async def put(self, *, bundle_id: str, node: str, cycle: str, period: str, seq: int, prev_hash: str,
                  framework_digest: str, message: bytes, now: int, status: str = "accepted", reason: str = "") -> None:
        await self.conn.execute(insert(bundles).values(
            id=bundle_id, node=node, cycle=cycle, period=period, seq=seq, prev_hash=prev_hash,
            framework_digest=framework_digest, message=message, received_at=now, status=status, reason=reason))

    async def summary(self) -> dict[str, dict[str, int]]:
        """Per child: bundles taken into its chain, the last sequence number, when it arrived, and how
        many of them had their content rejected."""
        rows = await self.conn.execute(
            select(bundles.c.node, func.count(), func.max(bundles.c.seq), func.max(bundles.c.received_at),
                   func.sum(case((bundles.c.status == "rejected", 1), else_=0)))
            .group_by(bundles.c.node))
        return {node: {"bundles": int(n), "last_seq": int(seq), "last_at": int(at), "rejected": int(rej or 0)}
                for node, n, seq, at, rej in rows}

    async def count(self) -> int:
        return int((await self.conn.execute(select(func.count()).select_from(bundles))).scalar_one())
