"""Issue 12, operations: a node's Prometheus metrics read from its real store (ingest per child, lag,
outbox, cascade state per descendant from real signed reports, audit anchors), HTTP latency per
route template, gRPC latency per method through a real grpc.aio server, a host's one exposition of
many nodes, and /ready against a real nats-server."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
import pytest
from litestar.testing import AsyncTestClient
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import create_app
from nodes.config import load_config
from nodes.runtime import FederationHandlers, NatsLink, NodeServices, build_services, gateway_services
from nodes.services.metrics import collect_all, host_registry, stream_of
from nodes.store import Store
from sync.reports import Ref, make_report
from sync.results_sender import send_bundle
from sync.transport.grpc import FederationClient, FederationServicer, RoutingServicer, start_server
from sync.transport.grpc_metrics import NAME as GRPC_HISTOGRAM
from sync.transport.grpc_metrics import interceptor
from sync.transport.nats import NatsTransport
from tests.support.closing import me_of
from tests.support.nodes import make_county
from tests.support.receivers import Memory

AUTH = "authorization"


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Sample name → [(labels, value)], refusing a family that appears twice (the format allows one)."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    names: list[str] = []
    for family in text_string_to_metric_families(text):
        names.append(family.name)
        for s in family.samples:
            out.setdefault(s.name, []).append((dict(s.labels), s.value))
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
    return out


def value(found: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    hits = [v for lab, v in found.get(name, []) if all(lab.get(k) == w for k, w in labels.items())]
    assert len(hits) == 1, (name, labels, found.get(name))
    return hits[0]


async def scrape(node: NodeServices, *paths: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    async with AsyncTestClient(app=create_app(gateway_services(node))) as client:
        for path in paths:
            await client.get(path)
        r = await client.get("/metrics", headers={AUTH: f"Bearer {node.context.cfg.admin_token}"})
    assert r.status_code == 200, r.text
    return samples(r.text)


async def issued_ref(node: NodeServices) -> Ref:
    async with node.context.store.read() as r:
        fw = (await r.frameworks.list(role="issued"))[-1]
    return Ref(fw.issuer, fw.cycle, fw.unit_class, fw.version, fw.digest)


async def test_a_nodes_metrics_show_ingest_lag_outbox_cascade_and_anchors(tmp_path: Path) -> None:
    node, fed = await make_county(tmp_path)
    try:
        ref = await issued_ref(node)
        mem = Memory()
        await send_bundle(mem, me_of(fed, "510104017"),  # type: ignore[arg-type]  # Memory: the outbox alone
                          cycle="2026", period="2026-Y", framework_digest=ref.digest,
                          values={"A1": Decimal(5), "B3": Decimal(80)}, child_scores=(), now=int(time.time()))
        assert (await node.results.submit(mem.queued[0], "510104017"))[0]
        # The township's signed report: it holds the county's framework, its audit head is at 7, and it
        # says it signed 3 bundles (2 of which never arrived: the lag a parent must see).
        report = make_report(me_of(fed, "510104017"), received=[ref], issued=(), refusals=(), audit_head=(7, "d" * 64),
                             descendants=(), now=int(time.time()), bundle_seq=3)
        assert (await node.reports.take(report, "510104017")) == (True, "")
        found = await scrape(node, "/api/v1/status", "/health", f"/public/units/{ref.digest[:9]}")

        assert value(found, "fedappraisal_node_info", code="510104", level="county", parent="5101") == 1
        assert value(found, "fedappraisal_child_bundles_total", child="510104017") == 1
        assert value(found, "fedappraisal_child_bundles_total", child="510104018") == 0
        assert value(found, "fedappraisal_child_last_bundle_seq", child="510104017") == 1
        assert 0 <= value(found, "fedappraisal_child_last_bundle_age_seconds", child="510104017") < 60
        assert not [lab for lab, _ in found["fedappraisal_child_last_bundle_age_seconds"] if lab["child"] == "510104018"]
        assert value(found, "fedappraisal_child_bundles_missing", child="510104017") == 2
        # The county took a framework and issued its own, and wrote its results up: all in the outbox.
        assert value(found, "fedappraisal_outbox_pending", stream="cascade") >= 1
        assert value(found, "fedappraisal_outbox_acknowledged_total", stream="results") == 0
        assert value(found, "fedappraisal_descendant_cascade_state", descendant="510104017", parent="510104",
                     state="current") == 1
        assert value(found, "fedappraisal_descendant_cascade_state", descendant="510104018", state="unreported") == 1
        assert value(found, "fedappraisal_descendant_framework_version", descendant="510104017", role="held",
                     cycle="2026") == ref.version
        assert value(found, "fedappraisal_descendant_framework_version", descendant="510104018", role="held") == 0
        assert value(found, "fedappraisal_audit_anchor_seq", descendant="510104017") == 7
        assert "510104018" not in {lab["descendant"] for lab, _ in found["fedappraisal_audit_anchor_seq"]}
        async with node.context.store.read() as r:
            head, _ = await r.audit.head()
        assert value(found, "fedappraisal_audit_head_seq") == head > 0
        # HTTP latency per route template: the digest in the path is not a label.
        routes = {lab["route"] for lab, _ in found["fedappraisal_http_request_duration_seconds_count"]}
        assert {"/api/v1/status", "/health", "/public/units/{code}"} <= routes, routes
        assert not any(ref.digest[:9] in r for r in routes)
        assert value(found, "fedappraisal_http_request_duration_seconds_count", route="/health", method="GET",
                     status="200") == 1
    finally:
        await node.context.store.close()


def test_outbox_subjects_fold_into_bounded_streams() -> None:
    assert [stream_of(s) for s in ("res.51.5101.510104", "casc.51.5101", "hb.51", "")] == [
        "results", "cascade", "other", "other"]


async def test_a_host_renders_all_its_nodes_once_with_a_node_label(tmp_path: Path) -> None:
    county, fed = await make_county(tmp_path)  # fed: the demo keys the city's configuration uses
    city = build_services(load_config(fed.node_dir("5101") / "node.yaml"),
                          await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'city.db'}"))
    try:
        host = host_registry()
        text = (await collect_all([county.metrics, city.metrics], host)).decode()
        found = samples(text)  # refuses a family twice
        assert {lab["node"] for lab, _ in found["fedappraisal_node_info"]} == {"510104", "5101"}
        assert value(found, "fedappraisal_node_info", node="5101", level="city") == 1
        assert value(found, "fedappraisal_descendant_cascade_state", node="5101", descendant="510104",
                     state="unreported") == 1
        assert all("node" in lab for name, rows in found.items() if name.startswith("fedappraisal_") for lab, _ in rows)
        (rss,) = found["process_resident_memory_bytes"]  # the host's process, once, not per node
        assert rss[1] > 0 and "node" not in rss[0]
    finally:
        await county.context.store.close()
        await city.context.store.close()


async def test_a_host_listens_before_its_nodes_start_and_says_try_again_for_one_starting(tmp_path: Path) -> None:
    """A host's gRPC listener is up before its nodes start (nodes/host.py): a call for a node still
    starting gets UNAVAILABLE, an answer on an open connection, and the same client's next call, once
    the node is added, goes through at once (a refused connection would hold the caller's channel in
    reconnect back-off); a node the host does not carry stays NOT_FOUND."""
    node, _fed = await make_county(tmp_path)
    routing = RoutingServicer({}, starting=["510104"])
    server, port = await start_server("127.0.0.1:0", routing)
    client = FederationClient(f"127.0.0.1:{port}", peer="510104")
    stranger = FederationClient(f"127.0.0.1:{port}", peer="999999999")
    try:
        with pytest.raises(grpc.aio.AioRpcError) as starting:
            await client.fetch_anchor("510104017")
        assert starting.value.code() == grpc.StatusCode.UNAVAILABLE and "starting" in str(starting.value.details())
        routing.add("510104", FederationServicer(FederationHandlers(node), me="510104"))
        began = time.monotonic()
        assert await client.fetch_anchor("510104017") == b""
        assert time.monotonic() - began < 1
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stranger.fetch_anchor("510104017")
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        await client.close()
        await stranger.close()
        await server.stop(None)
        await node.context.store.close()


async def test_grpc_latency_per_method_and_status_through_a_real_server(tmp_path: Path) -> None:
    node, _fed = await make_county(tmp_path)
    registry = CollectorRegistry(auto_describe=False)
    servicer = FederationServicer(FederationHandlers(node), me="510104")
    server, port = await start_server("127.0.0.1:0", RoutingServicer({"510104": servicer}),
                                      interceptors=[interceptor(registry, nodes={"510104"})])
    ok = FederationClient(f"127.0.0.1:{port}", peer="510104")
    stranger = FederationClient(f"127.0.0.1:{port}", peer="999999999")
    try:
        assert await ok.fetch_anchor("510104017") == b""
        assert await ok.fetch_anchor("510104017") == b""
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stranger.fetch_anchor("510104017")
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND
        # A method with no handler is answered by gRPC itself and never becomes a label.
        raw = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await raw.unary_unary("/appraisal.v1.Federation/Made" + "Up")(b"")  # type: ignore[arg-type]
        assert unknown.value.code() == grpc.StatusCode.UNIMPLEMENTED
        await raw.close()
        from prometheus_client import generate_latest

        found = samples(generate_latest(registry).decode())
        count = f"{GRPC_HISTOGRAM}_count"
        method = "/appraisal.v1.Federation/FetchAnchor"
        assert value(found, count, node="510104", method=method, code="OK") == 2
        assert value(found, count, node="", method=method, code="NOT_FOUND") == 1  # not a carried node: no label
        assert {lab["method"] for lab, _ in found[count]} == {method}
    finally:
        await ok.close()
        await stranger.close()
        await server.stop(grace=0)
        await node.context.store.close()


async def test_ready_names_what_is_not_ready_then_answers_200_with_a_real_nats(tmp_path: Path, nats_url: str) -> None:
    node, _fed = await make_county(tmp_path)
    link = NatsLink()
    node = build_services(node.context.cfg, node.context.store, transport=link)
    try:
        async with AsyncTestClient(app=create_app(gateway_services(node))) as client:
            r = await client.get("/ready")
            assert r.status_code == 503 and r.headers["content-type"].startswith("application/problem+json")
            body: dict[str, Any] = r.json()
            assert body["code"] == "node.not_ready" and r.headers["retry-after"] == "5"
            assert {e["where"]: e["code"] for e in body["errors"]} == {
                "nats": "ready.nats", "grpc": "ready.grpc", "trust": "ready.trust"}  # the store answers
            # What the runtime does as it starts: trust loaded, NATS connected, gRPC listening.
            node.context.readiness.trust_loaded = True
            link.nats = await NatsTransport.connect(nats_url, "fedappraisal-510104")
            node.context.readiness.grpc_serving = True
            r = await client.get("/ready")
            assert r.status_code == 200, r.text
            assert r.json() == {"status": "ready", "node": "510104", "checks": [
                {"name": n, "ok": True} for n in ("store", "nats", "grpc", "trust")]}
            await link.nats.close()
            r = await client.get("/ready")
            assert r.status_code == 503 and [e["where"] for e in r.json()["errors"]] == ["nats"]
            # The store's file is gone and a directory stands in its way: no connection can open.
            await node.context.store.engine.dispose()
            (tmp_path / "county.db").rename(tmp_path / "county.db.moved")
            (tmp_path / "county.db").mkdir()
            r = await client.get("/ready")
            assert r.status_code == 503 and [e["where"] for e in r.json()["errors"]] == ["store", "nats"]
            assert (await client.get("/health")).status_code == 200  # alive all the same
    finally:
        await node.context.store.close()


async def test_a_hosts_shared_gateway_measures_each_request_into_its_nodes_registry(tmp_path: Path) -> None:
    from gateway.app import node_scope
    from nodes.host import HostRouter

    node, _fed = await make_county(tmp_path)
    try:
        router = HostRouter("cd", lambda: create_app(None, title="cd"),
                            {"510104": lambda: node_scope(gateway_services(node))}, {"510104": "锦江区"})
        async with AsyncTestClient(app=router) as client:  # type: ignore[type-var]
            assert (await client.get("/health", headers={"host": "510104.localhost"})).status_code == 200
        text = (await collect_all([node.metrics])).decode()
        assert value(samples(text), "fedappraisal_http_request_duration_seconds_count", node="510104", route="/health",
                     status="200") == 1
    finally:
        await node.context.store.close()
