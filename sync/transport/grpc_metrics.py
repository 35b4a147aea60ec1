"""Latency of the gRPC methods this server answers: a ``grpc.aio`` server interceptor feeding one
Prometheus histogram, ``fedappraisal_grpc_server_handling_seconds{method, code}``.

Labels stay bounded whatever a client sends: a method is labelled only when the server has a
handler for it (a call to a made-up method name is answered UNIMPLEMENTED by gRPC and never
reaches a label), and on a node host the ``node`` label is the ``fa-node`` metadata only when it
names a node the host carries ("" otherwise). The code is the call's gRPC status name.

Usage: ``start_server(..., interceptors=[interceptor(registry)])`` for a node alone (its own
registry), ``interceptor(host_registry, nodes=carried)`` for a host's shared listener.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from typing import Any, cast

import grpc
from prometheus_client import CollectorRegistry, Histogram

NAME = "fedappraisal_grpc_server_handling_seconds"
TARGET_HEADER = "fa-node"  # as sync/transport/grpc.py: the hosted node a call is for
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

Continuation = Callable[[grpc.HandlerCallDetails], Awaitable["grpc.RpcMethodHandler[Any, Any] | None"]]


def _code(context: Any, default: grpc.StatusCode) -> str:
    """The status the handler set (context.abort or set_code), else ``default``."""
    got = context.code()
    if isinstance(got, grpc.StatusCode):
        return got.name
    if isinstance(got, int):  # grpc.aio may hold the numeric value
        return next((c.name for c in grpc.StatusCode if c.value[0] == got), default.name)
    return default.name


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, histogram: Histogram, nodes: Collection[str] = ()) -> None:
        self.histogram = histogram
        self.nodes = frozenset(nodes)

    def _labels(self, method: str, details: grpc.HandlerCallDetails) -> list[str]:
        if not self.nodes:
            return [method]
        target = next((str(v) for k, v in (details.invocation_metadata or ()) if k == TARGET_HEADER), "")
        return [target if target in self.nodes else "", method]

    async def intercept_service(self, continuation: Continuation,
                                handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method  # it has a handler: one of the service's own methods
        base = self._labels(method, handler_call_details)
        observe = self.histogram

        def done(started: float, context: Any, failed: bool) -> None:
            default = grpc.StatusCode.UNKNOWN if failed else grpc.StatusCode.OK
            observe.labels(*base, _code(context, default)).observe(time.perf_counter() - started)

        if handler.unary_unary is not None:
            inner_uu = handler.unary_unary

            async def unary_unary(request: Any, context: Any) -> Any:
                started = time.perf_counter()
                try:
                    reply = await inner_uu(request, context)
                except BaseException:
                    done(started, context, True)
                    raise
                done(started, context, False)
                return reply

            return grpc.unary_unary_rpc_method_handler(unary_unary, handler.request_deserializer,
                                                       handler.response_serializer)
        if handler.unary_stream is not None:
            inner_us = handler.unary_stream

            async def unary_stream(request: Any, context: Any) -> AsyncIterator[Any]:
                started = time.perf_counter()
                try:
                    async for item in cast(AsyncIterator[Any], inner_us(request, context)):
                        yield item
                except BaseException:
                    done(started, context, True)
                    raise
                done(started, context, False)

            return grpc.unary_stream_rpc_method_handler(unary_stream, handler.request_deserializer,
                                                        handler.response_serializer)
        return handler  # client-streaming methods: none in this service; passed through unmeasured


def interceptor(registry: CollectorRegistry, nodes: Collection[str] = ()) -> grpc.aio.ServerInterceptor:
    """The interceptor for one gRPC server, its histogram registered in ``registry``. ``nodes``: the
    codes a host carries (adds the ``node`` label); empty for a node alone."""
    labels = ["node", "method", "code"] if nodes else ["method", "code"]
    histogram = Histogram(NAME, "gRPC 调用处理耗时，按方法与状态码 (gRPC server handling time by method and status code)",
                          labels, registry=registry, buckets=BUCKETS)
    return MetricsInterceptor(histogram, nodes)
