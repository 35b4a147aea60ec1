"""Issue 9 item 4: a node cannot use a JetStream API reply to write into another node's subjects.

The JetStream server answers a request on whatever reply subject the requester named, publishing the
answer itself, so the requester's own publish permissions do not apply to it. With every node a user of
one account, 锦江区 sending ``$JS.API.STREAM.INFO.FA_CASCADE`` with reply ``casc.51`` put the answer into
the province's cascade. Now every node has an account of its own and the streams live in FEDERATION
(nodes/natsconf.py): the answer to an imported request comes back into the requester's own account, so
whatever it names lands with itself. A real nats-server configured as the demo renders it.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import nats
import pytest

from nodes.launcher import NatsServer
from nodes.natsconf import JS_ACCOUNT, node_account, permissions, render
from tests.support.natsservers import as_node, demo_nats, topology_access

pytestmark = pytest.mark.slow

ATTACKER = "510104"  # 锦江区: a child and a parent, so it may use every kind of API subject there is
# A reply subject that is not the attacker's, where its answer would land, and who would see it there.
IN_STREAMS = {"casc.51": "FA_CASCADE",             # the province's cascade to every city
              "casc.51.5107": "FA_CASCADE",        # 绵阳市's cascade to its counties
              "res.51.5101.510105": "FA_RESULTS",  # 青羊区's results, beside the attacker
              "res.51.5107": "FA_RESULTS"}         # 绵阳市's results to the province
ON_THE_WIRE = {"hb.51": "5107",                    # the province's heartbeat, as 绵阳市 hears it
               "hb.51.5101": "510105",             # 成都市's heartbeat, as 青羊区 hears it
               "_INBOX.5101.taken": "5101"}        # 成都市's own replies


def requests_of(code: str) -> list[tuple[str, bytes]]:
    """Every subject node ``code`` may publish, with a body: each of them is answered by the server."""
    access = next(a for a in topology_access() if a.code == code)
    out = []
    for allowed in permissions(access)["publish"]["allow"]:
        if allowed.startswith("hb."):
            continue  # core NATS: nobody answers a heartbeat
        subject = allowed.replace(".>", ".1.1.1.1.0")  # an acknowledgement of a (made-up) delivery
        body = b'{"batch": 1, "no_wait": true}' if ".MSG.NEXT." in subject else b"{}"
        out.append((subject, body))
    return out


async def stored(server: NatsServer) -> dict[str, int]:
    nc = await nats.connect(server.url)
    js = nc.jetstream()
    counts: dict[str, int] = {}
    for stream in ("FA_CASCADE", "FA_RESULTS"):
        counts.update((await js.stream_info(stream, subjects_filter=">")).state.subjects or {})
    await nc.close()
    return counts


async def reply_attack(server: NatsServer, url: str) -> dict[str, int]:
    """From ``url``'s connection, every request of the attacker's with every foreign reply subject;
    returns, per reply subject, how many answers landed there."""
    heard: dict[str, int] = dict.fromkeys(ON_THE_WIRE, 0)
    listeners = []
    for subject, code in ON_THE_WIRE.items():
        nc = await as_node(server, code)

        async def on_message(_msg: nats.aio.msg.Msg, subject: str = subject) -> None:
            heard[subject] += 1

        await nc.subscribe(subject, cb=on_message)
        await nc.flush()
        listeners.append(nc)
    before = await stored(server)
    attacker = await nats.connect(url, inbox_prefix=f"_INBOX.{ATTACKER}")
    sent = 0
    for subject, body in requests_of(ATTACKER):
        for reply in (*IN_STREAMS, *ON_THE_WIRE):
            await attacker.publish(subject, body, reply=reply)
            sent += 1
    await attacker.flush()
    await asyncio.sleep(1.0)
    await attacker.close()
    for nc in listeners:
        await nc.close()
    after = await stored(server)
    assert sent >= 10 * 7
    return {**{s: after.get(s, 0) - before.get(s, 0) for s in IN_STREAMS}, **heard}


def test_a_node_cannot_land_api_replies_in_another_nodes_subjects(tmp_path: Path) -> None:
    with demo_nats(tmp_path) as server:
        landed = asyncio.run(reply_attack(server, server.url_for(ATTACKER)))
        # The control: the same requests from the streams' own account (only operators are there) do land
        # in the streams, so the method above sees the answers where they go.
        control = asyncio.run(reply_attack(server, server.url))
    assert landed == dict.fromkeys(landed, 0), landed
    assert all(control[s] > 0 for s in IN_STREAMS), control


def test_no_node_is_in_the_streams_account_and_each_imports_only_what_it_may_publish() -> None:
    nodes = topology_access()
    conf = json.loads(render(nodes, {n.code: "pw" for n in nodes}, "op", listen="127.0.0.1:4222", store_dir="/js"))
    accounts = conf["accounts"]
    assert [u["user"] for u in accounts[JS_ACCOUNT]["users"]] == ["operator"]
    assert "jetstream" not in accounts[node_account(ATTACKER)]  # no streams of its own, without limits
    for n in nodes:
        account = accounts[node_account(n.code)]
        assert [u["user"] for u in account["users"]] == [f"node-{n.code}"]
        services = sorted(i["service"]["subject"] for i in account["imports"] if "service" in i)
        allowed = sorted(s for s in permissions(n)["publish"]["allow"] if not s.startswith("hb."))
        assert services == allowed, n.code
        assert all(i["service"]["account"] == JS_ACCOUNT for i in account["imports"] if "service" in i)
