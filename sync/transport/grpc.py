"""gRPC transport: the Federation service and its client, plus the standard health service.

With TLS (the deployment's CA, mutual authentication), the server knows which node asks: a node
may fetch only what is addressed to itself, and queries are rate-limited per calling node so one
node cannot flood another's fan-out. Without TLS (a developer's single machine) the requester
field is taken at its word; the node's status says so.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Protocol

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from proto.appraisal.v1 import appraisal_pb2 as pb
from proto.appraisal.v1 import appraisal_pb2_grpc as pb_grpc
from sync.limits import DEFAULT_LIMITS
from sync.transport.tls import TlsError, TlsFiles, channel_credentials, node_host, peer_code, server_credentials


class Federation(Protocol):
    """What the node answers over gRPC; the servicer only authenticates, rate-limits and delegates."""

    async def fetch_frameworks(self, requester: str, cycle: str) -> tuple[list[bytes], bytes]:
        """The cascade messages addressed to ``requester``, and this node's trust update."""

    async def submit_results(self, message: bytes, caller: str) -> tuple[bool, str]:
        """``caller``: the node code of the caller's TLS certificate (without TLS, its host)."""
    async def query(self, request: pb.QueryRequest) -> pb.QueryReply: ...
    async def fetch_bundles(self, requester: str, after_seq: int) -> list[bytes]: ...
    async def report(self, message: bytes, caller: str | None) -> tuple[bool, str]:
        """A child's signed status report; ``caller``: the mTLS peer's node code (None without TLS)."""

    async def anchor(self, requester: str) -> bytes: ...


MAX_MESSAGE = DEFAULT_LIMITS.grpc_message_bytes
TARGET_HEADER = "fa-node"  # the code of the node a call is for (gRPC metadata)


Context = grpc.aio.ServicerContext[object, object]


class RateLimit:
    """A token bucket per caller: ``rate`` requests a second, bursts up to ``burst``."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, caller: str) -> bool:
        now = time.monotonic()
        tokens, last = self._buckets.get(caller, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if len(self._buckets) > 10_000:
            self._buckets.clear()
        if tokens < 1:
            self._buckets[caller] = (tokens, now)
            return False
        self._buckets[caller] = (tokens - 1, now)
        return True


class FederationServicer(pb_grpc.FederationServicer):
    def __init__(self, node: Federation, *, authenticated: bool = False, query_limit: RateLimit | None = None,
                 me: str = "") -> None:
        self._node = node
        self._authenticated = authenticated
        self._me = me  # this node's code: with TLS, only its ancestors may query it
        self._query_limit = query_limit or RateLimit(rate=20, burst=40)

    def _caller(self, context: Context) -> str:
        """Who is calling: with mutual TLS the certificate's node code; without it only the host (the
        port would make every new connection a new caller)."""
        if self._authenticated:
            return peer_code(context.auth_context()) or ""
        return context.peer().rsplit(":", 1)[0]

    async def _as(self, context: Context, requester: str) -> None:
        """With mutual TLS, a node asks only for itself."""
        if not self._authenticated:
            return
        caller = peer_code(context.auth_context())
        if caller != requester:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                f"TLS 证书属于 {caller}，不能以 {requester[:12]} 的名义请求 (a node may ask only for itself)")

    async def FetchFrameworks(  # noqa: N802 - name fixed by the generated base class
        self, request: pb.FetchFrameworksRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.FetchFrameworksReply:
        await self._as(context, request.requester)
        messages, trust = await self._node.fetch_frameworks(request.requester, request.cycle)
        return pb.FetchFrameworksReply(messages=messages, trust=trust)

    async def SubmitResults(  # noqa: N802
        self, request: pb.SubmitResultsRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.SubmitResultsReply:
        ok, reason = await self._node.submit_results(request.message, self._caller(context))
        return pb.SubmitResultsReply(accepted=ok, reason=reason)

    async def Query(  # noqa: N802
        self, request: pb.QueryRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.QueryReply:
        caller = self._caller(context)
        if self._authenticated and not (self._me and self._me.startswith(caller) and caller != self._me):
            # Drill-down goes from a level to its own subtree: only this node's ancestors ask.
            await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                f"{caller[:12]} 不是本节点的上级，不能查询 (only an ancestor may query this node)")
        if not self._query_limit.allow(caller):
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "查询过于频繁，请稍后再试 (query rate limit exceeded)")
        return await self._node.query(request)

    async def FetchBundles(  # noqa: N802
        self, request: pb.FetchBundlesRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.FetchBundlesReply:
        await self._as(context, request.requester)
        return pb.FetchBundlesReply(messages=await self._node.fetch_bundles(request.requester, request.after_seq))

    async def Report(  # noqa: N802
        self, request: pb.ReportRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.ReportReply:
        caller = (peer_code(context.auth_context()) or "") if self._authenticated else None
        ok, reason = await self._node.report(request.message, caller)
        return pb.ReportReply(accepted=ok, reason=reason)

    async def FetchAnchor(  # noqa: N802
        self, request: pb.FetchAnchorRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.FetchAnchorReply:
        await self._as(context, request.requester)
        return pb.FetchAnchorReply(message=await self._node.anchor(request.requester))


class RoutingServicer(pb_grpc.FederationServicer):
    """One gRPC listener for every node of a host: each call goes to the servicer of the node its
    ``fa-node`` metadata names, and that node's servicer decides, as it does alone, who may ask what
    (the caller is still the node its TLS certificate names). With TLS the host presents the named
    node's own certificate (chosen by the client's SNI, node-<code>.nodes.fedappraisal), so a client
    that reached a host not carrying its peer fails the handshake instead of talking to a stranger.
    A call naming no node goes to the only node, or is refused when there are several.

    ``starting``: nodes the host carries whose servicer is not added yet (``add``). The host listens
    before its nodes start, so that their children's first calls reach it: a call for one of these is
    answered UNAVAILABLE (try again), where a refused connection would put the caller's whole
    subchannel to the host into gRPC's reconnect back-off, shared by every node of the calling process."""

    def __init__(self, nodes: dict[str, FederationServicer], starting: Iterable[str] = ()) -> None:
        self._nodes = dict(nodes)
        self._starting = set(starting) - set(nodes)

    def add(self, code: str, servicer: FederationServicer) -> None:
        self._nodes[code] = servicer
        self._starting.discard(code)

    async def _route(self, context: Context) -> FederationServicer:
        target = next((str(v) for k, v in (context.invocation_metadata() or ()) if k == TARGET_HEADER), "")
        if not target and len(self._nodes) == 1:
            return next(iter(self._nodes.values()))
        servicer = self._nodes.get(target)
        if servicer is None and target in self._starting:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"节点 {target[:12]} 正在启动，请稍后重试 (the node is starting)")
            raise AssertionError("abort returned")  # pragma: no cover - abort always raises
        if servicer is None:
            await context.abort(grpc.StatusCode.NOT_FOUND,
                                f"本主机不承载节点 {target[:12] or '(未指明)'} (this host does not carry that node)")
            raise AssertionError("abort returned")  # pragma: no cover - abort always raises
        return servicer

    async def FetchFrameworks(  # noqa: N802
        self, request: pb.FetchFrameworksRequest, context: Context
    ) -> pb.FetchFrameworksReply:
        return await (await self._route(context)).FetchFrameworks(request, context)

    async def SubmitResults(  # noqa: N802
        self, request: pb.SubmitResultsRequest, context: Context
    ) -> pb.SubmitResultsReply:
        return await (await self._route(context)).SubmitResults(request, context)

    async def Query(self, request: pb.QueryRequest, context: Context) -> pb.QueryReply:  # noqa: N802
        return await (await self._route(context)).Query(request, context)

    async def FetchBundles(  # noqa: N802
        self, request: pb.FetchBundlesRequest, context: Context
    ) -> pb.FetchBundlesReply:
        return await (await self._route(context)).FetchBundles(request, context)

    async def Report(self, request: pb.ReportRequest, context: Context) -> pb.ReportReply:  # noqa: N802
        return await (await self._route(context)).Report(request, context)

    async def FetchAnchor(  # noqa: N802
        self, request: pb.FetchAnchorRequest, context: Context
    ) -> pb.FetchAnchorReply:
        return await (await self._route(context)).FetchAnchor(request, context)


async def start_server(listen: str, servicer: pb_grpc.FederationServicer, tls: TlsFiles | list[TlsFiles] | None = None,
                       max_message: int = MAX_MESSAGE,
                       interceptors: Sequence[grpc.aio.ServerInterceptor] = ()) -> tuple[grpc.aio.Server, int]:
    """``tls``: one node's files, or a host's (one certificate per node, all from one CA).
    ``interceptors``: e.g. the latency histogram of sync/transport/grpc_metrics.py."""
    server = grpc.aio.server(interceptors=list(interceptors) or None,
                             options=[("grpc.max_receive_message_length", max_message),
                                      ("grpc.max_send_message_length", max_message)])
    pb_grpc.add_FederationServicer_to_server(servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_secure_port(listen, server_credentials(tls)) if tls else server.add_insecure_port(listen)
    await server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    await health_servicer.set("appraisal.v1.Federation", health_pb2.HealthCheckResponse.SERVING)
    return server, port


class FederationClient:
    def __init__(self, target: str, tls: TlsFiles | None = None, peer: str | None = None,
                 max_message: int = MAX_MESSAGE) -> None:
        """``peer``: the code of the node expected at ``target``; with TLS its certificate must name it."""
        options: list[tuple[str, object]] = [("grpc.max_receive_message_length", max_message)]
        if tls is None:
            self.channel = grpc.aio.insecure_channel(target, options=options)
        else:
            if not peer:
                raise TlsError("TLS 客户端须指明所连节点 (a TLS client must name the node it expects)", code="tls.no_peer")
            options.append(("grpc.ssl_target_name_override", node_host(peer)))
            self.channel = grpc.aio.secure_channel(target, channel_credentials(tls), options=options)
        self.stub = pb_grpc.FederationStub(self.channel)
        # Which node of the listener is meant: a node host answers many on one port (RoutingServicer).
        self._md: tuple[tuple[str, str], ...] | None = ((TARGET_HEADER, peer),) if peer else None

    async def fetch_frameworks(self, requester: str, cycle: str = "", timeout: float = 5) -> tuple[list[bytes], bytes]:
        reply = await self.stub.FetchFrameworks(pb.FetchFrameworksRequest(requester=requester, cycle=cycle),
                                                timeout=timeout, metadata=self._md)
        return list(reply.messages), reply.trust

    async def submit(self, message: bytes, timeout: float = 5) -> tuple[bool, str]:
        reply = await self.stub.SubmitResults(pb.SubmitResultsRequest(message=message), timeout=timeout, metadata=self._md)
        return reply.accepted, reply.reason

    async def fetch_bundles(self, requester: str, after_seq: int, timeout: float = 10) -> list[bytes]:
        reply = await self.stub.FetchBundles(pb.FetchBundlesRequest(requester=requester, after_seq=after_seq),
                                             timeout=timeout, metadata=self._md)
        return list(reply.messages)

    async def query(self, request: pb.QueryRequest, timeout: float = 5) -> pb.QueryReply:
        reply: pb.QueryReply = await self.stub.Query(request, timeout=timeout, metadata=self._md)
        return reply

    async def report(self, message: bytes, timeout: float = 5) -> tuple[bool, str]:
        reply = await self.stub.Report(pb.ReportRequest(message=message), timeout=timeout, metadata=self._md)
        return reply.accepted, reply.reason

    async def fetch_anchor(self, requester: str, timeout: float = 5) -> bytes:
        reply = await self.stub.FetchAnchor(pb.FetchAnchorRequest(requester=requester), timeout=timeout, metadata=self._md)
        return bytes(reply.message)

    async def close(self) -> None:
        await self.channel.close()
