"""deploy/nats/province: the checked-in example (a hub cluster of three and a city leaf server) is what
``appraise deploy nats-hierarchy`` writes for its topology, up to the fresh keys; nats-server accepts
each configuration (``-t``); no secret is in it; the secrets it leaves out are files of mode 0600."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

from typer.testing import CliRunner, Result

from nodes.cli import app
from nodes.launcher import nats_server_binary
from nodes.natsconf import leaf_seed_conf, leaf_seed_file, new_seed

EXAMPLE = Path(__file__).resolve().parent.parent / "deploy" / "nats" / "province"
FILES = ("hub-1.conf", "hub-2.conf", "hub-3.conf", "5101.conf", "credentials.json", "streams.json")
NKEY = re.compile(r"^U[A-Z2-7]{55}$")


def appraise(*args: str) -> Result:
    """The `appraise` command, in this process (a subprocess costs seconds of imports per call)."""
    return CliRunner().invoke(app, list(args))


def shape(text: str) -> Any:
    """A configuration as data, each public nkey masked (every run makes new ones)."""
    data = json.loads(re.sub(r'include ("[^"]+")', r'"include": \1', text))

    def mask(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: mask(x) for k, x in v.items()}
        if isinstance(v, list):
            return [mask(x) for x in v]
        return "<nkey>" if isinstance(v, str) and NKEY.match(v) else v

    return mask(data)


def generate(out: Path, ca: Path, tls_dir: str) -> None:
    """As deploy/nats/province/generate.sh does."""
    r = appraise("deploy", "nats-hierarchy", "--out-dir", str(out), "--topology", str(EXAMPLE / "topology.json"),
                 "--hub-host", "nats-1.sc.example", "--hub-host", "nats-2.sc.example", "--hub-host", "nats-3.sc.example",
                 "--city-host", "nats-{city}.sc.example", "--ca-dir", str(ca), "--tls-dir", tls_dir)
    assert r.exit_code == 0, r.output


def test_the_example_is_what_the_cli_generates_and_nats_server_accepts_it(tmp_path: Path) -> None:
    assert appraise("deploy", "tls-ca", "--out-dir", str(tmp_path / "ca")).exit_code == 0
    out = tmp_path / "out"
    generate(out, tmp_path / "ca", "/etc/nats/tls")
    for name in FILES:
        assert shape((out / name).read_text(encoding="utf-8")) == shape((EXAMPLE / name).read_text(encoding="utf-8")), name
    # secrets: never in what is checked in, each in a 0600 file of its own in the output
    example_text = "".join((EXAMPLE / n).read_text(encoding="utf-8") for n in FILES)
    assert not re.search(r"SU[A-Z2-7]{56}", example_text) and "password" not in example_text
    secret = [*(out / "seeds").iterdir(), out / leaf_seed_file("5101"), *(out / "tls").glob("*.key")]
    assert len(secret) == 3 + 2 + 1 + 4  # nodes, operators (the hub's, 5101's), the leaf's, the servers' TLS keys
    assert all(p.stat().st_mode & 0o077 == 0 for p in secret)
    hub = json.loads((EXAMPLE / "hub-1.conf").read_text(encoding="utf-8"))
    assert hub["cluster"]["tls"]["verify"] is True and hub["leafnodes"]["tls"]["verify"] is True
    assert len(hub["cluster"]["routes"]) == 3 and hub["tls"]["ca_file"] == "/etc/nats/tls/ca.pem"
    streams = json.loads((EXAMPLE / "streams.json").read_text(encoding="utf-8"))
    assert {s["num_replicas"] for s in streams["hub"]["streams"]} == {3}
    assert all({"max_bytes", "max_msgs", "max_age", "max_msg_size", "discard"} <= set(s)
               for plan in streams.values() for s in plan["streams"])
    # nats-server -t on the checked-in files themselves, their TLS paths pointed at real certificates
    tls = out / "tls"  # the certificates this run issued, under the names the example uses
    for name in FILES[:4]:
        conf = tmp_path / "check" / name
        conf.parent.mkdir(exist_ok=True)
        conf.write_text((EXAMPLE / name).read_text(encoding="utf-8").replace("/etc/nats/tls", str(tls)), encoding="utf-8")
        (conf.parent / leaf_seed_file("5101")).write_text(leaf_seed_conf(new_seed()), encoding="utf-8")
        checked = subprocess.run([nats_server_binary(), "-t", "-c", str(conf)], capture_output=True, text=True,
                                 timeout=30, check=False)
        assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_generated_single_server_runs_and_the_operator_makes_its_streams_with_its_nkey(tmp_path: Path) -> None:
    """nats-config with --ca-dir, the server started from what it wrote, nats-streams signing in with the
    operator's seed over TLS; then a node with its seed and the CA, as credentials.json says."""
    import asyncio

    from nodes.launcher import free_port, stop_process, wait_port
    from sync.transport.nats import NatsTransport

    port = free_port()
    assert appraise("deploy", "tls-ca", "--out-dir", str(tmp_path / "ca")).exit_code == 0
    out = tmp_path / "out"
    r = appraise("deploy", "nats-config", "--out", str(out / "nats.conf"), "--credentials", str(out / "nodes.json"),
                 "--host", "127.0.0.1", "--port", str(port), "--store-dir", str(tmp_path / "js"),
                 "--ca-dir", str(tmp_path / "ca"), "--tls-dir", str(out / "tls"))
    assert r.exit_code == 0, r.output
    conf = (out / "nats.conf").read_text(encoding="utf-8")
    (out / "nats.conf").write_text(conf.replace("0.0.0.0:", "127.0.0.1:"), encoding="utf-8")
    proc = subprocess.Popen([nats_server_binary(), "-c", str(out / "nats.conf")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_port(port, 15, proc)
        made = appraise("deploy", "nats-streams", "--plan", str(out / "streams.json"), "--server", "single")
        assert made.exit_code == 0 and "FA_CASCADE, FA_RESULTS" in made.output, made.output
        given = json.loads((out / "nodes.json").read_text(encoding="utf-8"))["510104"]
        assert given["nats"]["url"] == f"tls://127.0.0.1:{port}" and given["copy"]["seeds/510104.nk"] == "nats.nk"

        async def publish() -> str:
            t = await NatsTransport.connect(given["nats"]["url"], "510104", "_INBOX.510104",
                                            seed_file=str(out / "seeds" / "510104.nk"), ca_file=str(out / "tls" / "ca.pem"))
            try:
                return (await t.publish("res.51.5101.510104", b"genuine", "m-1")).stream
            finally:
                await t.close()

        assert asyncio.run(publish()) == "FA_RESULTS"
    finally:
        stop_process(proc)
