"""Issue 12: the province's hub as a three-server JetStream cluster (routes over TLS, streams with three
replicas), each city's leaf server listing all three. One hub server is SIGKILLed, the leader of the
stream in use, during a cascade and (after it is back) during a roll-up; every message still reaches
each consumer exactly once. The consumers are the nodes' own (NatsTransport durable pull consumers with
acknowledgements, nkeys and TLS); the publishers retry with the same message id, as the outbox does.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

from nodes.launcher import NatsHierarchy
from nodes.natsconf import inbox_prefix
from sync.transport.nats import NatsTransport, servers
from tests.support.natsservers import topology_access

pytestmark = pytest.mark.slow

N = 8  # messages per publisher; the kill comes after the first half


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[NatsHierarchy]:
    h = NatsHierarchy(tmp_path, secure=True, hub_cluster=3)
    h.add_nodes(topology_access())
    h.start()  # waits for the meta leader: streams with three replicas need one
    try:
        yield h
    finally:
        h.stop()


async def node(h: NatsHierarchy, code: str) -> NatsTransport:
    opts = h.options_for(code)
    return await NatsTransport.connect(h.url_for(code), code, inbox_prefix(code), seed_file=opts["nkeys_seed"],
                                       ca_file=h.ca_file)


async def publish_until_acked(t: NatsTransport, subject: str, payload: bytes, msg_id: str) -> None:
    """As the outbox: the same message id until JetStream acknowledges it (a duplicate is one message)."""
    for _ in range(100):
        try:
            await t.publish(subject, payload, msg_id)
            return
        except Exception:
            await asyncio.sleep(0.2)
    raise AssertionError(f"{subject} {msg_id} never acknowledged")


async def stream_leader(h: NatsHierarchy, stream: str) -> str:
    """The hub server leading ``stream`` ("hub-2"), once every replica is current."""
    nc = await nats.connect(servers(h.operator_url("hub")), **h.operator_options())
    try:
        for _ in range(100):
            try:
                info = await asyncio.wait_for(nc.jetstream().stream_info(stream), 2)
            except Exception:  # a server just restarted, or a leader being elected: ask again
                await asyncio.sleep(0.2)
                continue
            c = info.cluster
            if c and c.leader and c.replicas and len(c.replicas) == 2 and all(r.current for r in c.replicas):
                return c.leader.removeprefix("fedappraisal-")
            await asyncio.sleep(0.2)
    finally:
        await nc.close()
    raise AssertionError(f"{stream}: no leader with current replicas")


class Seen:
    """What one consumer's handler got, and when."""

    def __init__(self) -> None:
        self.count: Counter[bytes] = Counter()
        self.when: dict[bytes, float] = {}

    async def handler(self, batch: list[tuple[str, bytes]]) -> list[bool]:
        for _subject, data in batch:
            self.count[data] += 1
            self.when.setdefault(data, time.monotonic())
        return [True] * len(batch)


async def _never(_s: str, _d: bytes, _why: str) -> None:
    raise AssertionError("nothing may be given up")


async def wait_all(seen: list[Seen], want: set[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not all(want <= set(s.count) for s in seen):
        await asyncio.sleep(0.1)


def test_a_hub_server_killed_during_a_cascade_and_a_roll_up_loses_and_doubles_nothing(cluster: NatsHierarchy) -> None:
    h = cluster
    assert h.hubs == ["hub-1", "hub-2", "hub-3"]
    figures: dict[str, float] = {}

    async def run() -> None:
        province = await node(h, "51")
        cities = {c: await node(h, c) for c in ("5101", "5107")}
        # --- a cascade: the province publishes casc.51 into the hub; each city's durable reads it from
        # its own server's FA_CASCADE (sourced from the hub's)
        casc = {c: Seen() for c in cities}
        for c, t in cities.items():
            t.consume("FA_CASCADE", f"casc-{c}", "casc.51", casc[c].handler, _never)
        want = {f"framework {i}".encode() for i in range(N)}
        leader = await stream_leader(h, "FA_CASCADE")
        for i in range(N):
            if i == N // 2:
                h.kill(leader)  # SIGKILL: as a machine that dies
                killed = time.monotonic()
            await publish_until_acked(province, "casc.51", f"framework {i}".encode(), f"casc-51-{i}")
            if i == N // 2:
                figures["cascade acked"] = time.monotonic() - killed
        await wait_all(list(casc.values()), want, 30)
        after = {f"framework {i}".encode() for i in range(N // 2, N)}  # published after the kill
        figures["cascade"] = max(min(s.when[d] for d in after) for s in casc.values()) - killed
        for c, s in casc.items():
            assert s.count == Counter(dict.fromkeys(want, 1)), (c, s.count)
        # --- the killed server comes back (its store kept) and catches up; then a roll-up: each city's
        # results go up into the hub's FA_RESULTS (sourced per city), read by the province's durable
        h.start_server(leader)
        up = Seen()
        province.consume("FA_RESULTS", "res-51", "res.51.*", up.handler, _never)
        want = {f"{c} roll-up {i}".encode() for c in cities for i in range(N)}
        leader = await stream_leader(h, "FA_RESULTS")
        for i in range(N):
            if i == N // 2:
                h.kill(leader)
                killed = time.monotonic()
            for c, t in cities.items():
                await publish_until_acked(t, f"res.51.{c}", f"{c} roll-up {i}".encode(), f"res-{c}-{i}")
            if i == N // 2:
                figures["roll-up acked"] = time.monotonic() - killed
        await wait_all([up], want, 30)
        figures["roll-up"] = min(up.when[d] for d in want if d.endswith(f" {N // 2}".encode())) - killed
        assert up.count == Counter(dict.fromkeys(want, 1)), up.count
        for t in (province, *cities.values()):
            await t.close()

    asyncio.run(run())
    print("hub server SIGKILL → " + ", ".join(f"{k} {v:.2f} s" for k, v in figures.items()))
    assert all(v < 30 for v in figures.values()), figures
