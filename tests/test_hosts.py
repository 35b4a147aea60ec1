"""Node hosts (nodes/host.py): many nodes in one process, one HTTP and one gRPC listener.

End to end, the demo federation runs on three processes (the province alone, one host per city
carrying the city, its counties and their townships) over a real nats-server with mutual TLS, and
passes the demo's own check: the province's roll-up equals the townships' signed values recomputed,
every chain verified, every audit head anchored. Hosting changes where a node runs, not what it
signs: each hosted node answers with its own certificate, and a call to a node a host does not
carry is refused rather than answered by a neighbour.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import grpc
import httpx
import pytest
import yaml
from rich.console import Console

from gateway.deps import NODE_SCOPE
from nodes.demo import Demo
from nodes.host import HostConfigError, HostRouter, load_host_config, node_of_host
from nodes.launcher import DATA, Federation, child_env, load_topology
from proto.appraisal.v1 import appraisal_pb2 as pb
from sync.transport.grpc import FederationClient
from sync.transport.tls import TlsFiles

pytestmark = pytest.mark.slow


def hosts_by_city() -> dict[str, list[str]]:
    specs = load_topology()
    return {f"h{city}": [s.code for s in specs if s.code.startswith(city)] for city in ("5101", "5107")}


def tls_of(fed: Federation, code: str) -> TlsFiles:
    d = fed.node_dir(code)
    return TlsFiles.load(fed.workdir / "tls" / "ca.pem", d / "tls.pem", d / "tls.key")


def test_demo_federation_on_node_hosts_passes_the_demo_check(tmp_path: Path) -> None:
    async def flow() -> None:
        demo = Demo(tmp_path / "fed", Console(quiet=True), load_topology(), hosts=hosts_by_city())
        try:
            await demo.start()
            fed = demo.fed
            assert sorted(fed.procs) == ["51", "host:h5101", "host:h5107"]  # 15 nodes, 3 processes
            # Every node's first status report reaches its parent at once, on its host or beyond: the
            # host listens before its nodes start, and a parent still starting is asked again within a
            # second or two. (A refused connection used to leave the report for the next heartbeat,
            # 10 s on, with the host's channel in back-off.)
            hosted = [c for c in fed.by_code if c != "51"]
            deadline = time.monotonic() + 6
            while True:
                told = {c: (await demo.get(c, "/api/v1/sync"))["report_to_parent"] for c in hosted}
                if all(t["last_sent_at"] and not t["last_error"] for t in told.values()) or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.25)
            assert all(t["last_sent_at"] and not t["last_error"] for t in told.values()), told
            await demo.accounts()
            await demo.cascade(DATA / "sample-framework.yaml")
            await demo.report()
            await demo.check()
            assert demo.summary.ok, demo.summary.problems
            assert demo.summary.rollups_recomputed >= 6 and demo.summary.anchors_held == 14

            county, town, other = fed.by_code["510104"], fed.by_code["510104017"], fed.by_code["510703"]
            assert county.grpc_port == town.grpc_port != other.grpc_port  # one listener per host
            # Each hosted node's own identity on the shared listener: the township's status is its own.
            status = await demo.get(town.code, "/api/v1/status")
            assert status["code"] == town.code
            async with httpx.AsyncClient() as plain:  # the bare host: its index and health, no node's data
                r = await plain.get(f"http://127.0.0.1:{town.http_port}/health")
                assert r.json()["host"] == "h5101" and r.json()["nodes"] == 7
                r = await plain.get(f"http://127.0.0.1:{town.http_port}/api/v1/status")
                assert r.status_code == 404 and r.json()["code"] == "host.unknown_node"
                r = await plain.get(f"http://127.0.0.1:{town.http_port}/api/v1/status",
                                    headers={"Host": f"510703.localhost:{town.http_port}"})
                assert r.status_code == 404  # 涪城区 is on the other host: never answered here
                assert (await plain.get(f"http://127.0.0.1:{town.http_port}/ready")).status_code == 200
                base = f"http://127.0.0.1:{town.http_port}/metrics"
                assert (await plain.get(base)).status_code == 401
                token = (fed.host_dir("h5101") / "metrics.token").read_text(encoding="utf-8").strip()
                text = (await plain.get(base, headers={"Authorization": f"Bearer {token}"})).text
                assert 'node="510104017"' in text and 'node="510703"' not in text  # this host's nodes only

            # gRPC: the township's parent asks it for its bundles over the host's one listener, with TLS.
            client = FederationClient(f"127.0.0.1:{town.grpc_port}", tls_of(fed, county.code), peer=town.code)
            try:
                assert await client.fetch_bundles(county.code, 0)
            finally:
                await client.close()
            # A certified township naming its own parent in the call's metadata (its SNI still names a
            # sibling on the same host) reaches the county's servicer, which decides as it does alone:
            # a township may not query the level above it.
            sneaky = FederationClient(f"127.0.0.1:{town.grpc_port}", tls_of(fed, "510104018"), peer=town.code)
            sneaky._md = (("fa-node", county.code),)
            try:
                with pytest.raises(grpc.aio.AioRpcError) as denied:
                    await sneaky.query(pb.QueryRequest(), timeout=3)
                assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
            finally:
                await sneaky.close()
            # A client expecting a node this host does not carry fails the TLS handshake (SNI picks no
            # certificate naming it), whatever the call's metadata says.
            stray = FederationClient(f"127.0.0.1:{town.grpc_port}", tls_of(fed, "5107"), peer=other.code)
            try:
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await stray.fetch_bundles("5107", 0, timeout=3)
                assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            finally:
                await stray.close()
        finally:
            await demo.close()

    asyncio.run(flow())


def test_host_router_sends_each_request_to_the_node_its_host_name_names() -> None:
    """The shared gateway sees, in each request's scope, the node the host name names: and only that."""
    gateways: list[int] = []

    def gateway():  # type: ignore[no-untyped-def]
        gateways.append(1)

        async def app(scope, receive, send):  # type: ignore[no-untyped-def]
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": scope[NODE_SCOPE]["node_code"].encode()})
        return app

    router = HostRouter("h", gateway, {"510104": lambda: {"node_code": "510104"},
                                       "510104017": lambda: {"node_code": "510104017"}},
                        {"510104": "锦江区", "510104017": "锦官驿街道"})

    async def get(host: str, path: str = "/") -> tuple[int, bytes]:
        transport = httpx.ASGITransport(app=router)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://x") as c:
            r = await c.get(path, headers={"Host": host})
            return r.status_code, r.content

    async def flow() -> None:
        assert gateways == [] and router.built == 0  # nothing is built before a request needs it
        assert await get("510104017.localhost:8443", "/home") == (200, b"510104017")
        assert await get("510104.nodes.example.gov.cn", "/") == (200, b"510104")
        assert await get("510104.localhost") == (200, b"510104")
        assert gateways == [1] and router.built == 2  # one application for every node
        status, body = await get("5101.localhost", "/api/v1/status")
        assert status == 404 and b"host.unknown_node" in body
        status, body = await get("127.0.0.1:8443", "/")
        assert status == 200 and "锦官驿街道".encode() in body and b"//510104017.127.0.0.1:8443/" in body

    asyncio.run(flow())
    assert node_of_host([(b"host", b"510104.localhost")], {"510104": 1}) == "510104"
    assert node_of_host([(b"host", b"evil.510104.localhost")], {"510104": 1}) is None


def test_host_file_errors_name_the_file_and_the_fix(tmp_path: Path) -> None:
    fed = Federation(tmp_path / "fed", load_topology(), hosts={"h": ["510104", "510104017"]})
    fed.prepare()
    good = fed.host_dir("h") / "host.yaml"
    cfg = load_host_config(good)
    assert [n.code for n in cfg.nodes] == ["510104", "510104017"] and cfg.name == "h"
    doc = yaml.safe_load(good.read_text(encoding="utf-8"))

    def bad(change: dict[str, object], code: str) -> None:
        path = fed.host_dir("h") / f"{code}.yaml"
        path.write_text(yaml.safe_dump({**doc, **change}), encoding="utf-8")
        with pytest.raises(HostConfigError) as caught:
            load_host_config(path)
        assert caught.value.code == code and str(path) in str(caught.value)

    bad({"nodes": [doc["nodes"][0]] * 2}, "host.duplicate_node")
    bad({"nodes": ["nowhere/node.yaml"]}, "host.node_missing")
    bad({"nodes": []}, "host.no_nodes")
    bad({"listen": {"http": "8443", "grpc": "127.0.0.1:7443"}}, "host.bad_address")
    bad({"port": 1}, "host.unknown_key")


def test_demo_runs_a_real_hierarchy_on_node_hosts(tmp_path: Path) -> None:
    """`appraise demo --topology 51 --nodes 25`: the first 25 nodes of 四川's 2023 division list (成都市,
    锦江区 and the rest, as the data names them) on one host per city, passing the demo's check."""
    out = subprocess.run([sys.executable, "-m", "nodes.cli", "demo", "--topology", "51", "--nodes", "25", "--check",
                          "--dir", str(tmp_path / "topo")], check=False, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "COLUMNS": "200"})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["ok"] and summary["nodes"] == 25 and summary["descendants_current"] == 24
    assert "成都市" in out.stdout and "节点主机" in out.stdout
    hosts = sorted(p.name for p in (tmp_path / "topo" / "hosts").iterdir())
    assert hosts == ["h5101"]  # 25 nodes: the province alone, then 成都市's first 24 on its host


def test_host_run_refuses_a_bad_host_file_with_its_place(tmp_path: Path) -> None:
    bad = tmp_path / "host.yaml"
    bad.write_text("listen: {http: 127.0.0.1:1, grpc: 127.0.0.1:2}\nnodes: [missing/node.yaml]\n", encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "nodes", "--host", str(bad)], check=False, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2, out.stderr
    assert "host not started" in out.stderr and "node file not found" in out.stderr


def test_node_processes_import_the_code_that_started_them(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A child runs in its own folder: a relative PYTHONPATH must not send it to another copy of the code."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", "elsewhere")
    entries = child_env()["PYTHONPATH"].split(os.pathsep)
    root = Path(__file__).resolve().parents[1]
    assert entries == [str(root), str(tmp_path / "elsewhere")]
    out = subprocess.run([sys.executable, "-c", "import nodes; print(nodes.__file__)"], env=child_env(),
                         cwd="/", capture_output=True, text=True, check=True).stdout
    assert Path(out.strip()).is_relative_to(root)
