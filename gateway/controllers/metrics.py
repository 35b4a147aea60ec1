"""/metrics: the node's Prometheus metrics (text exposition format, nodes/services/metrics.py).

Behind the admin token like the audit log, whose counts it exposes: its labels name the nodes and
subjects that sent refused, replayed or out-of-sequence messages, and each scrape reads the store.
Prometheus scrapes it with ``authorization: {credentials_file: admin.token}``. It is not in the
OpenAPI document (it is not JSON)."""

from __future__ import annotations

from litestar import Controller, Response, get
from litestar.di import NamedDependency
from prometheus_client import CONTENT_TYPE_LATEST

from gateway.guards import require
from nodes.services.metrics import NodeMetrics


class MetricsController(Controller):
    guards = (require("audit.read"),)

    @get("/metrics", include_in_schema=False)
    async def metrics(self, metrics: NamedDependency[NodeMetrics]) -> Response[bytes]:
        return Response(content=await metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
