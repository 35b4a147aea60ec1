"""End to end: real node processes, a real nats-server, PostgreSQL stores, real signatures.

One federation (15 nodes) serves the module: a county is down while the province publishes and
catches up after restart; townships report; the province's roll-up is checked against the
townships' own reports; forged traffic injected straight into NATS is refused and audited.
"""

from __future__ import annotations

import asyncio
import base64
import json
import queue
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import nats
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from aggregator.framework import compose
from aggregator.numbers import round_value
from nodes.launcher import DATA, Federation, load_topology
from nodes.natsconf import public_key
from proto.appraisal.v1 import appraisal_pb2 as pb
from sync import keys
from sync.envelope import PAYLOAD_RESULTS, sign
from sync.transport.grpc import FederationClient
from sync.transport.tls import TlsFiles, channel_credentials, create_ca, issue_node_cert, node_host
from tests.support.federation import CYCLE, PERIOD, Client, serving, wait_until
from tests.support.pg import PgDatabases

pytestmark = pytest.mark.slow
DOWN = "510105"  # 青羊区, stopped during the cascade


def tls_of(fed: Federation, code: str) -> TlsFiles:
    d = fed.node_dir(code)
    return TlsFiles.load(fed.workdir / "tls" / "ca.pem", d / "tls.pem", d / "tls.key")


@pytest.fixture(scope="module")
def pg_urls(pg_admin_dsn: str) -> Iterator[dict[str, str]]:
    dbs = PgDatabases(pg_admin_dsn)
    urls = {s.code: asyncio.run(dbs.create()) for s in load_topology()}
    yield urls
    asyncio.run(dbs.drop_all())


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory, pg_urls: dict[str, str]) -> Iterator[tuple[Federation, Client]]:
    fed = Federation(tmp_path_factory.mktemp("fed") / "demo", load_topology(), store_url_for=pg_urls.__getitem__)
    fed.heartbeat_seconds = 1  # a frozen parent is noticed after 3 s
    with serving(fed) as client:
        yield fed, client


def test_cascade_with_a_county_down_then_caught_up(running: tuple[Federation, Client]) -> None:
    fed, client = running
    fed.stop_node(DOWN)
    bad = (DATA / "sample-framework.yaml").read_text(encoding="utf-8").replace("weight: 20\n", "weight: abc\n", 1)
    r = client.post("51", "/api/v1/admin/frameworks", {"yaml": bad, "filename": "../../bad.yaml"})
    assert r.status_code == 422 and "bad.yaml:" in r.text and "expected a number" in r.text
    assert "../" not in r.text and not (fed.workdir.parent / "bad.yaml").exists()
    assert client.frameworks("51") == []
    r = client.post("51", "/api/v1/admin/frameworks",
                    {"yaml": (DATA / "sample-framework.yaml").read_text(encoding="utf-8")})
    assert r.status_code == 201, r.text
    others = [s.code for s in fed.specs if s.code != DOWN and not s.code.startswith(DOWN)]
    for code in others:
        wait_until(f"framework at {code}", lambda code=code: client.holds(code))
    # Issue 9 item 8: the stopped county's state is known above it from the reports it signed: behind,
    # at its city and at the province, and `appraise status` says so with exit 1.
    city = fed.by_code[DOWN].parent
    assert city is not None

    def states(code: str) -> dict[str, str]:
        return {d["node"]: d["state"] for d in client.get(code, "/api/v1/sync")["descendants"]}

    wait_until("the province sees every other node current",
               lambda: all(states("51").get(c) == "current" for c in others if c != "51"))
    assert states("51")[DOWN] in ("lagging", "unreported") and states(city)[DOWN] in ("lagging", "unreported")
    status = subprocess.run([sys.executable, "-m", "nodes.cli", "status", "--gateway", fed.by_code[city].url],
                            capture_output=True, text=True, timeout=60, check=False)
    assert status.returncode == 1 and DOWN in status.stdout and ("滞后" in status.stdout or "未报告" in status.stdout)

    async def purge() -> None:
        # Lose what JetStream held for the stopped county: only gRPC catch-up can bring it back.
        nc = await nats.connect(fed.nats.url)
        await nc.jetstream().purge_stream("FA_CASCADE")
        await nc.close()

    asyncio.run(purge())
    fed.start_node(DOWN)
    for code in [DOWN, *fed.by_code[DOWN].children]:
        wait_until(f"framework at {code} after restart", lambda code=code: client.holds(code), 60)
    # Every descendant, the restarted county's townships included, is current at the province.
    wait_until("every descendant current at the province",
               lambda: states("51") == {s.code: "current" for s in fed.specs if s.code != "51"}, 60)
    accepted = client.get(DOWN, "/api/v1/audit", action="accept.framework")["entries"]
    assert [e["detail"]["issuer"] for e in accepted] == ["5101"]
    # Every township's framework links to its county's, which links to its city's, up to the province.
    town = client.frameworks("510105002")[0]
    assert town["issuer"] == DOWN and all(i["links"] for i in town["indicators"] if i["leaf"])


def test_results_roll_up_to_the_province(running: tuple[Federation, Client]) -> None:
    fed, client = running
    townships = [s for s in fed.specs if s.level == "township"]
    entered: dict[str, dict[str, Decimal]] = {}
    for n, s in enumerate(townships):
        fw = client.frameworks(s.code)[0]
        vals = {i["code"]: Decimal(i["target"]) * Decimal(100 + n) / 100 for i in fw["indicators"] if i["leaf"]}
        r = client.post(s.code, "/api/v1/admin/values",
                        {"cycle": CYCLE, "period": PERIOD, "values": {k: str(v) for k, v in vals.items()}})
        assert r.status_code == 201, r.text

    def province_values() -> dict[str, Decimal]:
        return {v["indicator"]: Decimal(v["value"]) for v in client.get("51", "/api/v1/values", cycle=CYCLE)
                if v["source"] == "rolled_up"}

    wait_until("province roll-up", lambda: len(province_values()) == 8)
    # What the townships themselves hold as their reports, read from their own gateways.
    for s in townships:
        entered[s.code] = {v["indicator"]: Decimal(v["value"])
                           for v in client.get(s.code, "/api/v1/values", cycle=CYCLE) if v["source"] == "entered"}
    rules = {i["code"]: i["rollup"] for i in client.frameworks("51")[0]["indicators"] if i["leaf"]}

    def expected(code: str) -> dict[str, Decimal]:
        spec = fed.by_code[code]
        if spec.level == "township":
            return entered[code]
        kids = [expected(c) for c in spec.children]
        return {ind: round_value(compose(rule, [k[ind] for k in kids])) for ind, rule in rules.items()}

    wait_until("province equals townships", lambda: province_values() == expected("51"))
    # The province verified, from each city's message alone, the city's approval of every county bundle
    # it rolled up and each county's approval of every township bundle below.
    taken = client.get("51", "/api/v1/audit", action="accept.results", limit=1000)["entries"]
    latest = {e["detail"]["node"]: e["detail"] for e in reversed(taken)}  # newest first: the last one wins
    assert latest["5101"]["approved"] == 2 and latest["5101"]["approved_below"] == 4
    assert latest["5107"]["approved"] == 2 and latest["5107"]["approved_below"] == 4
    for code in ("51", "510104"):  # an auditor re-verifies every stored bundle as of its receipt
        audited = subprocess.run([sys.executable, "-m", "nodes.cli", "audit", "bundles", "--config",
                                  str(fed.node_dir(code) / "node.yaml")], capture_output=True, text=True, timeout=60,
                                 check=False)
        assert audited.returncode == 0 and "verify as of when they were received" in audited.stdout, audited.stderr
    ranks = client.get("51", "/api/v1/rankings", cycle=CYCLE, period=PERIOD)
    assert sorted(r["unit"] for r in ranks) == ["5101", "5107"] and {r["rank"] for r in ranks} <= {1, 2}
    drill = client.get("51", "/api/v1/drilldown", cycle=CYCLE, period=PERIOD, indicator="A1", depth=3)
    assert drill["complete"] and {r["unit"] for r in drill["rows"]} == set(fed.by_code)
    a1 = {r["unit"]: Decimal(r["value"]) for r in drill["rows"]}
    assert a1["51"] == sum((entered[s.code]["A1"] for s in townships), Decimal(0))
    for s in fed.specs:
        audit = client.get(s.code, "/api/v1/audit", limit=1)
        assert audit["intact"], s.code
    warnings = client.get("51", "/api/v1/warnings", cycle=CYCLE, period=PERIOD)
    assert {w["unit"] for w in warnings} == {"5101", "5107"} and {w["level"] for w in warnings} <= {"green", "yellow",
                                                                                                     "red"}
    assert client.get("51", "/api/v1/flags")["units"] == []  # one cycle only: nothing can repeat yet
    auth = {"Authorization": f"Bearer {fed.tokens['51']}"}  # computed results: results.interim
    bad = client.http.get(fed.by_code["51"].url + "/api/v1/warnings", params={"cycle": CYCLE, "period": "2026-Q9"},
                          headers=auth)
    assert bad.status_code == 400 and bad.json()["code"] == "request.malformed"  # the schema's pattern refuses it
    other = client.http.get(fed.by_code["51"].url + "/api/v1/warnings", params={"cycle": CYCLE, "period": "2025-Q1"},
                            headers=auth)
    assert other.status_code == 422 and other.json()["code"] == "input.period"  # a period of another cycle
    page = client.http.get(fed.by_code["51"].url + "/dashboard", params={"indicator": "A1"}, headers=auth).text
    assert "绵阳市（5107）" in page and "锦官驿街道（510104017）" in page
    openapi = client.get("51", "/schema/openapi.json")
    assert "/api/v1/drilldown" in openapi["paths"]


def test_a_county_whose_database_was_edited_is_refused_by_its_city(running: tuple[Federation, Client],
                                                                   pg_urls: dict[str, str]) -> None:
    """Issue 9 item 2: 锦江区's operator raises one township's A1 by 1,000 in the county's database. The
    county's next roll-up is signed and approved as usual, but 成都市 recomputes it from the townships'
    own signed bundles inside the message and refuses it, auditing the indicator, both values and the
    sources; what 成都市 holds for 锦江区 stays the townships' sum. Put right, the next roll-up is taken."""
    fed, client = running
    county, towns = "510104", ("510104017", "510104018")
    city = fed.by_code[county].parent
    assert city is not None

    def enter(town: str, scale: int) -> dict[str, Decimal]:
        fw = next(f for f in client.frameworks(town) if f["issuer"] == county)
        vals = {i["code"]: Decimal(i["target"]) * scale / 100 for i in fw["indicators"] if i["leaf"]}
        r = client.post(town, "/api/v1/admin/values",
                        {"cycle": CYCLE, "period": PERIOD, "values": {k: str(v) for k, v in vals.items()}})
        assert r.status_code == 201, r.text
        return vals

    def held_at_city() -> dict[str, Decimal]:
        return {v["indicator"]: Decimal(v["value"]) for v in client.get(city, "/api/v1/values", cycle=CYCLE,
                                                                        node_code=county) if v["period"] == PERIOD}

    entered = {t: enter(t, 131 + n) for n, t in enumerate(towns)}
    honest = sum((entered[t]["A1"] for t in towns), Decimal(0))
    wait_until("city holds the honest roll-up", lambda: held_at_city().get("A1") == honest)

    def edit(delta: str) -> None:
        async def run() -> None:
            conn = await asyncpg.connect(pg_urls[county].replace("postgresql+asyncpg://", "postgresql://", 1))
            try:
                await conn.execute("UPDATE results SET value = (value::numeric + $1::numeric)::text "
                                   "WHERE node = $2 AND indicator = 'A1' AND period = $3", delta, towns[1], PERIOD)
            finally:
                await conn.close()
        asyncio.run(run())

    def refusals() -> list[dict[str, Any]]:
        r = client.http.get(fed.by_code[city].url + "/api/v1/audit", params={"action": "reject.results", "limit": 1000},
                            headers={"Authorization": f"Bearer {fed.tokens[city]}"})
        r.raise_for_status()
        return [e["detail"] for e in r.json()["entries"] if e["detail"].get("code") == "rollup.mismatch"]

    edit("1000")
    entered[towns[0]] = enter(towns[0], 140)  # a new report makes the county roll up again, edited store and all
    wait_until("the city refuses the edited roll-up", lambda: bool(refusals()))
    [refused] = refusals()
    honest = sum((entered[t]["A1"] for t in towns), Decimal(0))
    assert refused["node"] == county and refused["indicator"] == "A1"
    assert Decimal(refused["claimed"]) == honest + 1000 and Decimal(refused["recomputed"]) == honest
    assert {s.split("#")[0] for s in refused["sources"]} == set(towns)
    assert held_at_city()["A1"] != honest + 1000
    edit("-1000")  # put right: the next roll-up agrees with its sources again and is taken
    entered[towns[0]] = enter(towns[0], 141)
    honest = sum((entered[t]["A1"] for t in towns), Decimal(0))
    wait_until("city takes the corrected roll-up", lambda: held_at_city().get("A1") == honest)


def test_the_audit_chain_is_anchored_at_the_parent(running: tuple[Federation, Client],
                                                   pg_urls: dict[str, str]) -> None:
    """Issue 9 item 6: a township's operator rewrites its own enter.values history and recomputes every
    hash, so the chain verifies on its own; `appraise audit verify` compares it with the head the
    township last reported to its county, which the county keeps, and says the history was rewritten."""
    from nodes.audit import entry_hash

    fed, client = running
    town = "510104017"
    county = fed.by_code[town].parent
    assert county is not None
    config = str(fed.node_dir(town) / "node.yaml")
    fw = next(f for f in client.frameworks(town) if f["issuer"] == county)
    r = client.post(town, "/api/v1/admin/values", {"cycle": CYCLE, "period": PERIOD,
                                                    "values": {fw["indicators"][1]["code"]: "7"}})
    assert r.status_code == 201, r.text
    url = pg_urls[town].replace("postgresql+asyncpg://", "postgresql://", 1)

    async def rows() -> list[dict[str, Any]]:
        conn = await asyncpg.connect(url)
        try:
            return [dict(r) for r in await conn.fetch("SELECT * FROM audit_log ORDER BY seq")]
        finally:
            await conn.close()

    entered = max(r["seq"] for r in asyncio.run(rows()) if r["action"] == "enter.values")

    def anchored() -> int:
        return next(d["audit_seq"] for d in client.get(county, "/api/v1/sync")["descendants"] if d["node"] == town)

    wait_until("the county holds an anchor past the entry", lambda: anchored() >= entered)

    def verify(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "nodes.cli", "audit", "verify", "--config", config, *extra],
                              capture_output=True, text=True, timeout=60, check=False)

    ok = verify()
    assert ok.returncode == 0 and "matches the parent's anchor" in ok.stdout, ok.stdout + ok.stderr
    fed.stop_node(town)  # the operator works on a quiet database
    original = asyncio.run(rows())

    async def write(entries: list[dict[str, Any]]) -> None:
        conn = await asyncpg.connect(url)
        try:
            async with conn.transaction():
                for e in entries:
                    await conn.execute("UPDATE audit_log SET detail = $1, prev_hash = $2, hash = $3 WHERE seq = $4",
                                       e["detail"], e["prev_hash"], e["hash"], e["seq"])
        finally:
            await conn.close()

    forged, prev = [], None
    for row in original:
        e = dict(row)
        if e["seq"] == entered:
            e["detail"] = e["detail"].replace('"7"', '"70"')
        if prev is not None:
            e["prev_hash"] = prev
        e["hash"] = entry_hash(e["prev_hash"], e["seq"], e["at"], e["actor"], e["action"], e["subject"], e["detail"])
        prev = e["hash"]
        forged.append(e)
    assert forged[entered - 1]["detail"] != original[entered - 1]["detail"]
    asyncio.run(write(forged))
    try:
        local = verify("--no-anchor")
        assert local.returncode == 0 and "intact" in local.stdout  # the rewrite is self-consistent
        caught = verify()
        assert caught.returncode == 1 and "history rewritten" in caught.stderr, caught.stdout + caught.stderr
    finally:
        asyncio.run(write(original))
        fed.start_node(town)
        wait_until(f"{town} back", lambda: client.get(town, "/health")["code"] == town, 60)
    assert verify().returncode == 0


def test_forged_traffic_injected_into_nats_is_refused(running: tuple[Federation, Client]) -> None:
    fed, client = running
    before = {c: client.frameworks(c) for c in ("5101", "5107")}
    cascade = base64.b64decode(client.frameworks("51")[0]["cascade"])
    msg = pb.CascadeMessage.FromString(cascade)
    env = pb.Envelope.FromString(msg.frameworks[0])
    payload = bytearray(env.payload)
    payload[-3] ^= 0x01  # one byte changed
    env.payload = bytes(payload)
    msg.frameworks[0] = env.SerializeToString()
    rogue = keys.generate()
    bundle = pb.ResultBundle(node="5101", cycle=CYCLE, period=PERIOD, framework_digest="0" * 64, seq=1,
                             prev_hash="0" * 64)
    forged_results = pb.ResultMessage(bundle=sign(PAYLOAD_RESULTS, bundle.SerializeToString(), rogue),
                                      certificate_chain=[]).SerializeToString()

    async def inject() -> None:
        nc = await nats.connect(fed.nats.url)
        js = nc.jetstream()
        await js.publish("casc.51", msg.SerializeToString(), headers={"Nats-Msg-Id": "forged-1"})
        await js.publish("res.51.5101", forged_results, headers={"Nats-Msg-Id": "forged-2"})
        await nc.close()

    asyncio.run(inject())

    def rejected(code: str, action: str) -> list[dict[str, Any]]:
        return list(client.get(code, "/api/v1/audit", action=action)["entries"])

    async def over_grpc() -> tuple[tuple[bool, str], int]:
        target = f"127.0.0.1:{fed.by_code['51'].grpc_port}"
        client_ = FederationClient(target, tls_of(fed, "5101"), "51")  # a node with a good TLS certificate
        try:
            answer = await client_.submit(forged_results)
        finally:
            await client_.close()
        creds = channel_credentials(tls_of(fed, "5101"))
        async with grpc.aio.secure_channel(target, creds, options=[("grpc.ssl_target_name_override", node_host("51"))]) \
                as channel:
            health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
        return answer, health.status

    (accepted, reason), health_status = asyncio.run(over_grpc())
    assert not accepted and "expected key" in reason
    assert health_status == health_pb2.HealthCheckResponse.SERVING
    wait_until("cities reject the tampered framework",
               lambda: all(rejected(c, "reject.framework") for c in ("5101", "5107")))
    wait_until("province rejects the forged bundle", lambda: bool(rejected("51", "reject.results")))
    assert rejected("5101", "reject.framework")[0]["detail"]["code"] == "envelope.bad_signature"
    assert rejected("51", "reject.results")[0]["detail"]["code"] == "envelope.wrong_key"
    assert {c: client.frameworks(c) for c in ("5101", "5107")} == before


def test_grpc_is_mutual_tls_and_a_node_asks_only_for_itself(running: tuple[Federation, Client]) -> None:
    """Every node-to-node gRPC call is mutual TLS with the federation's CA: a plaintext client, a client
    with a certificate from another CA, and a client that reached the wrong node all fail the handshake;
    a node's certificate lets it ask only for itself; only ancestors may query, rate-limited per caller."""
    fed, _ = running
    province = f"127.0.0.1:{fed.by_code['51'].grpc_port}"
    city_tls = tls_of(fed, "5107")
    ca_key, ca_cert = create_ca("someone else's CA")
    key, cert = issue_node_cert(ca_key, ca_cert, "5107")
    outsider = TlsFiles(ca_cert, cert, key)

    async def attempt(client_: FederationClient, requester: str = "5107") -> grpc.StatusCode | None:
        try:
            await client_.fetch_frameworks(requester, timeout=5)
            return None
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        finally:
            await client_.close()

    async def calls() -> dict[str, grpc.StatusCode | None]:
        return {
            "plaintext": await attempt(FederationClient(province)),
            "other CA": await attempt(FederationClient(province, outsider, "51")),
            "wrong node": await attempt(FederationClient(province, city_tls, "5101")),
            "as another node": await attempt(FederationClient(province, city_tls, "51"), requester="5101"),
            "as itself": await attempt(FederationClient(province, city_tls, "51")),
        }

    got = asyncio.run(calls())
    assert got == {"plaintext": grpc.StatusCode.UNAVAILABLE, "other CA": grpc.StatusCode.UNAVAILABLE,
                   "wrong node": grpc.StatusCode.UNAVAILABLE, "as another node": grpc.StatusCode.PERMISSION_DENIED,
                   "as itself": None}

    async def flood(target: str, tls: TlsFiles, peer: str) -> list[grpc.StatusCode | None]:
        """80 queries at once from the node ``tls`` belongs to; the status code of each."""
        client_ = FederationClient(target, tls, peer)
        request = pb.QueryRequest(cycle=CYCLE, period=PERIOD, indicator="A1", depth=0)

        async def one() -> grpc.StatusCode | None:
            try:
                await client_.query(request, timeout=10)
                return None
            except grpc.aio.AioRpcError as exc:
                return exc.code()

        try:
            return list(await asyncio.gather(*(one() for _ in range(80))))
        finally:
            await client_.close()

    codes = asyncio.run(flood(province, city_tls, "51"))
    assert set(codes) == {grpc.StatusCode.PERMISSION_DENIED}  # a city may not query the province
    # The province querying its city: allowed, within the rate limit.
    codes = asyncio.run(flood(f"127.0.0.1:{fed.by_code['5107'].grpc_port}", tls_of(fed, "51"), "5107"))
    assert codes.count(None) >= 20 and grpc.StatusCode.RESOURCE_EXHAUSTED in codes
    assert set(codes) <= {None, grpc.StatusCode.RESOURCE_EXHAUSTED}


def _ports_of(workdir: Path) -> list[int]:
    ports = []
    for cfg in workdir.glob("nodes/*/node.yaml"):
        listen = yaml.safe_load(cfg.read_text(encoding="utf-8"))["listen"]
        ports += [int(listen["grpc"].rsplit(":", 1)[1]), int(listen["http"].rsplit(":", 1)[1])]
    return ports


def _bindable(port: int) -> bool:
    """As the next run's servers would bind (SO_REUSEADDR: TIME_WAIT from closed connections is no obstacle)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True



def test_the_nats_server_refuses_a_node_publishing_as_another(running: tuple[Federation, Client]) -> None:
    """成都市's own NATS user may publish only under its own path: a publish into 绵阳市's results or
    the province's cascade is refused by the server itself (docs/design.md rule 12), before any node sees it."""
    fed, _ = running

    async def attempt() -> tuple[list[bool], bytes, list[str]]:
        errors: list[str] = []

        async def on_error(exc: Exception) -> None:
            errors.append(str(exc))

        nc = await nats.connect(fed.nats.url_for("5101"), error_cb=on_error, allow_reconnect=False)
        js = nc.jetstream()
        refused = []
        for subject in ("res.51.5107", "casc.51"):
            try:
                await js.publish(subject, b"forged", timeout=2, headers={"Nats-Msg-Id": f"forged-{subject}"})
                refused.append(False)
            except Exception:
                refused.append(True)
        await nc.close()
        operator = await nats.connect(fed.nats.url)
        last = await operator.jetstream().get_last_msg("FA_RESULTS", "res.51.5107")
        await operator.close()
        return refused, last.data or b"", errors

    refused, last, errors = asyncio.run(attempt())
    assert refused == [True, True]
    assert last != b"forged"  # 绵阳市's subject holds only what 绵阳市 sent
    assert any("permissions violation" in e.lower() and "res.51.5107" in e for e in errors), errors


def test_demo_stopped_by_ctrl_c_midway_then_check_reruns_cleanly(tmp_path: Path) -> None:
    """The README's demo command, stopped by Ctrl-C while it runs (once the cascade is through: nodes,
    NATS and the office's scenario all live), then the unattended check in the same place: nothing
    left running or holding a port, and nothing the interrupted run left behind stops the rerun."""
    workdir = tmp_path / "demo"
    proc = subprocess.Popen([sys.executable, "-m", "nodes.cli", "demo", "--dir", str(workdir)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    # A reader thread, not select(): buffered lines would be invisible to select on the descriptor.
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(ln) for ln in proc.stdout], daemon=True)  # type: ignore[union-attr]
    reader.start()
    seen: list[str] = []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not any("cascade complete" in ln for ln in seen):
        try:
            seen.append(lines.get(timeout=1))
        except queue.Empty:
            if proc.poll() is not None:
                break
    output = "".join(seen)
    assert "cascade complete" in output and "成都市（5101）" in output, output[-3000:]
    assert "锦官驿街道" in output  # progress names the real units
    # Never a NATS secret. The demo's NATS runs as a province's does (issue 12): every user an nkey,
    # the server holding public keys only, each seed in a 0600 file.
    conf = json.loads((workdir / "nats" / "nats-server.conf").read_text(encoding="utf-8"))
    users = [u for account in conf["accounts"].values() for u in account["users"]]
    assert users and all(set(u) <= {"nkey", "permissions"} for u in users)  # no password anywhere
    assert conf["tls"]["cert_file"]  # and TLS on every client connection
    seeds = [workdir / "nats" / "seeds" / "operator.nk", *(workdir / "nodes").glob("*/nats.nk")]
    assert len(seeds) == 16
    for seed_file in seeds:
        seed = seed_file.read_text(encoding="ascii").strip()
        assert stat.S_IMODE(seed_file.stat().st_mode) == 0o600 and seed not in output
        assert public_key(seed) in {u["nkey"] for u in users}
    assert "operator:" not in output
    ports = _ports_of(workdir)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    reader.join(timeout=10)  # the pipe closes when the demo exits
    proc.stdout.close()
    rest = "".join(lines.get_nowait() for _ in range(lines.qsize()))
    assert "收到中断" in rest and "所有进程已停止" in rest, rest[-2000:]
    assert proc.returncode in (0, 130)
    leftovers = subprocess.run(["pgrep", "-f", str(workdir)], capture_output=True, check=False)
    assert leftovers.stdout == b"", "processes left behind after Ctrl-C"
    assert all(_bindable(p) for p in ports), "ports still held after Ctrl-C"

    again = subprocess.run([sys.executable, "-m", "nodes.cli", "demo", "--check", "--dir", str(workdir)],
                           capture_output=True, text=True, timeout=480, check=False)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    # What the person is told at the end: the gateway, and where the office's admin token is.
    assert "省级网关 (province gateway)" in again.stdout
    assert f"{workdir}/nodes/51/admin.token" in again.stdout.replace("\n", "")
    assert "operator:" not in again.stdout
    summary = json.loads(again.stdout.strip().splitlines()[-1])
    assert summary["ok"] is True and summary["nodes"] == 15 and summary["values"] == 64
    # the close of the year: 公示 and final at the 7 nodes with units (8 classes), the appeal, every proof
    # checked with the province key alone, a report per unit
    assert (summary["publications"], summary["finals"], summary["appeals"]) == (8, 8, 1)
    assert summary["proofs_verified"] == 8 and summary["rollups_in_proofs"] > 0
    assert summary["feedback_reports"] == 17 and summary["comments_answered"] == 1
    for key in ("cascade_seconds", "rollup_seconds"):
        assert summary[key] > 0
    assert subprocess.run(["pgrep", "-f", str(workdir)], capture_output=True, check=False).stdout == b""


def test_nats_killed_then_restarted_nothing_lost_and_status_is_honest(running: tuple[Federation, Client]) -> None:
    """SIGKILL the nats-server, report a changed value meanwhile, restart it: the status says what is
    pending and why while it is down, and afterwards the province's total moves by exactly the change."""
    fed, client = running
    town, county = "510704003", "510704"
    before_total = Decimal(next(v["value"] for v in client.get("51", "/api/v1/values", cycle=CYCLE)
                                if v["indicator"] == "A1" and v["source"] == "rolled_up" and v["period"] == PERIOD))
    before_town = Decimal(next(v["value"] for v in client.get(town, "/api/v1/values", cycle=CYCLE)
                               if v["indicator"] == "A1" and v["source"] == "entered" and v["period"] == PERIOD))
    fw = client.frameworks(town)[-1]
    vals = {i["code"]: i["target"] for i in fw["indicators"] if i["leaf"]}
    old = {v["indicator"]: v["value"] for v in client.get(town, "/api/v1/values", cycle=CYCLE)
           if v["source"] == "entered" and v["period"] == PERIOD}
    vals.update(old)
    vals["A1"] = str(before_town + 1000)

    fed.nats.stop(signal.SIGKILL)
    r = client.post(town, "/api/v1/admin/values", {"cycle": CYCLE, "period": PERIOD, "values": vals})
    assert r.status_code == 201, r.text

    def waiting() -> bool:
        up = client.get(town, "/api/v1/sync")["results_to_parent"]
        return bool(up["pending"] >= 1 and up["last_error"])

    wait_until("the township admits its bundle is not delivered", waiting, 30)
    status = subprocess.run([sys.executable, "-m", "nodes.cli", "status", "--gateway", fed.by_code[town].url],
                            capture_output=True, text=True, timeout=60, check=False)
    assert status.returncode == 1 and "未连接 (disconnected)" in status.stdout, status.stdout

    fed.nats.start()
    wait_until("the outbox drains after the restart",
               lambda: client.get(town, "/api/v1/sync")["results_to_parent"]["pending"] == 0, 60)

    def province_total() -> Decimal:
        return Decimal(next(v["value"] for v in client.get("51", "/api/v1/values", cycle=CYCLE)
                            if v["indicator"] == "A1" and v["source"] == "rolled_up" and v["period"] == PERIOD))

    wait_until("the change reaches the province", lambda: province_total() == before_total + 1000, 60)
    kids = {c["code"]: c for c in client.get(county, "/api/v1/sync")["from_children"]}
    assert kids[town]["last_seq"] == 2 and kids[town]["rejected"] == 0  # exactly one more bundle, not two
    # Core NATS heartbeats missed while the server was down are not replayed: the next ones make the
    # parent fresh again within a few periods (a second each here), and only then is all well.
    wait_until("the township hears its parent again",
               lambda: bool(client.get(town, "/api/v1/sync")["parent_heartbeat"]["fresh"]), 30)
    ok = subprocess.run([sys.executable, "-m", "nodes.cli", "status", "--gateway", fed.by_code[town].url],
                        capture_output=True, text=True, timeout=60, check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr



def test_a_gap_is_pulled_from_the_child_over_grpc(running: tuple[Federation, Client]) -> None:
    """涪城区 is down while 城厢街道 reports twice; the stream loses the first of the two. On restart the
    county sees the gap, pulls the missing bundle from the township over gRPC, and nothing is counted twice."""
    fed, client = running
    county, town, other = "510703", "510703001", "510703003"
    fw = client.frameworks(town)[-1]
    entered = {v["indicator"]: v["value"] for v in client.get(town, "/api/v1/values", cycle=CYCLE)
               if v["source"] == "entered" and v["period"] == PERIOD}
    seq_before = {c["code"]: c for c in client.get(county, "/api/v1/sync")["from_children"]}[town]["last_seq"]
    fed.stop_node(county)
    for bump in (1, 2):
        vals = {**{i["code"]: i["target"] for i in fw["indicators"] if i["leaf"]}, **entered}
        vals["A1"] = str(Decimal(entered["A1"]) + bump)
        assert client.post(town, "/api/v1/admin/values", {"cycle": CYCLE, "period": PERIOD, "values": vals}).status_code == 201
    wait_until("both bundles are in the stream",
               lambda: client.get(town, "/api/v1/sync")["results_to_parent"]["pending"] == 0)

    async def lose_the_first() -> None:
        nc = await nats.connect(fed.nats.url)
        await nc.jetstream().purge_stream("FA_RESULTS", subject=f"res.51.5107.{county}.{town}", keep=1)
        await nc.close()

    asyncio.run(lose_the_first())
    fed.start_node(county)
    wait_until("the county has both bundles",
               lambda: {c["code"]: c for c in client.get(county, "/api/v1/sync")["from_children"]}[town]["last_seq"]
               == seq_before + 2, 60)
    kids = {c["code"]: c for c in client.get(county, "/api/v1/sync")["from_children"]}
    assert kids[town]["bundles"] == seq_before + 2 and kids[town]["rejected"] == 0
    accepted = [e["detail"] for e in client.get(county, "/api/v1/audit", action="accept.results", limit=1000)["entries"]
                if e["detail"]["node"] == town]
    assert {"seq": seq_before + 1, "via": "grpc"}.items() <= next(d for d in accepted if d["seq"] == seq_before + 1).items()

    def county_a1() -> Decimal:
        return Decimal(next(v["value"] for v in client.get(county, "/api/v1/values", cycle=CYCLE)
                            if v["indicator"] == "A1" and v["source"] == "rolled_up" and v["period"] == PERIOD))

    other_a1 = Decimal(next(v["value"] for v in client.get(other, "/api/v1/values", cycle=CYCLE)
                            if v["indicator"] == "A1" and v["source"] == "entered" and v["period"] == PERIOD))
    wait_until("the county rolls up the latest report once", lambda: county_a1() == Decimal(entered["A1"]) + 2 + other_a1)



def test_a_lost_last_bundle_shows_as_a_gap_and_is_pulled(running: tuple[Federation, Client]) -> None:
    """Issue 9 item 1: 城厢街道's only new bundle is lost from the stream while 涪城区 is down, so no later
    bundle reveals a gap. The township's signed report says which bundle it signed last: the county
    shows it as missing and pulls it over gRPC."""
    fed, client = running
    county, town = "510703", "510703001"
    fw = client.frameworks(town)[-1]
    entered = {v["indicator"]: v["value"] for v in client.get(town, "/api/v1/values", cycle=CYCLE)
               if v["source"] == "entered" and v["period"] == PERIOD}

    def child() -> dict[str, Any]:
        return {c["code"]: c for c in client.get(county, "/api/v1/sync")["from_children"]}[town]

    wait_until("the county holds all the township reported", lambda: child()["missing"] == 0 and child()["last_seq"] > 0)
    before = child()["last_seq"]
    fed.stop_node(county)
    vals = {**{i["code"]: i["target"] for i in fw["indicators"] if i["leaf"]}, **entered}
    vals["A1"] = str(Decimal(entered["A1"]) + 5)
    assert client.post(town, "/api/v1/admin/values", {"cycle": CYCLE, "period": PERIOD, "values": vals}).status_code == 201
    wait_until("the bundle is in the stream", lambda: client.get(town, "/api/v1/sync")["results_to_parent"]["pending"] == 0)

    async def lose_it() -> None:
        nc = await nats.connect(fed.nats.url)
        await nc.jetstream().purge_stream("FA_RESULTS", subject=f"res.51.5107.{county}.{town}")
        await nc.close()

    asyncio.run(lose_it())
    fed.start_node(county)
    wait_until("the county pulls the bundle it was told about", lambda: child()["last_seq"] == before + 1, 60)
    assert child()["missing"] == 0 and child()["reported_seq"] == before + 1
    accepted = [e["detail"] for e in client.get(county, "/api/v1/audit", action="accept.results", limit=1000)["entries"]
                if e["detail"]["node"] == town and e["detail"]["seq"] == before + 1]
    assert accepted and accepted[0]["via"] == "grpc"


def test_a_county_killed_mid_ingest_loses_nothing_and_counts_nothing_twice(running: tuple[Federation, Client]) -> None:
    """Both townships of 锦江区 report while the county is SIGKILLed mid-way; after its restart the
    county's roll-up equals the townships' latest reports, each taken exactly once."""
    fed, client = running
    county, towns = "510104", ("510104017", "510104018")
    seq_before = {c["code"]: c["last_seq"] for c in client.get(county, "/api/v1/sync")["from_children"]}
    for step in range(3):
        for town in towns:
            fw = client.frameworks(town)[-1]
            vals = {i["code"]: str(Decimal(i["target"]) + step) for i in fw["indicators"] if i["leaf"]}
            assert client.post(town, "/api/v1/admin/values",
                               {"cycle": CYCLE, "period": PERIOD, "values": vals}).status_code == 201
        if step == 1:
            fed.stop_node(county, signal.SIGKILL)
    fed.start_node(county)

    def caught_up() -> bool:
        seqs = {c["code"]: c["last_seq"] for c in client.get(county, "/api/v1/sync")["from_children"]}
        return all(seqs[t] == seq_before[t] + 3 for t in towns)

    wait_until("the county has every bundle once", caught_up, 60)
    latest = {t: Decimal(next(v["value"] for v in client.get(t, "/api/v1/values", cycle=CYCLE)
                              if v["indicator"] == "A1" and v["source"] == "entered" and v["period"] == PERIOD))
              for t in towns}
    wait_until("the county rolls up the latest reports", lambda: Decimal(next(
        v["value"] for v in client.get(county, "/api/v1/values", cycle=CYCLE)
        if v["indicator"] == "A1" and v["source"] == "rolled_up" and v["period"] == PERIOD)) == sum(latest.values()))
    kids = {c["code"]: c for c in client.get(county, "/api/v1/sync")["from_children"]}
    assert all(kids[t]["bundles"] == seq_before[t] + 3 and kids[t]["rejected"] == 0 for t in towns)
    assert client.get(county, "/api/v1/audit", limit=1)["intact"]


def test_every_child_hears_its_parent_and_a_frozen_parent_is_noticed(running: tuple[Federation, Client]) -> None:
    """Rule 7: each parent's signed heartbeat keeps its children fresh; a parent frozen with SIGSTOP
    (its process alive, its port open, its output gone) turns its townships' status stale, and
    `appraise status` says so with exit code 1, until it resumes."""
    fed, client = running
    children = [s.code for s in fed.specs if s.parent is not None]
    wait_until("every child has a fresh heartbeat",
               lambda: all(client.get(c, "/api/v1/sync")["parent_heartbeat"]["fresh"] for c in children), 30)
    county, town = "510105", "510105002"

    def cli_status(code: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "nodes.cli", "status", "--gateway", fed.by_code[code].url],
                              capture_output=True, text=True, timeout=60, check=False)

    assert cli_status(town).returncode == 0
    fed.procs[county].send_signal(signal.SIGSTOP)
    try:
        wait_until("the township notices its county is silent",
                   lambda: not client.get(town, "/api/v1/sync")["parent_heartbeat"]["fresh"], 15)
        stale = cli_status(town)
        assert stale.returncode == 1 and "possibly frozen" in stale.stdout, stale.stdout
    finally:
        fed.procs[county].send_signal(signal.SIGCONT)
    wait_until("fresh again once the county resumes",
               lambda: client.get(town, "/api/v1/sync")["parent_heartbeat"]["fresh"], 15)


def test_a_revoked_township_is_refused_and_the_list_reaches_it(running: tuple[Federation, Client]) -> None:
    """青羊区 revokes 草市街道's certificate: the signed list reaches the township with the next heartbeat,
    and the county refuses what the township signs from then on, saying why, in its audit log."""
    _, client = running
    county, town = "510105", "510105003"
    bad = client.post(county, "/api/v1/admin/revocations", {"code": "510104017", "serial": 1})
    assert bad.status_code == 422 and bad.json()["code"] == "revocations.not_a_child" and "only its children" in bad.text
    r = client.post(county, "/api/v1/admin/revocations", {"code": town, "serial": 1, "reason": "密钥泄露演练"})
    assert r.status_code == 201 and r.json()["list_version"] == 1, r.text
    wait_until("the township holds its county's list",
               lambda: client.get(town, "/api/v1/sync")["revocation_lists"].get(county) == 1, 15)
    fw = client.frameworks(town)[-1]
    vals = {i["code"]: i["target"] for i in fw["indicators"] if i["leaf"]}
    assert client.post(town, "/api/v1/admin/values", {"cycle": CYCLE, "period": PERIOD, "values": vals}).status_code == 201

    def refused() -> list[dict[str, Any]]:
        return [e for e in client.get(county, "/api/v1/audit", action="reject.results", limit=1000)["entries"]
                if e["detail"].get("code") == "trust.revoked"]

    wait_until("the county refuses the revoked township's bundle", lambda: bool(refused()), 15)
    assert "密钥泄露演练" in refused()[0]["detail"]["reason"]
    revoked = client.get(county, "/api/v1/audit", action="revoke.certificate")["entries"]
    assert revoked[0]["subject"] == town and revoked[0]["detail"]["serial"] == 1


def test_an_authored_decomposition_is_never_overwritten(running: tuple[Federation, Client]) -> None:
    """成都市 writes its own decomposition; when the province issues v2, the node flags it, not replaces it."""
    from tests.support.frameworks import CITY

    _, client = running
    r = client.post("5101", "/api/v1/admin/frameworks", {"yaml": CITY.replace('class: 县市区', 'class: 县市区\nversion: 2'),
                                                         "filename": "chengdu.yaml"})
    assert r.status_code == 201, r.text
    authored = r.json()["digest"]
    wait_until("counties receive 成都市's own framework",
               lambda: all(any(f["digest"] == authored for f in client.frameworks(c)) for c in ("510104", "510105")))
    v2 = (DATA / "sample-framework.yaml").read_text(encoding="utf-8").replace("version: 1", "version: 2")
    assert client.post("51", "/api/v1/admin/frameworks", {"yaml": v2}).status_code == 201
    wait_until("绵阳市 derives from v2", lambda: any(f["role"] == "issued" and f["parent"]["version"] == 2
                                                    for f in client.frameworks("5107")))
    wait_until("成都市 flags its own framework",
               lambda: bool(client.get("5101", "/api/v1/audit", action="needs.redecomposition")["entries"]))
    issued = [f for f in client.frameworks("5101") if f["role"] == "issued"]
    assert issued[-1]["digest"] == authored  # not replaced
    flag = client.get("5101", "/api/v1/audit", action="needs.redecomposition")["entries"][0]["detail"]
    assert flag["still_fits"] is True and flag["parent_version"] == 2

