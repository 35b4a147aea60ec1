"""gRPC transport: the Federation service and its client, plus the standard health service."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from proto.appraisal.v1 import appraisal_pb2 as pb
from proto.appraisal.v1 import appraisal_pb2_grpc as pb_grpc

FetchFn = Callable[[str, str], Awaitable[tuple[list[bytes], bytes]]]  # cascade messages, trust update
SubmitFn = Callable[[bytes], Awaitable[tuple[bool, str]]]
QueryFn = Callable[[pb.QueryRequest], Awaitable[pb.QueryReply]]
BundlesFn = Callable[[str, int], Awaitable[list[bytes]]]
MAX_MESSAGE = 8 * 1024 * 1024


class FederationServicer(pb_grpc.FederationServicer):
    def __init__(self, fetch: FetchFn, submit: SubmitFn, query: QueryFn, bundles: BundlesFn) -> None:
        self._fetch = fetch
        self._submit = submit
        self._query = query
        self._bundles = bundles

    async def FetchFrameworks(  # noqa: N802 - name fixed by the generated base class
        self, request: pb.FetchFrameworksRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.FetchFrameworksReply:
        messages, trust = await self._fetch(request.requester, request.cycle)
        return pb.FetchFrameworksReply(messages=messages, trust=trust)

    async def SubmitResults(  # noqa: N802
        self, request: pb.SubmitResultsRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.SubmitResultsReply:
        ok, reason = await self._submit(request.message)
        return pb.SubmitResultsReply(accepted=ok, reason=reason)

    async def Query(  # noqa: N802
        self, request: pb.QueryRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.QueryReply:
        return await self._query(request)

    async def FetchBundles(  # noqa: N802
        self, request: pb.FetchBundlesRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.FetchBundlesReply:
        return pb.FetchBundlesReply(messages=await self._bundles(request.requester, request.after_seq))


async def start_server(listen: str, servicer: FederationServicer) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", MAX_MESSAGE),
                                      ("grpc.max_send_message_length", MAX_MESSAGE)])
    pb_grpc.add_FederationServicer_to_server(servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_insecure_port(listen)
    await server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    await health_servicer.set("appraisal.v1.Federation", health_pb2.HealthCheckResponse.SERVING)
    return server, port


class FederationClient:
    def __init__(self, target: str) -> None:
        self.channel = grpc.aio.insecure_channel(target, options=[("grpc.max_receive_message_length", MAX_MESSAGE)])
        self.stub = pb_grpc.FederationStub(self.channel)

    async def fetch_frameworks(self, requester: str, cycle: str = "", timeout: float = 5) -> tuple[list[bytes], bytes]:
        reply = await self.stub.FetchFrameworks(pb.FetchFrameworksRequest(requester=requester, cycle=cycle),
                                                timeout=timeout)
        return list(reply.messages), reply.trust

    async def submit(self, message: bytes, timeout: float = 5) -> tuple[bool, str]:
        reply = await self.stub.SubmitResults(pb.SubmitResultsRequest(message=message), timeout=timeout)
        return reply.accepted, reply.reason

    async def fetch_bundles(self, requester: str, after_seq: int, timeout: float = 10) -> list[bytes]:
        reply = await self.stub.FetchBundles(pb.FetchBundlesRequest(requester=requester, after_seq=after_seq),
                                             timeout=timeout)
        return list(reply.messages)

    async def query(self, request: pb.QueryRequest, timeout: float = 5) -> pb.QueryReply:
        reply: pb.QueryReply = await self.stub.Query(request, timeout=timeout)
        return reply

    async def close(self) -> None:
        await self.channel.close()
