"""A node host: one OS process carrying many nodes (a county's server for its townships, a
province's 政务云 for its counties), as ``appraise host run --config host.yaml``.

Hosting changes where a node runs, never what it signs or whom it trusts. Each hosted node is a
whole :class:`~nodes.runtime.NodeRuntime` with its own configuration file: its own signing key and
certificate chain, its own store (SQLite file, or database/schema), its own NATS user and account,
its own audit log and anchors. What the nodes share is the process, the event loop and two
listeners:

* **HTTP**: one uvicorn server and one gateway application (routes, templates and schemas built
  once per process, not per node: 145 ms and 3.7 MB each). A request goes to the node its ``Host``
  header names in its first label (``510104017.localhost:8443``, ``510104017.nodes.example.gov.cn``):
  the router puts that node's services in the request's scope, where every dependency, guard and
  cache key of the gateway looks for them (gateway.deps.node_state). Every node keeps its own
  origin: cookies, sessions and CSRF tokens of one hosted node are never sent to another, and each
  node's cookies carry its code. The bare host name answers ``/health``, ``/nodes`` (each node's
  frameworks held, outbox and NATS state, read from its store) and an index of the nodes carried.
* **gRPC**: one server (:class:`sync.transport.grpc.RoutingServicer`). A call goes to the node its
  ``fa-node`` metadata names; with TLS the host presents that node's own certificate (by SNI), and
  that node's servicer checks the caller's certificate exactly as it does alone.

NATS connections stay one per node: each node is a user in an account of its own (nodes/natsconf.py),
and that boundary is what keeps a node's JetStream replies and subjects its own, so sharing a
connection would merge trust domains. One node per process (``appraise node run``) stays the default
for a node that runs alone.
"""

from __future__ import annotations

import asyncio
import gc
import html
import json
import logging
import signal
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import uvicorn

from gateway.app import create_app
from gateway.deps import NODE_SCOPE
from nodes.config import NodeConfig, load_config
from nodes.runtime import NodeRuntime, QuietServer
from nodes.store import Store
from nodes.yamlfile import FileError, load
from sync.transport.grpc import RoutingServicer, start_server

log = logging.getLogger("fedappraisal.host")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

HOST_KEYS = {"host", "listen", "nodes", "start_concurrency"}


class HostConfigError(FileError):
    default_code = "host.invalid"


@dataclass(frozen=True)
class HostConfig:
    name: str
    http_listen: str
    grpc_listen: str
    nodes: tuple[NodeConfig, ...]
    start_concurrency: int = 16  # nodes connecting and loading at once during start-up


def _addr(text: object, where: str, path: Path) -> str:
    host, sep, port = str(text).rpartition(":")
    if not isinstance(text, str) or not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise HostConfigError(f"{path}: {where}: 地址应为 主机:端口，实为 {text!r} (expected host:port)",
                              code="host.bad_address")
    return text


def load_host_config(path: Path, *, now: int | None = None) -> HostConfig:
    """A host file: ``host: {name}``, ``listen: {http, grpc}``, ``nodes: [node.yaml paths]`` (relative
    to the host file). Every node's file is loaded and checked in full, as ``appraise node run`` does."""
    doc = load(path, code="host.invalid")
    data = doc.data
    if not isinstance(data, dict):
        raise HostConfigError(f"{path}: 主机配置应为键值映射 (a host file is a mapping)", code="host.invalid")
    unknown = sorted(set(data) - HOST_KEYS)
    if unknown:
        raise HostConfigError(f"{path}: 未知的键 {', '.join(unknown)}；可用 {', '.join(sorted(HOST_KEYS))} (unknown key)",
                              code="host.unknown_key")
    listen = data.get("listen")
    if not isinstance(listen, dict):
        raise HostConfigError(f"{path}: listen: 须写 http 与 grpc 地址，如 listen: {{http: 127.0.0.1:8443, grpc: "
                              "127.0.0.1:7443}} (listen addresses required)", code="host.no_listen")
    files = data.get("nodes")
    if not isinstance(files, list) or not files or not all(isinstance(f, str) for f in files):
        raise HostConfigError(f"{path}: nodes: 须列出所承载节点的配置文件 (list the node.yaml files this host carries)",
                              code="host.no_nodes")
    nodes: list[NodeConfig] = []
    seen: dict[str, str] = {}
    for i, f in enumerate(files):
        node_path = (path.parent / f).resolve()
        if not node_path.exists():
            raise HostConfigError(f"{path}: nodes[{i}]: 找不到节点配置 {node_path} (node file not found)",
                                  code="host.node_missing")
        cfg = load_config(node_path, now=now)
        if cfg.code in seen:
            raise HostConfigError(f"{path}: nodes[{i}]: 节点 {cfg.code} 已由 {seen[cfg.code]} 承载 (a node is listed twice)",
                                  code="host.duplicate_node")
        seen[cfg.code] = f
        nodes.append(cfg)
    with_tls = {cfg.tls is not None for cfg in nodes}
    if len(with_tls) > 1:
        raise HostConfigError(f"{path}: 同一主机上的节点须都用或都不用 TLS (all nodes of a host use TLS, or none)",
                              code="host.mixed_tls")
    host = data.get("host") or {}
    name = str(host.get("name", path.stem)) if isinstance(host, dict) else path.stem
    concurrency = data.get("start_concurrency", 16)
    if not isinstance(concurrency, int) or concurrency < 1:
        raise HostConfigError(f"{path}: start_concurrency: 应为正整数 (a positive integer)", code="host.bad_concurrency")
    return HostConfig(name=name, http_listen=_addr(listen.get("http"), "listen.http", path),
                      grpc_listen=_addr(listen.get("grpc"), "listen.grpc", path), nodes=tuple(nodes),
                      start_concurrency=concurrency)


def node_of_host(headers: list[tuple[bytes, bytes]], carried: set[str] | dict[str, Any]) -> str | None:
    """The hosted node a request's ``Host`` header names (its first label), if this host carries it."""
    for k, v in headers:
        if k == b"host":
            label = v.decode("latin-1").split(":", 1)[0].split(".", 1)[0]
            return label if label in carried else None
    return None


class HostRouter:
    """The one ASGI application of a host: each request to the shared gateway, with the node its
    host name names in its scope (gateway.deps.NODE_SCOPE)."""

    def __init__(self, name: str, gateway: Callable[[], Any], scopes: dict[str, Callable[[], dict[str, Any]]],
                 names: dict[str, str], states: Callable[[], Awaitable[list[dict[str, Any]]]] | None = None) -> None:
        """``gateway``: builds the shared application (once, on the first request for any node);
        ``scopes``: per node code, its entry; ``states``: what ``/nodes`` answers (each node's code,
        level and what it holds)."""
        self.name = name
        self._gateway = gateway
        self._app: ASGIApp | None = None
        self._make = scopes
        self._scopes: dict[str, dict[str, Any]] = {}
        self._names = names
        self._states = states

    def scope_for(self, code: str) -> dict[str, Any]:
        entry = self._scopes.get(code)
        if entry is None:
            entry = self._scopes[code] = self._make[code]()
        return entry

    def app(self) -> ASGIApp:
        if self._app is None:
            self._app = cast(ASGIApp, self._gateway())
        return self._app

    @property
    def built(self) -> int:
        """Nodes whose gateway entry has been made (on their first request)."""
        return len(self._scopes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        code = node_of_host(list(scope.get("headers", [])), self._make)
        if code is not None:
            scope[NODE_SCOPE] = self.scope_for(code)
            await self.app()(scope, receive, send)
            return
        if scope["type"] != "http":
            return
        if scope["path"] == "/health":
            body = json.dumps({"status": "ok", "host": self.name, "nodes": len(self._make),
                               "gateways_built": self.built}).encode()
            await _respond(send, 200, "application/json", body)
        elif scope["path"] == "/nodes" and self._states is not None:
            body = json.dumps({"host": self.name, "nodes": await self._states()}, ensure_ascii=False).encode()
            await _respond(send, 200, "application/json", body)
        elif scope["path"] == "/":
            await _respond(send, 200, "text/html; charset=utf-8", self._index(scope))
        else:
            body = json.dumps({"type": "about:blank", "title": "本主机不承载该节点 (no such node on this host)",
                               "status": 404, "code": "host.unknown_node",
                               "detail": "用节点区划代码作主机名的第一段访问，如 http://510104.localhost:端口/ "
                                         "(name the node in the first label of the host name)"},
                              ensure_ascii=False).encode()
            await _respond(send, 404, "application/problem+json", body)

    def _index(self, scope: Scope) -> bytes:
        host = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"host"), "localhost")
        rows = "".join(f'<li><a href="//{html.escape(code)}.{html.escape(host)}/">{html.escape(code)} '
                       f"{html.escape(name)}</a></li>" for code, name in self._names.items())
        return (f'<!doctype html><html lang="zh-CN"><meta charset="utf-8"><title>{html.escape(self.name)}</title>'
                f"<h1>节点主机 {html.escape(self.name)} (node host)</h1><p>承载 {len(self._names)} 个节点 "
                f"(nodes carried)</p><ul>{rows}</ul></html>").encode()

    @staticmethod
    async def _lifespan(receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _respond(send: Send, status: int, content_type: str, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class NodeHost:
    """Many nodes in one process, one HTTP and one gRPC listener for them all."""

    def __init__(self, cfg: HostConfig, nodes: list[NodeRuntime]) -> None:
        self.cfg = cfg
        self.nodes = {n.cfg.code: n for n in nodes}
        self.router = HostRouter(cfg.name, lambda: create_app(None, title=cfg.name),
                                 {code: n.gateway_scope for code, n in self.nodes.items()},
                                 {code: n.cfg.name for code, n in self.nodes.items()}, self.states)
        self.grpc_server: Any = None
        self.grpc_port = 0
        self.http: uvicorn.Server | None = None
        self._http_task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    @classmethod
    async def open(cls, cfg: HostConfig) -> NodeHost:
        limit = asyncio.Semaphore(cfg.start_concurrency)

        async def one(node: NodeConfig) -> NodeRuntime:
            async with limit:
                return NodeRuntime(node, await Store.open(node.store_url, node.limits.store_connections))

        return cls(cfg, list(await asyncio.gather(*(one(n) for n in cfg.nodes))))

    async def states(self) -> list[dict[str, Any]]:
        """Per hosted node: who it is, how many frameworks it holds, whether NATS is connected, what its
        outbox still has to send (for operators and benchmarks: no node's gateway is built for it)."""
        out = []
        for code, n in self.nodes.items():
            async with n.store.read() as r:
                frameworks = await r.frameworks.count()
                pending = await r.outbox.pending_count()
            out.append({"code": code, "name": n.cfg.name, "level": n.cfg.level, "frameworks": frameworks,
                        "outbox_pending": pending, "nats_connected": n.nats is not None and n.nats.connected})
        return out

    async def start(self) -> None:
        limit = asyncio.Semaphore(self.cfg.start_concurrency)

        async def one(node: NodeRuntime) -> None:
            async with limit:
                await node.start_core()

        await asyncio.gather(*(one(n) for n in self.nodes.values()))
        tls = [n.cfg.tls for n in self.nodes.values() if n.cfg.tls is not None]
        routing = RoutingServicer({code: n.servicer() for code, n in self.nodes.items()})
        max_message = max(n.cfg.limits.grpc_message_bytes for n in self.nodes.values())
        self.grpc_server, self.grpc_port = await start_server(self.cfg.grpc_listen, routing, tls or None,
                                                              max_message=max_message)
        host, _, port = self.cfg.http_listen.rpartition(":")
        config = uvicorn.Config(self.router, host=host, port=int(port), log_level="warning", lifespan="on",
                                access_log=False)
        self.http = QuietServer(config)
        self._http_task = asyncio.create_task(self.http.serve(), name="http")
        # uvicorn offers no event for "listening"; a bind failure must stop the host, not go unseen.
        while not self.http.started and not self._http_task.done():  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        if self._http_task.done():
            self._http_task.result()  # the listener could not start: say why
        gc.freeze()

    async def run_until_stopped(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._stop.set)
        await self._stop.wait()
        await self.stop()

    async def stop(self) -> None:
        if self.http is not None:
            self.http.should_exit = True
        await asyncio.gather(*(n.stop() for n in self.nodes.values()), return_exceptions=True)
        if self._http_task is not None:
            await asyncio.gather(self._http_task, return_exceptions=True)
        if self.grpc_server is not None:
            await self.grpc_server.stop(grace=1)


async def run_host(cfg: HostConfig) -> None:
    host = await NodeHost.open(cfg)
    await host.start()
    log.info("host %s up: %d nodes, grpc %s http %s", cfg.name, len(host.nodes), cfg.grpc_listen, cfg.http_listen)
    await host.run_until_stopped()
