"""A hierarchy of real nats-servers (docs/design.md rule 12): the province's hub and one leaf server per city,
each with a JetStream domain of its own, joined by leaf-node connections; streams source across
domains with a filter_subject per source.

What flows: the province's cascade reaches every city's server; a city's own results reach the hub,
and its counties' and townships' stay in the city. What does not: a city server's operator publishing
another city's subjects, or the province's, into the hierarchy. The same publishes with plain
leaf-node users (no permissions) do land, which is why the generated configuration restricts them.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

from nodes.launcher import NatsHierarchy, nats_server_binary
from nodes.natsconf import NodeAccess, inbox_prefix, permissions
from tests.support.natsservers import topology_access

pytestmark = pytest.mark.slow


def access() -> list[NodeAccess]:
    return topology_access()


def hierarchy(workdir: Path, *, restrict_leaves: bool) -> NatsHierarchy:
    h = NatsHierarchy(workdir, restrict_leaves=restrict_leaves)
    h.add_nodes(access())
    h.start()  # the hub, then each city's leaf server, then every server's streams
    return h


async def stored(url: str) -> dict[str, dict[str, int]]:
    nc = await nats.connect(url)
    js = nc.jetstream()
    out = {}
    for stream in ("FA_CASCADE", "FA_RESULTS"):
        info = await js.stream_info(stream, subjects_filter=">")
        out[stream] = dict(info.state.subjects or {})
    await nc.close()
    return out


async def traffic(h: NatsHierarchy) -> None:
    """Each node publishes its own subject through its own server; then 绵阳市's server operator
    publishes subjects that belong to the province, to 成都市 and to 锦江区."""
    for server, user, subject in (("hub", "node-51", "casc.51"), ("5101", "node-5101", "res.51.5101"),
                                  ("5101", "node-510104", "res.51.5101.510104"), ("5107", "node-5107", "res.51.5107"),
                                  ("5101", "node-5101", "casc.51.5101")):
        assert h.server_of[user.removeprefix("node-")] == server
        code = user.removeprefix("node-")
        nc = await nats.connect(h.url_for(code), inbox_prefix=inbox_prefix(code))  # as NatsTransport connects
        await nc.jetstream().publish(subject, f"{user}: genuine".encode(), timeout=5)
        await nc.close()
    rogue = await nats.connect(h.operator_url("5107"))
    for subject in ("casc.51", "casc.51.5101", "res.51.5101", "res.51.5101.510104"):
        await rogue.publish(subject, b"forged by the operator of another city's server")
    await rogue.flush()
    await rogue.close()


@pytest.fixture
def restricted(tmp_path: Path) -> Iterator[NatsHierarchy]:
    h = hierarchy(tmp_path, restrict_leaves=True)
    try:
        yield h
    finally:
        h.stop()


def wait_for(h: NatsHierarchy, server: str, want: dict[str, dict[str, int]],
             timeout: float = 15) -> dict[str, dict[str, int]]:
    deadline = time.monotonic() + timeout
    while True:
        got = asyncio.run(stored(h.operator_url(server)))
        if got == want or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


def test_a_hierarchy_carries_only_what_each_server_may(restricted: NatsHierarchy) -> None:
    h = restricted
    asyncio.run(traffic(h))
    time.sleep(1.5)  # time for anything forged to travel, had it been let through
    assert wait_for(h, "hub", {"FA_CASCADE": {"casc.51": 1},
                               "FA_RESULTS": {"res.51.5101": 1, "res.51.5107": 1}}) == {
        "FA_CASCADE": {"casc.51": 1}, "FA_RESULTS": {"res.51.5101": 1, "res.51.5107": 1}}
    assert wait_for(h, "5101", {"FA_CASCADE": {"casc.51": 1, "casc.51.5101": 1},
                                "FA_RESULTS": {"res.51.5101": 1, "res.51.5101.510104": 1}}) == {
        "FA_CASCADE": {"casc.51": 1, "casc.51.5101": 1}, "FA_RESULTS": {"res.51.5101": 1, "res.51.5101.510104": 1}}
    assert wait_for(h, "5107", {"FA_CASCADE": {"casc.51": 1}, "FA_RESULTS": {"res.51.5107": 1}}) == {
        "FA_CASCADE": {"casc.51": 1}, "FA_RESULTS": {"res.51.5107": 1}}


def test_without_the_leaf_restrictions_another_city_can_publish_into_the_hierarchy(tmp_path: Path) -> None:
    """The control: plain leaf-node users. 绵阳市's server operator lands a forged province cascade in the
    hub and forged results in 成都市's stream; the application would still refuse them (signatures and
    subject ownership), but the transport let them through."""
    h = hierarchy(tmp_path, restrict_leaves=False)
    try:
        asyncio.run(traffic(h))
        hub = wait_for(h, "hub", {"FA_CASCADE": {"casc.51": 2}, "FA_RESULTS": {"res.51.5101": 2, "res.51.5107": 1}})
        city = wait_for(h, "5101", {})
    finally:
        h.stop()
    assert hub["FA_CASCADE"]["casc.51"] == 2
    assert city["FA_RESULTS"]["res.51.5101.510104"] == 2 and city["FA_CASCADE"]["casc.51.5101"] == 2


def test_node_users_on_a_city_server_keep_to_their_own_subjects(restricted: NatsHierarchy) -> None:
    async def attempt() -> str:
        errors: list[str] = []

        async def on_error(exc: Exception) -> None:
            errors.append(str(exc))

        nc = await nats.connect(restricted.url_for("510104"), error_cb=on_error)
        await nc.publish("res.51.5101.510105", b"a county posing as its neighbour")
        await nc.flush()
        await asyncio.sleep(0.5)
        await nc.close()
        return " ".join(errors)

    assert "permissions violation" in asyncio.run(attempt()).lower()


def test_deploy_nats_hierarchy_writes_configs_the_server_accepts(tmp_path: Path) -> None:
    import json
    import sys

    out = tmp_path / "nats"
    r = subprocess.run([sys.executable, "-m", "nodes.cli", "deploy", "nats-hierarchy", "--out-dir", str(out)],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.glob("*.conf")) == ["5101.conf", "5107.conf", "hub.conf"]
    for conf in out.glob("*.conf"):
        checked = subprocess.run([nats_server_binary(), "-c", str(conf), "-t"], capture_output=True, text=True,
                                 timeout=30, check=False)
        assert checked.returncode == 0, checked.stdout + checked.stderr
    creds = json.loads((out / "credentials.json").read_text(encoding="utf-8"))
    assert creds["51"]["nats"]["url"] == "nats://nats.sc.example:4222"  # nkeys: no secret in the URL
    assert creds["510104017"]["nats"]["url"] == "nats://nats-5101.sc.example:4222"
    streams = json.loads((out / "streams.json").read_text(encoding="utf-8"))
    assert [s["filter_subject"] for s in streams["hub"]["streams"][1]["sources"]] == ["res.51.5101", "res.51.5107"]
    again = subprocess.run([sys.executable, "-m", "nodes.cli", "deploy", "nats-hierarchy", "--out-dir", str(out)],
                           capture_output=True, text=True, timeout=60, check=False)
    assert again.returncode == 2 and "not overwritten" in again.stderr
    unknown = subprocess.run([sys.executable, "-m", "nodes.cli", "deploy", "nats-streams", "--plan",
                              str(out / "streams.json"), "--server", "5199"], capture_output=True, text=True, timeout=60,
                             check=False)
    assert unknown.returncode == 2 and "no stream plan" in unknown.stderr


def test_a_node_cannot_read_another_nodes_replies_or_widen_its_consumer(restricted: NatsHierarchy) -> None:
    """(Found in review.) Each node subscribes only under its own inbox prefix, and may create its
    durable only with its fixed filter (the legacy filterless create subject is not allowed)."""
    async def attempt() -> list[str]:
        errors: list[str] = []

        async def on_error(exc: Exception) -> None:
            errors.append(str(exc).lower())

        nc = await nats.connect(restricted.url_for("510104"), inbox_prefix=inbox_prefix("510104"), error_cb=on_error)
        await nc.subscribe("_INBOX.5101.>")  # 成都市's replies and pull deliveries
        try:
            await nc.request("$JS.API.CONSUMER.DURABLE.CREATE.FA_RESULTS.res-510104",
                             b'{"stream_name":"FA_RESULTS","config":{"durable_name":"res-510104","filter_subject":"res.>",'
                             b'"ack_policy":"explicit"}}', timeout=2)
        except Exception as exc:  # refused by the server: no reply comes
            errors.append(f"request: {type(exc).__name__}")
        await asyncio.sleep(0.3)
        await nc.close()
        return errors

    errors = asyncio.run(attempt())
    assert any("permissions violation" in e and "_inbox.5101" in e for e in errors), errors
    assert any("permissions violation" in e and "durable.create" in e for e in errors), errors


def test_a_node_on_a_city_server_cannot_land_api_replies_elsewhere(restricted: NatsHierarchy) -> None:
    """Issue 9 item 4 on a hierarchy: 锦江区, on 成都市's server, names another node's subject as the reply of
    each request it may send (tests/test_nats_replies.py for the single server); nothing lands there."""
    me = next(a for a in topology_access() if a.code == "510104")
    requests = [s.replace(".>", ".1.1.1.1.0") for s in permissions(me)["publish"]["allow"] if not s.startswith("hb.")]
    victims = ("casc.51.5101", "res.51.5101.510105", "res.51.5101")  # 成都市's cascade, 青羊区's and 成都市's results

    async def attack() -> tuple[dict[str, dict[str, int]], dict[str, dict[str, int]]]:
        before = {s: await stored(restricted.operator_url(s)) for s in ("hub", "5101")}
        nc = await nats.connect(restricted.url_for("510104"), inbox_prefix=inbox_prefix("510104"))
        for subject in requests:
            for reply in victims:
                await nc.publish(subject, b"{}", reply=reply)
        await nc.flush()
        await asyncio.sleep(1.5)  # time to travel to the hub, had anything landed
        await nc.close()
        return before, {s: await stored(restricted.operator_url(s)) for s in ("hub", "5101")}

    before, after = asyncio.run(attack())
    for server in ("hub", "5101"):
        for stream in ("FA_CASCADE", "FA_RESULTS"):
            for subject in victims:
                assert after[server][stream].get(subject, 0) == before[server][stream].get(subject, 0), (server, subject)
