"""The files an operator deploys NATS with (``appraise deploy nats-config`` / ``nats-hierarchy``).

Everything secret goes into a file of its own, mode 0600, that is handed to exactly one party: a node's
nkey seed (``seeds/<code>.nk``, beside its key.pem), an operator's (``seeds/operator-<server>.nk``), a
city server's leaf seed (``<city>-leaf.nkey``, beside its configuration, which includes it), and the
servers' TLS keys (``tls/<server>.key``). The server configurations, ``credentials.json`` (each node's
``nats:`` setting) and ``streams.json`` (the operator's stream plans) hold only public keys and paths,
so they can be reviewed, diffed and checked in (deploy/nats/ is such an output).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nodes.natsconf import (
    HubMember,
    NodeAccess,
    ServerTls,
    leaf_seed_conf,
    leaf_seed_file,
    new_seed,
    plan_hierarchy,
    render,
    render_server,
    single_stream_plan,
    stream_plan,
)


def write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


@dataclass(frozen=True)
class TlsPlan:
    """Server certificates from the deployment CA (``appraise deploy tls-ca``): written under
    ``out/tls``, named in the configurations at ``install_dir`` (where the operator puts them)."""

    ca_key: bytes
    ca_cert: bytes
    install_dir: str

    def issue(self, out: Path, server: str, host: str) -> ServerTls:
        from sync.transport.tls import issue_node_cert

        key, cert = issue_node_cert(self.ca_key, self.ca_cert, f"nats-{server}", hosts=(host,))
        write_private(out / "tls" / f"{server}.key", key)
        (out / "tls" / f"{server}.pem").write_bytes(cert)
        (out / "tls" / "ca.pem").write_bytes(self.ca_cert)
        d = self.install_dir.rstrip("/")
        return ServerTls(f"{d}/{server}.pem", f"{d}/{server}.key", f"{d}/ca.pem")


def _node_seeds(out: Path, access: Sequence[NodeAccess]) -> dict[str, str]:
    seeds = {a.code: new_seed() for a in access}
    for code, seed in seeds.items():
        write_private(out / "seeds" / f"{code}.nk", seed.encode())
    return seeds


def _nats_setting(url: str, code: str, tls: bool) -> dict[str, Any]:
    """What node ``code`` is given: its ``nats:`` setting (nodes/config.py), with paths as the node will
    have them beside its node.yaml, and which files of this output to copy there."""
    files = {f"seeds/{code}.nk": "nats.nk", **({"tls/ca.pem": "ca.pem"} if tls else {})}
    return {"nats": {"url": url, "seed_file": "nats.nk", **({"ca": "ca.pem"} if tls else {})}, "copy": files}


def write_single(conf: Path, credentials: Path, streams: Path, access: Sequence[NodeAccess], *, host: str, port: int,
                 store_dir: str, tls: TlsPlan | None) -> None:
    """One server for the whole federation (``render``); seeds and TLS files beside ``credentials``."""
    out = credentials.parent
    out.mkdir(parents=True, exist_ok=True)
    seeds = _node_seeds(out, access)
    operator = new_seed()
    write_private(out / "seeds" / "operator.nk", operator.encode())
    server_tls = tls.issue(out, "single", host) if tls else None
    scheme = "tls" if tls else "nats"
    conf.write_text(render(access, seeds, operator, listen=f"0.0.0.0:{port}", store_dir=store_dir, tls=server_tls),
                    encoding="utf-8")
    url = f"{scheme}://{host}:{port}"
    _write_json(credentials, {a.code: _nats_setting(url, a.code, bool(tls)) for a in access})
    _write_json(streams, {"single": {"operator_url": url, "seed_file": str(out / "seeds" / "operator.nk"),
                                     **({"ca": str(out / "tls" / "ca.pem")} if tls else {}),
                                     "streams": single_stream_plan()}})


def write_hierarchy(out: Path, access: Sequence[NodeAccess], *, hub_hosts: Sequence[str], city_host: str, port: int,
                    leaf_port: int, cluster_port: int, store_dir: str, tls: TlsPlan | None) -> list[Path]:
    """The hub (one server, or a cluster of ``len(hub_hosts)``: hub-1, hub-2, …) and one leaf server per
    city (``plan_hierarchy``, ``render_server``). Returns the server configurations written."""
    out.mkdir(parents=True, exist_ok=True)
    province = next(a.code for a in access if not a.has_parent)
    cities = [a.code for a in access if len(a.path) == 2]
    seeds = _node_seeds(out, access)
    leaf_seeds = {c: new_seed() for c in cities}
    clustered = len(hub_hosts) > 1
    members = [HubMember(f"0.0.0.0:{port}", f"0.0.0.0:{leaf_port}", h,
                         f"0.0.0.0:{cluster_port}" if clustered else "", h) for h in hub_hosts]
    plans = plan_hierarchy(access, members[0].listen, members[0].leaf_listen, dict.fromkeys(cities, f"0.0.0.0:{port}"),
                           hub_hosts[0], leaf_seeds, hub_members=members)
    hosts = {p.name: hub_hosts[i] for i, p in enumerate(p for p in plans if p.is_hub)}
    hosts.update({c: city_host.format(city=c) for c in cities})
    scheme = "tls" if tls else "nats"
    hub_url = ",".join(f"{scheme}://{h}:{port}" for h in hub_hosts)
    written: list[Path] = []
    streams: dict[str, Any] = {}
    creds: dict[str, Any] = {}
    # One operator per site: the hub's servers share theirs (the streams are made once, through any).
    operators = {site: new_seed() for site in ["hub", *cities]}
    for site, seed in operators.items():
        write_private(out / "seeds" / f"operator-{site}.nk", seed.encode())
    for plan in plans:
        site = "hub" if plan.is_hub else plan.name
        conf = out / f"{plan.name}.conf"
        conf.write_text(render_server(plan, cities, seeds, leaf_seeds, operators[site], store_dir,
                                      tls=tls.issue(out, plan.name, hosts[plan.name]) if tls else None),
                        encoding="utf-8")
        written.append(conf)
        if not plan.is_hub:
            write_private(out / leaf_seed_file(plan.name), leaf_seed_conf(leaf_seeds[plan.name]).encode())
        url = hub_url if plan.is_hub else f"{scheme}://{hosts[plan.name]}:{port}"
        streams[site] = {"operator_url": url, "seed_file": f"seeds/operator-{site}.nk",
                         **({"ca": "tls/ca.pem"} if tls else {}), "streams": stream_plan(plan, province, cities)}
        creds.update({n.code: _nats_setting(url, n.code, bool(tls)) for n in plan.nodes})
    _write_json(out / "credentials.json", creds)
    _write_json(out / "streams.json", streams)
    return written
