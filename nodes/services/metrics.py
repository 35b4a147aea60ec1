"""Prometheus metrics of one node, in a registry of its own (several nodes may share a process, as
in the tests; the global default registry would mix them).

The counters are read from the audit counters at each scrape (sync/refusals.py): the same exact
numbers as the audit log, kept across restarts, and never counting a batch whose transaction
rolled back. The protocol code in ``sync/`` therefore needs no metrics handle of its own.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from nodes.repositories.audit import CounterRecord
from nodes.services.context import NodeContext
from sync.refusals import kind

FLAGGED = "fedappraisal_flagged_messages"  # exposed as ..._total


class _Flagged(Collector):
    def __init__(self) -> None:
        self.rows: list[CounterRecord] = []

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            FLAGGED, "被拒绝、重放、缺号或分叉的消息，按发送方与类别 "
                     "(messages rejected, replayed, out of sequence or forked, by sender and kind)",
            labels=["sender", "kind"])
        sums: dict[tuple[str, str], int] = {}
        for r in self.rows:
            key = (r.sender, kind(r.action, r.code))
            sums[key] = sums.get(key, 0) + r.total
        for (sender, k), total in sorted(sums.items()):
            family.add_metric([sender, k], total)
        yield family


class NodeMetrics:
    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx
        self.registry = CollectorRegistry(auto_describe=False)
        self._flagged = _Flagged()
        self.registry.register(self._flagged)

    async def exposition(self) -> bytes:
        """The text exposition format, read now."""
        async with self.ctx.store.read() as r:
            rows = await r.audit.counters(limit=100_000)
        self._flagged.rows = rows  # then rendered with no await in between: scrapes cannot interleave
        return generate_latest(self.registry)
