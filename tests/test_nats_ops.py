"""Issue 12 (operations): NATS with nkeys and TLS, per-city isolation on a hierarchy, a stream limit
enforced, and node.yaml's ``nats: {url, seed_file, ca}``. Real nats-servers configured as
nodes/natsconf.py renders them (nodes/launcher.NatsServer / NatsHierarchy with ``secure=True``)."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
import yaml
from nats.aio.msg import Msg
from nats.js.api import DiscardPolicy
from nats.js.errors import APIError

from nodes.config import load_config
from nodes.launcher import Federation, NatsHierarchy, NatsServer, load_topology
from nodes.natsconf import inbox_prefix, new_seed
from nodes.yamlfile import FileError
from sync.limits import DEFAULT_LIMITS
from sync.transport.nats import NatsTransport, connect_options
from sync.transport.tls import create_ca
from tests.support.natsservers import topology_access

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    s = NatsServer(tmp_path_factory.mktemp("natsops"), secure=True)
    s.add_nodes(topology_access())
    s.start()
    try:
        yield s
    finally:
        s.stop()


def _plaintext_exchange(port: int) -> tuple[dict[str, Any], bytes]:
    """A client that never starts TLS: the server's INFO, then what it answers a CONNECT and a PING."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        info = json.loads(sock.recv(65536).decode().removeprefix("INFO ").strip())
        sock.sendall(b'CONNECT {"verbose":false,"pedantic":false,"tls_required":false}\r\nPING\r\n')
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    return info, answer


def test_a_plaintext_client_is_refused(server: NatsServer) -> None:
    info, answer = _plaintext_exchange(server.port)
    assert info["tls_required"] is True and "nonce" in info  # TLS first, then an nkey challenge
    # the server waits for a TLS handshake; a CONNECT in the clear ends the connection, unanswered
    assert b"PONG" not in answer and (answer == b"" or answer.startswith(b"-ERR")), answer


def test_a_node_signs_in_with_its_nkey_over_tls_and_nothing_else_gets_in(server: NatsServer, tmp_path: Path) -> None:
    async def attempt(code: str, **options: Any) -> str:
        try:
            nc = await nats.connect(server.url_for(code), inbox_prefix=inbox_prefix(code), allow_reconnect=False,
                                    connect_timeout=3, max_reconnect_attempts=0, **options)
        except Exception as exc:  # nats-py raises what the server said, or the TLS failure
            return f"{type(exc).__name__}: {exc}".lower()
        try:
            ack = await nc.jetstream().publish("res.51.5101.510104", b"genuine", timeout=5)
            return f"ok {ack.stream}"
        finally:
            await nc.close()

    stranger = tmp_path / "stranger.nk"
    stranger.write_text(new_seed(), encoding="ascii")
    other_ca = tmp_path / "other-ca.pem"
    other_ca.write_bytes(create_ca("another CA")[1])
    right = server.options_for("510104")
    assert asyncio.run(attempt("510104", **right)) == "ok FA_RESULTS"
    # an nkey the server does not know, then no nkey at all: the server refuses the sign-in
    assert "authorization violation" in asyncio.run(attempt("510104", **connect_options(str(stranger), server.ca_file)))
    assert "authorization violation" in asyncio.run(attempt("510104", tls=right["tls"]))
    # the right nkey, but a CA that did not sign the server's certificate: the client refuses the server
    assert "certificate verify failed" in asyncio.run(attempt("510104", **connect_options(right["nkeys_seed"],
                                                                                           str(other_ca))))


def test_with_its_nkey_a_node_still_reads_and_writes_only_its_own_subjects(server: NatsServer) -> None:
    async def attempt() -> list[str]:
        errors: list[str] = []

        async def on_error(exc: Exception) -> None:
            errors.append(str(exc).lower())

        nc = await nats.connect(server.url_for("510104"), inbox_prefix=inbox_prefix("510104"), error_cb=on_error,
                                **server.options_for("510104"))
        await nc.subscribe("_INBOX.5101.>")         # 成都市's replies and pull deliveries
        await nc.subscribe("res.51.5101.510105")    # its neighbour's results
        await nc.publish("res.51.5101.510105", b"posing as the neighbour")
        await nc.flush()
        await asyncio.sleep(0.5)
        await nc.close()
        return errors

    errors = asyncio.run(attempt())
    assert sum("permissions violation" in e for e in errors) == 3, errors


def test_a_stream_refuses_a_message_over_its_size_limit(server: NatsServer) -> None:
    """max_msg_size (Limits.message_bytes) is the stream's: the server's max_payload (8 MB) would let a
    7 MiB + 1 byte message through, the stream does not."""
    async def attempt() -> tuple[str, dict[str, Any]]:
        t = await NatsTransport.connect(server.url_for("510104"), "510104", inbox_prefix("510104"),
                                        seed_file=server.options_for("510104")["nkeys_seed"], ca_file=server.ca_file)
        try:
            info = await t.js.stream_info("FA_RESULTS")
            with pytest.raises(APIError) as refused:
                await t.publish("res.51.5101.510104", b"x" * (DEFAULT_LIMITS.message_bytes + 1), "too-big-1")
            await t.publish("res.51.5101.510104", b"x" * 1024, "fits-1")  # the stream goes on
            return str(refused.value).lower(), {"max_msg_size": info.config.max_msg_size,
                                                 "max_bytes": info.config.max_bytes, "max_msgs": info.config.max_msgs,
                                                 "max_age": info.config.max_age, "discard": info.config.discard}
        finally:
            await t.close()

    error, config = asyncio.run(attempt())
    assert "maximum message size" in error or "message size exceeds" in error, error
    assert config["max_msg_size"] == DEFAULT_LIMITS.message_bytes and config["max_bytes"] == DEFAULT_LIMITS.stream_max_bytes
    assert config["max_msgs"] == DEFAULT_LIMITS.stream_max_msgs and config["max_age"]
    assert config["discard"] in ("new", DiscardPolicy.NEW)


# ----------------------------------------------------------------------------------- a hierarchy of servers


@pytest.fixture(scope="module")
def hierarchy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsHierarchy]:
    h = NatsHierarchy(tmp_path_factory.mktemp("natsops-h"), secure=True)
    h.add_nodes(topology_access())
    h.start()
    try:
        yield h
    finally:
        h.stop()


OTHER_CITY = ("casc.51.5101", "casc.51.5101.>", "res.51.5101", "res.51.5101.>", "hb.51.5101", "hb.51.5101.>",
              "$JS.c5101.API.>", "fa.up.5101.>", "fa.down.5101.>", "$JS.S.>")


FORGED = b"forged by another city's server"


async def _stored(h: NatsHierarchy, server: str) -> dict[str, int]:
    nc = await nats.connect(h.operator_url(server), **h.operator_options())
    counts: dict[str, int] = {}
    for stream in ("FA_CASCADE", "FA_RESULTS"):
        counts.update((await nc.jetstream().stream_info(stream, subjects_filter=">")).state.subjects or {})
    await nc.close()
    return counts


def test_a_city_server_cannot_reach_another_citys_subjects(hierarchy: NatsHierarchy) -> None:
    """绵阳市's server operator (its FEDERATION account is what its leaf connection signs in for, with the
    leaf nkey) listens on 成都市's cascade, results, heartbeat, domain API and source deliveries while
    成都市's nodes publish, and publishes into them: it hears nothing of 成都市's and lands nothing."""
    h = hierarchy

    async def attack() -> tuple[list[tuple[str, bytes]], dict[str, int], dict[str, int], dict[str, int], dict[str, int]]:
        heard: list[tuple[str, bytes]] = []
        spy = await nats.connect(h.operator_url("5107"), **h.operator_options())
        for subject in OTHER_CITY:
            async def on_message(msg: Msg) -> None:
                if msg.data != FORGED:  # its own publishes below, heard on its own server
                    heard.append((msg.subject, msg.data))

            await spy.subscribe(subject, cb=on_message)
        await spy.flush()
        await asyncio.sleep(1.0)  # the subscriptions' interest reaches the hub
        before_city, before_hub = await _stored(h, "5101"), await _stored(h, "hub")
        for code, subject in (("5101", "casc.51.5101"), ("510104", "res.51.5101.510104"), ("5101", "res.51.5101")):
            nc = await nats.connect(h.url_for(code), inbox_prefix=inbox_prefix(code), **h.options_for(code))
            await nc.jetstream().publish(subject, f"{code}: genuine".encode(), timeout=5)
            await nc.publish("hb.51.5101", b"heartbeat") if code == "5101" else None
            await nc.flush()
            await nc.close()
        for subject in ("casc.51.5101", "res.51.5101", "res.51.5101.510104", "casc.51", "fa.up.5101.S.x"):
            await spy.publish(subject, FORGED)
        await spy.flush()
        for _ in range(50):  # the roll-up reaches the hub (through 成都市's FA_RESULTS source)
            if (await _stored(h, "hub")).get("res.51.5101", 0) > before_hub.get("res.51.5101", 0):
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)  # time for anything forged to travel, had it been let through
        await spy.close()
        return heard, before_city, await _stored(h, "5101"), before_hub, await _stored(h, "hub")

    heard, before_city, city, before_hub, hub = asyncio.run(attack())
    assert heard == [], heard
    # 成都市's own messages arrived (the hierarchy works), each exactly once; nothing forged landed
    assert {s: city.get(s, 0) - before_city.get(s, 0) for s in ("casc.51.5101", "res.51.5101", "res.51.5101.510104")} \
        == {"casc.51.5101": 1, "res.51.5101": 1, "res.51.5101.510104": 1}
    assert hub.get("res.51.5101", 0) - before_hub.get("res.51.5101", 0) == 1 and hub.get("casc.51") == before_hub.get("casc.51")


# ------------------------------------------------------------------------------------- node.yaml's nats:


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Federation:
    fed = Federation(tmp_path_factory.mktemp("natsops-config") / "fed", load_topology())
    fed.prepare()
    return fed


def _variant(fed: Federation, code: str, nats_setting: Any) -> Path:
    d = fed.node_dir(code)
    data = yaml.safe_load((d / "node.yaml").read_text(encoding="utf-8"))
    data["nats"] = nats_setting
    path = d / "nats-variant.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def test_node_yaml_takes_a_seed_file_and_ca_and_the_old_url_still_loads(fed: Federation) -> None:
    d = fed.node_dir("510104")
    seed = new_seed()
    (d / "nats.nk").write_text(seed + "\n", encoding="ascii")
    (d / "nats-ca.pem").write_bytes(create_ca("nats")[1])
    cfg = load_config(_variant(fed, "510104", {"url": "tls://a:4222,tls://b:4222", "seed_file": "nats.nk",
                                               "ca": "nats-ca.pem"}))
    assert (cfg.nats_url, cfg.nats_seed_file, cfg.nats_ca_file) == ("tls://a:4222,tls://b:4222", str(d / "nats.nk"),
                                                                   str(d / "nats-ca.pem"))
    assert seed not in repr(cfg)  # the seed stays in its file
    old = load_config(_variant(fed, "510104", "nats://node-510104:secret@127.0.0.1:4222"))
    assert old.nats_url.startswith("nats://node-510104:") and old.nats_seed_file == ""
    (d / "bad.nk").write_text("not a seed", encoding="ascii")
    with pytest.raises(FileError) as bad:
        load_config(_variant(fed, "510104", {"url": "tls://a:4222", "seed_file": "bad.nk"}))
    assert bad.value.code == "config.nats_seed" and "nats.seed_file" in str(bad.value)
    with pytest.raises(FileError) as scheme:
        load_config(_variant(fed, "510104", {"url": "http://a:4222"}))
    assert "nats.url" in str(scheme.value)


def test_tls_context_checks_the_server_against_the_ca(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_bytes(create_ca("x")[1])
    opts = connect_options(None, str(ca))
    assert isinstance(opts["tls"], ssl.SSLContext) and opts["tls"].verify_mode == ssl.CERT_REQUIRED
    assert "nkeys_seed" not in opts


def test_the_provinces_heartbeat_still_reaches_a_city_through_the_restricted_leaf(hierarchy: NatsHierarchy) -> None:
    """The control for the isolation above: what a city does need from the hub, the province's heartbeat
    (core NATS, hub → leaf, subscribe-allowed as ``hb.51`` only), gets to 绵阳市's node."""
    h = hierarchy

    async def listen() -> list[bytes]:
        got: list[bytes] = []
        city = await nats.connect(h.url_for("5107"), inbox_prefix=inbox_prefix("5107"), **h.options_for("5107"))

        async def on_message(msg: Msg) -> None:
            got.append(msg.data)

        await city.subscribe("hb.51", cb=on_message)
        await city.flush()
        province = await nats.connect(h.url_for("51"), inbox_prefix=inbox_prefix("51"), **h.options_for("51"))
        for _ in range(50):  # until the subscription's interest has reached the hub
            await province.publish("hb.51", b"province heartbeat")
            await province.flush()
            await asyncio.sleep(0.1)
            if got:
                break
        await province.close()
        await city.close()
        return got

    assert b"province heartbeat" in asyncio.run(listen())
