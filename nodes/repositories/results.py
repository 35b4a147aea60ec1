"""Actual values held: entered here, reported by children, or rolled up here."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from nodes.repositories._sql import bulk_upsert, upsert
from nodes.tables import bundles, results
from sync.approvals import Source
from sync.ports import ResultRecord, ValueKey

_KEY = ["node", "cycle", "period", "framework_digest", "indicator"]
_UPDATE = ["value", "source", "bundle_id", "updated_at"]


class ResultRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def put(self, *, node: str, cycle: str, period: str, framework_digest: str,
                  values: Mapping[str, str], source: str, bundle_id: str, now: int) -> None:
        rows = [{"node": node, "cycle": cycle, "period": period, "framework_digest": framework_digest, "indicator": k,
                 "value": v, "source": source, "bundle_id": bundle_id, "updated_at": now} for k, v in values.items()]
        await upsert(self.conn, results, rows, _KEY, _UPDATE)

    async def put_reported(self, values: Mapping[ValueKey, Mapping[str, str]], now: int) -> None:
        """Values of many bundles at once: (node, cycle, period, framework digest, indicator) →
        {value, bundle_id}; each key at most once, so one statement upserts them all. A value this
        node's data providers entered about the unit (``provided``) stays: it counts over the unit's
        own report, whichever arrived first."""
        keep = await self._provided_keys({(n, c, p, f) for n, c, p, f, _ in values})
        rows = [{"node": n, "cycle": c, "period": p, "framework_digest": f, "indicator": i, "value": v["value"],
                 "source": "reported", "bundle_id": v["bundle_id"], "updated_at": now}
                for (n, c, p, f, i), v in values.items() if (n, c, p, f, i) not in keep]
        await bulk_upsert(self.conn, results, rows, _KEY, _UPDATE)

    async def _provided_keys(self, groups: Iterable[tuple[str, str, str, str]]) -> set[tuple[str, ...]]:
        groups = list(groups)
        if not groups:
            return set()
        q = select(results.c.node, results.c.cycle, results.c.period, results.c.framework_digest,
                   results.c.indicator).where(results.c.source == "provided",
                                              results.c.node.in_(sorted({g[0] for g in groups})))
        wanted = set(groups)
        return {tuple(r) for r in await self.conn.execute(q) if tuple(r[:4]) in wanted}

    async def provided(self, cycle: str, period: str, framework_digest: str,
                       nodes: Iterable[str]) -> dict[str, dict[str, str]]:
        """Values this node's data providers entered about its units (approved here)."""
        q = select(results.c.node, results.c.indicator, results.c.value).where(
            results.c.cycle == cycle, results.c.period == period, results.c.framework_digest == framework_digest,
            results.c.node.in_(list(nodes)), results.c.source == "provided")
        out: dict[str, dict[str, str]] = {}
        for n, i, v in await self.conn.execute(q):
            out.setdefault(str(n), {})[str(i)] = str(v)
        return out

    async def sources(self, cycle: str, period: str, framework_digest: str, nodes: Iterable[str]) -> list[Source]:
        """The children's bundles whose values are held for this framework and period."""
        ids = select(results.c.bundle_id).where(
            results.c.cycle == cycle, results.c.period == period, results.c.framework_digest == framework_digest,
            results.c.node.in_(list(nodes)), results.c.source == "reported").distinct()
        q = select(bundles.c.node, bundles.c.id, bundles.c.seq, bundles.c.message, bundles.c.reviewer).where(
            bundles.c.id.in_(ids)).order_by(bundles.c.node, bundles.c.seq)
        return [Source(str(n), str(i), int(s), bytes(m), str(r)) for n, i, s, m, r in await self.conn.execute(q)]

    async def values(self, cycle: str, period: str, framework_digest: str,
                     nodes: Iterable[str] | None = None) -> dict[str, dict[str, str]]:
        q = select(results.c.node, results.c.indicator, results.c.value).where(
            results.c.cycle == cycle, results.c.period == period, results.c.framework_digest == framework_digest)
        if nodes is not None:
            q = q.where(results.c.node.in_(list(nodes)))
        out: dict[str, dict[str, str]] = {}
        for node, ind, val in await self.conn.execute(q):
            out.setdefault(node, {})[ind] = val
        return out

    async def rows(self, cycle: str, period: str, framework_digest: str, nodes: Iterable[str]) -> list[ResultRecord]:
        """Every value held for ``nodes`` under one framework, with its source and bundle."""
        q = select(results).where(results.c.cycle == cycle, results.c.period == period,
                                  results.c.framework_digest == framework_digest, results.c.node.in_(list(nodes)))
        return [ResultRecord(*row) for row in await self.conn.execute(q.order_by(results.c.node, results.c.indicator))]

    async def of_node(self, node: str, cycle: str | None = None) -> list[ResultRecord]:
        q = select(results).where(results.c.node == node).order_by(results.c.cycle, results.c.period,
                                                                   results.c.indicator)
        if cycle is not None:
            q = q.where(results.c.cycle == cycle)
        return [ResultRecord(*row) for row in await self.conn.execute(q)]

    async def for_indicator(self, cycle: str, period: str, indicator: str) -> list[ResultRecord]:
        q = select(results).where(results.c.cycle == cycle, results.c.period == period,
                                  results.c.indicator == indicator).order_by(results.c.node)
        return [ResultRecord(*row) for row in await self.conn.execute(q)]

    async def count(self) -> int:
        return int((await self.conn.execute(select(func.count()).select_from(results))).scalar_one())
