"""Issue 9 item 4: every stream has limits (messages, bytes, age, messages per subject), so no node can
fill a server's disk; a full stream refuses new messages rather than dropping ones a parent has not
consumed, and what it refused stays pending in the sender's outbox. Streams made by an older version
(no limits) are updated without losing a message. Real nats-servers; the outbox on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import nats
import pytest
from nats.js.api import DiscardPolicy, StorageType, StreamConfig
from nats.js.errors import APIError

from aggregator.errors import TransportFailure
from nodes.launcher import NatsServer
from nodes.natsconf import ServerPlan, plan_hierarchy, single_stream_plan, stream_plan
from nodes.runtime import NatsLink
from nodes.services.outbox import OutboxRelay
from sync.limits import DEFAULT_LIMITS, Limits
from sync.retry import RetryPolicy
from sync.transport.nats import STREAM_RESULTS, NatsTransport, create_streams, stream_limits
from tests.support.federation import CYCLE, PERIOD
from tests.support.natsservers import demo_nats, demo_nats_async, topology_access
from tests.support.nodes import make_county
from tests.support.pg import PgDatabases

pytestmark = pytest.mark.slow

MINE, NEIGHBOUR, BIG = "res.51.5101.510104", "res.51.5101.510105", "res.51.5107"


def test_every_planned_stream_has_the_limits() -> None:
    nodes = topology_access()
    cities = [n.code for n in nodes if len(n.path) == 2]
    plans: list[ServerPlan] = plan_hierarchy(nodes, "h:1", "h:2", dict.fromkeys(cities, "c:3"), "h", dict.fromkeys(cities, "x"))
    streams = single_stream_plan() + [s for plan in plans for s in stream_plan(plan, "51", cities)]
    assert len(streams) == 2 + 2 * len(plans)
    want = stream_limits(DEFAULT_LIMITS)
    assert want["discard"] == "new" and want["discard_new_per_subject"] is True
    for spec in streams:
        assert {k: spec[k] for k in want} == want, spec["name"]


async def config_of(server: NatsServer, stream: str) -> StreamConfig:
    nc = await nats.connect(server.url)
    info = await nc.jetstream().stream_info(stream)
    await nc.close()
    return info.config


async def flood(server: NatsServer, code: str, subject: str, count: int, size: int) -> tuple[int, list[str]]:
    """Node ``code`` publishes ``count`` messages of ``size`` bytes on its own subject: (stored, refusals)."""
    transport = await NatsTransport.connect(server.url_for(code), code, f"_INBOX.{code}")
    stored, refused = 0, []
    try:
        for i in range(count):
            try:
                await transport.publish(subject, bytes(size), f"{code}-{time.monotonic_ns()}-{i}")
                stored += 1
            except APIError as exc:
                refused.append(str(exc.description))
    finally:
        await transport.close()
    return stored, refused


def test_a_flood_from_one_node_is_bounded_by_the_limits(tmp_path: Path) -> None:
    small = Limits(stream_max_msgs_per_subject=5, stream_max_bytes=64 * 1024)
    with demo_nats(tmp_path) as server:
        made = asyncio.run(config_of(server, STREAM_RESULTS))  # as the demo's launcher made it
        assert (made.max_bytes, made.max_msgs, made.max_msgs_per_subject, made.max_age, made.discard) == (
            DEFAULT_LIMITS.stream_max_bytes, DEFAULT_LIMITS.stream_max_msgs, DEFAULT_LIMITS.stream_max_msgs_per_subject,
            DEFAULT_LIMITS.stream_max_age_seconds, DiscardPolicy.NEW)
        asyncio.run(create_streams(server.url, single_stream_plan(small)))  # the operator lowers them
        # 锦江区 floods its own subject: five are stored, the rest refused; 青羊区 is not affected.
        mine = asyncio.run(flood(server, "510104", MINE, 40, 100))
        neighbour = asyncio.run(flood(server, "510105", NEIGHBOUR, 3, 100))
        # 绵阳市 sends the largest it can: the stream's bytes stop it, every other subject keeps its messages.
        big = asyncio.run(flood(server, "5107", BIG, 40, 20 * 1024))

        async def state() -> tuple[int, dict[str, int]]:
            nc = await nats.connect(server.url)
            info = await nc.jetstream().stream_info(STREAM_RESULTS, subjects_filter=">")
            await nc.close()
            return info.state.bytes, dict(info.state.subjects or {})

        held, subjects = asyncio.run(state())
    assert mine[0] == 5 and len(mine[1]) == 35 and set(mine[1]) == {"maximum messages per subject exceeded"}
    assert neighbour == (3, [])
    assert 0 < big[0] < 5 and set(big[1]) == {"maximum bytes exceeded"}
    assert subjects == {MINE: 5, NEIGHBOUR: 3, BIG: big[0]}
    assert held <= small.stream_max_bytes


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_a_publish_a_full_stream_refuses_stays_pending_in_the_outbox(backend: str, tmp_path: Path,
                                                                             pg_databases: PgDatabases) -> None:
    url = await pg_databases.create() if backend == "postgresql" else None
    node, _fed = await make_county(tmp_path, store_url=url)
    store = node.context.store
    async with demo_nats_async(tmp_path / "nats") as server:
        await create_streams(server.url, single_stream_plan(Limits(stream_max_msgs_per_subject=1)))
        assert (await flood(server, "510104", MINE, 1, 10))[0] == 1  # its subject is now full
        transport = await NatsTransport.connect(server.url_for("510104"), "510104", "_INBOX.510104")
        link = NatsLink()
        link.nats = transport
        relay = OutboxRelay(node.context, link.publish, RetryPolicy())
        try:
            await node.entry.enter_values(CYCLE, PERIOD, {"A1": "1500"}, "admin")
            assert await relay.relay_once() == {MINE}  # refused by the stream: the row waits
            status = await node.read.sync_status()
            up = status["results_to_parent"]
            assert up["pending"] == 1 and "maximum messages per subject exceeded" in up["last_error"], up
            assert await relay.relay_once() == {MINE}  # and waits again, in order, nothing dropped
            async with store.read() as r:
                (row,) = [row for row in await r.outbox.pending() if row.subject == MINE]
            # The operator makes room (here by raising the limit); the same row goes, once.
            await create_streams(server.url, single_stream_plan(Limits(stream_max_msgs_per_subject=10)))
            assert await relay.relay_once() == set()
            assert (await node.read.sync_status())["results_to_parent"]["pending"] == 0
            nc = await nats.connect(server.url)
            last = await nc.jetstream().get_last_msg(STREAM_RESULTS, MINE)
            await nc.close()
            assert last.data == row.payload and (last.headers or {}).get("Nats-Msg-Id") == row.msg_id
        finally:
            await transport.close()
            await store.close()


async def test_streams_of_an_older_version_get_the_limits_without_losing_a_message(nats_url: str) -> None:
    """As the previous version made them: no limits, discard old. A subject holding more than the new
    per-subject limit, and messages older than the new age limit, stay."""
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    try:
        for name, subject in (("FA_CASCADE", "casc.>"), ("FA_RESULTS", "res.>")):
            await js.add_stream(StreamConfig(name=name, subjects=[subject], storage=StorageType.FILE, duplicate_window=120.0))
        for i in range(8):
            await js.publish(MINE, b"bundle %d" % i, headers={"Nats-Msg-Id": f"old-{i}"})
        await js.publish("casc.51", b"framework", headers={"Nats-Msg-Id": "old-c"})
        node = await NatsTransport.connect(nats_url, "510104")
        await node.ensure_streams()  # a node reports the missing limits, and changes nothing
        await node.close()
        assert "no limit on" in node.last_error and "appraise deploy nats-streams" in node.last_error
        assert (await js.stream_info(STREAM_RESULTS)).config.max_bytes in (None, -1)
        await asyncio.sleep(2.2)  # now older than the new age limit
        newer = Limits(stream_max_msgs_per_subject=3, stream_max_age_seconds=2)
        await create_streams(nats_url, single_stream_plan(newer))  # the operator's appraise deploy nats-streams
        await asyncio.sleep(0.5)  # a plain update to 2 s would have expired every one of them by now
        info = await js.stream_info(STREAM_RESULTS, subjects_filter=">")
        cfg = info.config
        assert info.state.subjects == {MINE: 8} and info.state.first_seq == 1
        assert [(await js.get_msg(STREAM_RESULTS, seq)).data for seq in range(1, 9)] == [b"bundle %d" % i for i in range(8)]
        assert (await js.stream_info("FA_CASCADE")).state.messages == 1
        assert cfg.discard == DiscardPolicy.NEW and cfg.discard_new_per_subject
        assert cfg.max_bytes == newer.stream_max_bytes and cfg.max_msgs == newer.stream_max_msgs
        assert cfg.max_msgs_per_subject == 8  # what the subject already holds, not less
        assert cfg.max_age is not None and cfg.max_age > 4  # every stored message got a full period more
        with pytest.raises(APIError, match="maximum messages per subject"):
            await js.publish(MINE, b"a ninth", headers={"Nats-Msg-Id": "new-9"})
        # Run again once nothing old is left: the plan's own limits.
        await js.purge_stream(STREAM_RESULTS)
        await create_streams(nats_url, single_stream_plan(newer))
        cfg = (await js.stream_info(STREAM_RESULTS)).config
        assert (cfg.max_msgs_per_subject, cfg.max_age) == (3, 2.0)
    finally:
        await nc.close()


def test_deploy_streams_plan_carries_the_limits(tmp_path: Path) -> None:
    import subprocess
    import sys

    out = tmp_path / "nats"
    r = subprocess.run([sys.executable, "-m", "nodes.cli", "deploy", "nats-config", "--out", str(tmp_path / "nats.conf"),
                        "--credentials", str(tmp_path / "nodes.json"), "--streams", str(out)],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    plan = json.loads(out.read_text(encoding="utf-8"))
    assert plan["single"]["operator_url"] == "nats://nats.example:4222" and plan["single"]["seed_file"].endswith("operator.nk")
    assert [s["name"] for s in plan["single"]["streams"]] == ["FA_CASCADE", "FA_RESULTS"]
    assert all(s["max_bytes"] == DEFAULT_LIMITS.stream_max_bytes for s in plan["single"]["streams"])


async def test_a_node_may_not_make_or_change_a_stream(tmp_path: Path) -> None:
    """The limits hold only if no node can choose them: a node's account has no way to create, update or
    delete a stream, and a node finding no stream says so (the operator makes them)."""
    async with demo_nats_async(tmp_path) as server:
        node = await NatsTransport.connect(server.url_for("5101"), "5101", "_INBOX.5101")
        try:
            await node.ensure_streams()  # the operator's streams, with limits: nothing to report
            assert node.last_error == ""
            unbounded = StreamConfig(name="FA_RESULTS", subjects=["res.>"], storage=StorageType.FILE)
            js = node.nc.jetstream(timeout=1)
            for attempt in (js.update_stream(unbounded), js.delete_stream("FA_RESULTS"),
                            js.add_stream(StreamConfig(name="MINE", subjects=["res.51.5101.>"]))):
                with pytest.raises(nats.errors.TimeoutError):  # the server drops each: permissions violation
                    await attempt
            nc = await nats.connect(server.url)
            cfg = (await nc.jetstream().stream_info("FA_RESULTS")).config
            assert cfg.max_bytes == DEFAULT_LIMITS.stream_max_bytes  # unchanged
            for name in ("FA_CASCADE", "FA_RESULTS"):
                await nc.jetstream().delete_stream(name)
            await nc.close()
            with pytest.raises(TransportFailure) as refused:
                await node.ensure_streams()
            assert refused.value.code == "transport.no_stream"
        finally:
            await node.close()
