"""Faults where two hosts matter (issue 4): 锦江区 runs in a network namespace of its own, joined to
this host by a veth pair, so its link can really be cut. 四川省 → 成都市 → 锦江区 → two 街道.

1. The link is cut one way (the county's packets reach the NATS server, nothing comes back) for
   longer than the stream's de-duplication window. The county's publish is stored but never
   acknowledged, so its outbox sends it again after the window: the stream now holds the bundle
   twice. 成都市 takes it exactly once (its inbox, docs/design.md rule 13), and the county's status was
   honest throughout (pending, with the error).
2. Every parent is down while the province publishes a new version: the city, the county and the
   townships are killed, then restarted children first. Each level catches up when its parent
   returns, and every level ends on the new version.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import nats
import pytest

from nodes.launcher import DATA, Federation, load_topology
from tests.support.federation import CYCLE, PERIOD, Client, healthy, start_all, wait_until

pytestmark = pytest.mark.slow
COUNTY, CITY = "510104", "5101"
WINDOW = 2.0  # seconds of JetStream de-duplication in this test (120 by default)
TOPOLOGY = {"nodes": [
    {"code": "51", "name": "四川省", "level": "province", "parent": None},
    {"code": "5101", "name": "成都市", "level": "city", "parent": "51"},
    {"code": "5107", "name": "绵阳市", "level": "city", "parent": "51"},  # the sample framework names both cities
    {"code": "510104", "name": "锦江区", "level": "county", "parent": "5101"},
    {"code": "510104017", "name": "锦官驿街道", "level": "township", "parent": "510104"},
    {"code": "510104018", "name": "东湖街道", "level": "township", "parent": "510104"},
]}


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=30)


class Namespace:
    """A network namespace with a veth pair to this host (10.213.x.1 here, 10.213.x.2 there)."""

    def __init__(self) -> None:
        n = os.getpid() % 250
        self.name = f"fa-test-{os.getpid()}"
        self.host_if, self.ns_if = f"fah{os.getpid() % 100000}", f"fan{os.getpid() % 100000}"
        self.host_ip, self.ns_ip = f"10.213.{n}.1", f"10.213.{n}.2"

    def create(self) -> None:
        sh("ip", "netns", "add", self.name)
        sh("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
        sh("ip", "link", "set", self.ns_if, "netns", self.name)
        sh("ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
        sh("ip", "link", "set", self.host_if, "up")
        for cmd in (["ip", "addr", "add", f"{self.ns_ip}/30", "dev", self.ns_if], ["ip", "link", "set", self.ns_if, "up"],
                    ["ip", "link", "set", "lo", "up"]):
            sh("ip", "netns", "exec", self.name, *cmd)

    def cut_replies(self) -> None:
        """Drop everything this host sends into the namespace (a blackhole route on this side); the
        namespace's own packets still arrive. (tc netem needs a kernel module this machine lacks.)"""
        sh("ip", "route", "add", "blackhole", f"{self.ns_ip}/32")

    def heal(self) -> None:
        sh("ip", "route", "del", "blackhole", f"{self.ns_ip}/32")

    def inside(self, *args: str) -> str:
        return subprocess.run(["ip", "netns", "exec", self.name, *args], check=True, capture_output=True, text=True,
                              timeout=30).stdout

    def delete(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, check=False, timeout=30)


@pytest.fixture(scope="module")
def namespace() -> Iterator[Namespace]:
    if os.geteuid() != 0 or not shutil.which("ip"):
        pytest.skip("需要 root 与 iproute2 (network namespaces need root and ip)")
    ns = Namespace()
    try:
        ns.create()
    except subprocess.CalledProcessError as exc:
        ns.delete()
        pytest.skip(f"cannot create a network namespace here: {exc.stderr!r}")
    yield ns
    ns.delete()


async def _streams_with_short_window(url: str) -> None:
    """The operator's streams (made by start_nats, with their limits), de-duplicating for WINDOW only."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    for name in ("FA_CASCADE", "FA_RESULTS"):
        config = (await js.stream_info(name)).config
        await js.update_stream(config.evolve(duplicate_window=WINDOW))
    await nc.close()


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory, namespace: Namespace) -> Iterator[tuple[Federation, Client]]:
    base = tmp_path_factory.mktemp("netns")
    (base / "topology.json").write_text(json.dumps(TOPOLOGY, ensure_ascii=False), encoding="utf-8")
    fed = Federation(base / "fed", load_topology(base / "topology.json"))
    county = fed.by_code[COUNTY]
    county.netns, county.host = namespace.name, namespace.ns_ip
    fed.host_gateway = namespace.host_ip
    fed.heartbeat_seconds = 1
    fed.prepare()
    fed.start_nats()
    asyncio.run(_streams_with_short_window(fed.nats.url))
    client = Client(fed)
    try:
        start_all(fed, client)
        framework = (DATA / "sample-framework.yaml").read_text(encoding="utf-8")
        assert client.post("51", "/api/v1/admin/frameworks", {"yaml": framework}).status_code == 201
        wait_until("every level holds its framework", lambda: all(client.frameworks(s.code) for s in fed.specs[1:]), 60)
        for town in ("510104017", "510104018"):
            fw = client.frameworks(town)[-1]
            vals = {i["code"]: i["target"] for i in fw["indicators"] if i["leaf"]}
            assert client.post(town, "/api/v1/admin/values", {"cycle": CYCLE, "period": PERIOD,
                                                              "values": vals}).status_code == 201
        wait_until("the city has the county's roll-up", lambda: _from(client, CITY, COUNTY)["bundles"] >= 1, 60)
        yield fed, client
    finally:
        client.http.close()
        fed.stop_all()


def _from(client: Client, parent: str, child: str) -> dict[str, Any]:
    return {c["code"]: c for c in client.get(parent, "/api/v1/sync")["from_children"]}[child]


async def _stored(url: str, subject: str) -> int:
    nc = await nats.connect(url)
    info = await nc.jetstream().stream_info("FA_RESULTS", subjects_filter=subject)
    await nc.close()
    return int((info.state.subjects or {}).get(subject, 0))


def test_cut_off_longer_than_the_dedup_window_counts_the_bundle_once(split: tuple[Federation, Client],
                                                                     namespace: Namespace) -> None:
    fed, client = split
    county = fed.by_code[COUNTY]
    subject = "res.51.5101.510104"
    stored_before = asyncio.run(_stored(fed.nats.url, subject))
    seen_before = _from(client, CITY, COUNTY)
    fw = client.frameworks(COUNTY)
    received = next(f for f in reversed(fw) if f["role"] == "received")
    values = {i["code"]: str(7000 + n) for n, i in enumerate(received["indicators"]) if i["leaf"]}
    admin = ["curl", "-sS", "--max-time", "10", "-H", f"Authorization: Bearer {fed.tokens[COUNTY]}"]
    namespace.cut_replies()
    try:
        # From inside the namespace: the office at the county enters its values; its node signs and sends.
        body = json.dumps({"cycle": CYCLE, "period": PERIOD, "values": values})
        posted = json.loads(namespace.inside(*admin, "-X", "POST", "-H", "content-type: application/json", "-d", body,
                                             f"{county.url}/api/v1/admin/values"))
        assert "bundle_id" in posted, posted
        time.sleep(WINDOW * 4 + 5)  # several unacknowledged sends, the window long past for the first ones
        status = json.loads(namespace.inside(*admin, f"{county.url}/api/v1/sync"))["results_to_parent"]
        assert status["pending"] >= 1 and status["last_error"], status  # honest: not acknowledged, and why
    finally:
        namespace.heal()
    wait_until("the county's outbox drains after the link heals",
               lambda: client.get(COUNTY, "/api/v1/sync")["results_to_parent"]["pending"] == 0, 90)
    stored = asyncio.run(_stored(fed.nats.url, subject)) - stored_before
    assert stored >= 2, f"expected the stream to hold the bundle more than once, it holds {stored}"
    wait_until("the city takes the county's bundle", lambda: _from(client, CITY, COUNTY)["last_seq"]
               == seen_before["last_seq"] + 1, 60)
    time.sleep(2)  # let every redelivered copy reach the city
    after = _from(client, CITY, COUNTY)
    assert after["bundles"] == seen_before["bundles"] + 1 and after["rejected"] == seen_before["rejected"]
    held = {v["indicator"]: v["value"] for v in client.get(CITY, "/api/v1/values", cycle=CYCLE, node_code=COUNTY)
            if v["period"] == PERIOD and v["source"] == "reported"}
    assert {k: held[k] for k in values} == values
    taken = [e for e in client.get(CITY, "/api/v1/audit", action="accept.results", limit=1000)["entries"]
             if e["subject"] == posted["bundle_id"]]
    assert len(taken) == 1
    assert not [e for e in client.get(CITY, "/api/v1/audit", action="reject.results", limit=1000)["entries"]
                if e["subject"] == posted["bundle_id"]]


def test_every_parent_down_during_a_cascade_then_back_children_first(split: tuple[Federation, Client]) -> None:
    fed, client = split
    below = [CITY, COUNTY, "510104017", "510104018"]
    versions = {c: max(f["version"] for f in client.frameworks(c) if f["role"] == "received") for c in below}
    for code in reversed(below):
        fed.stop_node(code, signal.SIGKILL)
    v2 = (DATA / "sample-framework.yaml").read_text(encoding="utf-8").replace("version: 1", "version: 2")
    assert client.post("51", "/api/v1/admin/frameworks", {"yaml": v2}).status_code == 201
    for code in reversed(below):  # townships first: each parent is still down when its children return
        fed.start_node(code)
        wait_until(f"{code} healthy", lambda code=code: healthy(fed, client, code), 60)
        time.sleep(1)

    def moved_on() -> bool:
        try:
            return all(max(f["version"] for f in client.frameworks(c) if f["role"] == "received") > versions[c]
                       for c in below)
        except (httpx.HTTPError, ValueError):
            return False

    wait_until("every level holds a framework derived from the province's v2", moved_on, 90)
    city_fw = next(f for f in reversed(client.frameworks(CITY)) if f["role"] == "received")
    assert city_fw["issuer"] == "51" and city_fw["version"] == 2
    for code in below:
        assert client.get(code, "/api/v1/audit", limit=1)["intact"], code
        assert not client.get(code, "/api/v1/audit", action="reject.framework")["entries"], code
