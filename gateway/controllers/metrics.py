"""/metrics: the node's Prometheus metrics (text exposition format, nodes/services/metrics.py), and
the middleware that measures every routed HTTP request for them.

Behind the admin token like the audit log, whose counts it exposes: its labels name the nodes and
subjects that sent refused, replayed or out-of-sequence messages, and each scrape reads the store.
Prometheus scrapes it with ``authorization: {credentials_file: admin.token}``. It is not in the
OpenAPI document (it is not JSON)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, cast

from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import CONTENT_TYPE_LATEST

from gateway.deps import NODE_SCOPE
from gateway.guards import require
from nodes.services.metrics import NodeMetrics

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class MetricsController(Controller):
    guards = (require("audit.read"),)

    @get("/metrics", include_in_schema=False)
    async def metrics(self, metrics: NamedDependency[NodeMetrics]) -> Response[bytes]:
        return Response(content=await metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


def _metrics_of(scope: Scope) -> NodeMetrics | None:
    """On a host's shared application: the metrics of the node the request is for."""
    found = cast("Mapping[str, Any] | None", scope.get(NODE_SCOPE))
    return cast(NodeMetrics, found["services"].metrics) if found is not None else None


def http_latency(metrics: NodeMetrics | None) -> Callable[..., ASGIApp]:
    """Litestar middleware: each routed request's time to its last body byte, labelled with the
    route template (``/api/v1/frameworks/{digest:str}``, never the path the client sent), the method
    and the status the response had (problem documents included: an exception handler sits between
    the handler and this middleware). Requests that match no route are not measured here (their
    paths are whatever a client made up). ``metrics`` None: a host's shared application, each request
    measured into the registry of the node it is for."""

    def middleware(app: ASGIApp) -> ASGIApp:
        async def measured(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP:
                await app(scope, receive, send)
                return
            started = time.perf_counter()
            status = 500  # the handler raised past the exception handler, or sent nothing

            async def sending(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                await send(message)

            try:
                await app(scope, receive, sending)
            finally:
                method = str(scope.get("method", ""))
                route: Any = scope.get("path_template") or "unmatched"
                target = metrics if metrics is not None else _metrics_of(scope)
                if target is not None:
                    target.observe_http(str(route), method if method in METHODS else "other", status,
                                        time.perf_counter() - started)

        return measured

    return middleware
