"""Services against real gRPC peers over mutual TLS (the demo's CA and node certificates): a
catch-up that gave up recovers, and a node never forwards a drill-down deeper than its limit."""

from __future__ import annotations

import json
from pathlib import Path

from proto.appraisal.v1 import appraisal_pb2 as pb
from sync.transport.grpc import FederationServicer, start_server
from sync.transport.tls import TlsFiles
from tests.support.nodes import make_county


class Peer:
    """A neighbour's Federation service that answers with nothing and remembers what it was asked."""

    def __init__(self) -> None:
        self.depths: list[int] = []
        self.fetched: list[str] = []

    async def fetch_frameworks(self, requester: str, cycle: str) -> tuple[list[bytes], bytes]:
        self.fetched.append(requester)
        return [], b""

    async def submit_results(self, message: bytes, caller: str) -> tuple[bool, str]:
        return False, "not here"

    async def query(self, request: pb.QueryRequest) -> pb.QueryReply:
        self.depths.append(request.depth)
        return pb.QueryReply()

    async def fetch_bundles(self, requester: str, after_seq: int) -> list[bytes]:
        return []


def tls_of(fed_dir: Path, code: str) -> TlsFiles:
    d = fed_dir / "nodes" / code
    return TlsFiles.load(fed_dir / "tls" / "ca.pem", d / "tls.pem", d / "tls.key")


async def test_a_catch_up_that_gave_up_recovers_when_the_parent_answers(tmp_path: Path) -> None:
    node, fed = await make_county(tmp_path, limits={"catch_up_attempts": 1, "retry_initial_seconds": 0.01,
                                                     "rpc_timeout_seconds": 0.5})
    try:
        await node.watch.catch_up()  # 成都市 is not there yet
        assert [g["what"] for g in node.context.health.gave_up] == ["catch-up"]
        parent = Peer()
        server, _ = await start_server(node.context.cfg.parent_grpc, FederationServicer(parent, authenticated=True,
                                                                                         me="5101"),
                                       tls_of(fed.workdir, "5101"))
        try:
            await node.watch.catch_up()
        finally:
            await server.stop(grace=0)
        assert parent.fetched == ["510104"]  # asked, as itself (its TLS certificate)
        assert node.context.health.gave_up == []  # recovered: nothing waits any more
        assert (await node.read.sync_status())["gave_up"] == []
    finally:
        await node.context.store.close()


async def test_a_live_cascade_consumer_postpones_catch_up_until_a_heartbeat_period_has_passed(tmp_path: Path) -> None:
    """A heartbeat names a framework the stream has not delivered yet. While the node's cascade
    consumer is live the node waits (the grace doubling) up to one heartbeat period before it asks
    the parent over gRPC; with the consumer down it asks after the first grace."""
    import asyncio
    import time

    from sync.trust_updates import Pulse

    node, fed = await make_county(tmp_path, heartbeat_seconds=2,
                                  limits={"catch_up_grace_seconds": 0.05, "rpc_timeout_seconds": 2})
    parent = Peer()
    server, _ = await start_server(node.context.cfg.parent_grpc, FederationServicer(parent, authenticated=True,
                                                                                     me="5101"),
                                   tls_of(fed.workdir, "5101"))
    now = int(time.time())
    try:
        asked_after = {}
        for live in (True, False):
            node.watch.stream_live = lambda live=live: live
            node.watch.pulse = Pulse(now, now + 60, (("2026", "乡镇街道", 1, "ab" * 32),), 0)
            parent.fetched.clear()
            t0 = time.monotonic()
            await asyncio.wait_for(node.watch._catch_up_unless_delivered({"ab" * 32}), 10)
            asked_after[live] = time.monotonic() - t0
            assert parent.fetched == ["510104"], live
    finally:
        await server.stop(grace=0)
        await node.context.store.close()
    assert asked_after[True] >= 2.0 and asked_after[False] < 1.5, asked_after


async def test_a_drill_down_descends_no_deeper_than_the_nodes_limit(tmp_path: Path) -> None:
    for limit, forwarded in ((3, 2), (1, 0)):
        node, fed = await make_county(tmp_path / str(limit), limits={"query_depth": limit})
        town = node.context.cfg.children[0]
        child = Peer()
        server, _ = await start_server(town.grpc, FederationServicer(child, authenticated=True, me=town.code),
                                       tls_of(fed.workdir, town.code))
        try:
            reply = await node.query.query(pb.QueryRequest(cycle="2026", period="2026-Y", indicator="A1", depth=3))
        finally:
            await server.stop(grace=0)
            await node.context.store.close()
        assert child.depths == [forwarded], limit
        assert town.code not in reply.partial  # it answered; the other township did not


async def test_a_flood_of_submissions_names_the_callers_certificate_in_a_bounded_log(tmp_path: Path) -> None:
    """SubmitResults takes any node's certificate; each refusal names the caller's, and a flood from
    one certificate is one audit entry plus a count, not an entry per call."""
    from nodes.runtime import FederationHandlers
    from sync.transport.grpc import FederationClient

    node, fed = await make_county(tmp_path)
    servicer = FederationServicer(FederationHandlers(node), authenticated=True, me="510104")
    server, port = await start_server("127.0.0.1:0", servicer, tls_of(fed.workdir, "510104"))
    client = FederationClient(f"127.0.0.1:{port}", tls_of(fed.workdir, "5107"), "510104")  # 绵阳市's certificate
    try:
        for _ in range(300):
            accepted, reason = await client.submit(b"\xff\xff\xff\xff not a message")
            assert not accepted and "malformed" in reason
        async with node.context.store.read() as r:
            entries = await r.audit.entries(action="reject.results")
            counters = await r.audit.counters()
    finally:
        await client.close()
        await server.stop(grace=0)
        await node.context.store.close()
    assert [json.loads(e.detail)["sender"] for e in entries] == ["grpc:5107"]
    assert [(c.sender, c.code, c.total, c.pending) for c in counters] == [("grpc:5107", "results.malformed", 300, 299)]
