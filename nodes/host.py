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
  frameworks held and NATS state) and an index of the nodes carried.
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
import hmac
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
from nodes.logs import LogSettings, node_context
from nodes.runtime import NodeRuntime, QuietServer
from nodes.services import readiness
from nodes.services.metrics import collect_all, host_registry
from nodes.services.readiness import not_ready
from nodes.store import Store
from nodes.yamlfile import FileError, load
from sync.transport.grpc import RoutingServicer, start_server
from sync.transport.grpc_metrics import interceptor

log = logging.getLogger("fedappraisal.host")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

HOST_KEYS = {"host", "listen", "nodes", "start_concurrency", "metrics_token_file", "log"}


class HostConfigError(FileError):
    default_code = "host.invalid"


@dataclass(frozen=True)
class HostConfig:
    name: str
    http_listen: str
    grpc_listen: str
    nodes: tuple[NodeConfig, ...]
    start_concurrency: int = 16  # nodes connecting and loading at once during start-up
    metrics_token: str = ""  # bearer token for the bare host's /metrics (every node's, with a node label)
    log: LogSettings | None = None


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
    token = ""
    if data.get("metrics_token_file"):
        token_path = path.parent / str(data["metrics_token_file"])
        try:
            token = token_path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise HostConfigError(f"{path}: metrics_token_file: 无法读取 {token_path} (cannot read): {exc.strerror}",
                                  code="host.metrics_token") from None
    log_doc = data.get("log")
    log_settings = None
    if log_doc is not None:
        fmt, level = (log_doc.get("format", "text"), log_doc.get("level", "INFO")) if isinstance(log_doc, dict) else ("", "")
        if fmt not in ("text", "json") or not isinstance(level, str):
            raise HostConfigError(f"{path}: log: 应为 {{format: text|json, level: INFO}} (log settings)", code="host.log")
        log_settings = LogSettings(format="json" if fmt == "json" else "text", level=level.upper())
    return HostConfig(name=name, http_listen=_addr(listen.get("http"), "listen.http", path),
                      grpc_listen=_addr(listen.get("grpc"), "listen.grpc", path), nodes=tuple(nodes),
                      start_concurrency=concurrency, metrics_token=token, log=log_settings)


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
                 names: dict[str, str], states: Callable[[], Awaitable[list[dict[str, Any]]]] | None = None,
                 ready: Callable[[], Awaitable[list[dict[str, Any]]]] | None = None,
                 metrics: Callable[[], Awaitable[bytes]] | None = None, metrics_token: str = "") -> None:
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
        self._ready = ready
        self._metrics = metrics
        self._metrics_token = metrics_token

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
        elif scope["path"] == "/ready" and self._ready is not None:
            failing = await self._ready()
            if failing:
                body = json.dumps({"type": "about:blank", "title": "主机未就绪 (host not ready)", "status": 503,
                                   "code": "node.not_ready", "checks": failing}, ensure_ascii=False).encode()
                await _respond(send, 503, "application/problem+json", body)
            else:
                await _respond(send, 200, "application/json", json.dumps({"status": "ready", "host": self.name}).encode())
        elif scope["path"] == "/metrics" and self._metrics is not None:
            if not self._metrics_token or not _bearer_is(scope, self._metrics_token):
                body = json.dumps({"type": "about:blank", "title": "需要主机的指标令牌 (metrics token required)",
                                   "status": 401, "code": "auth.required",
                                   "detail": "在 host.yaml 中配置 metrics_token_file，并以 Bearer 令牌抓取 "
                                             "(set metrics_token_file in host.yaml; scrape with it as a bearer token)"},
                                  ensure_ascii=False).encode()
                await _respond(send, 401, "application/problem+json", body)
            else:
                await _respond(send, 200, "text/plain; version=0.0.4; charset=utf-8", await self._metrics())
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


def _bearer_is(scope: Scope, token: str) -> bool:
    for k, v in scope.get("headers", []):
        if k == b"authorization":
            given = v.decode("latin-1")
            return given.startswith("Bearer ") and hmac.compare_digest(given[7:].encode(), token.encode())
    return False


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
                                 {code: n.cfg.name for code, n in self.nodes.items()}, self.states,
                                 ready=self.failing, metrics=self.metrics, metrics_token=cfg.metrics_token)
        self.registry = host_registry()  # the process's own metrics and the shared gRPC listener's
        self.grpc_server: Any = None
        self.grpc_port = 0
        self.http: uvicorn.Server | None = None
        self._http_task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._held: dict[str, tuple[int, int]] = {}  # node → (store generation, frameworks held)

    @classmethod
    async def open(cls, cfg: HostConfig) -> NodeHost:
        limit = asyncio.Semaphore(cfg.start_concurrency)

        async def one(node: NodeConfig) -> NodeRuntime:
            async with limit:
                return NodeRuntime(node, await Store.open(node.store_url, node.limits.store_connections))

        return cls(cfg, list(await asyncio.gather(*(one(n) for n in cfg.nodes))))

    async def states(self) -> list[dict[str, Any]]:
        """Per hosted node: who it is, how many frameworks it holds, whether NATS is connected (for
        operators and benchmarks: no node's gateway is involved). A node's store is read again only
        after a write, so polling a host of thousands costs next to nothing."""
        async def held(code: str, n: NodeRuntime) -> int:
            generation = n.store.generation
            cached = self._held.get(code)
            if cached is None or cached[0] != generation:
                async with n.store.read() as r:
                    cached = self._held[code] = (generation, await r.frameworks.count())
            return cached[1]

        # At once, not one after another: a node busy with its own writes delays only its own line.
        counts = await asyncio.gather(*(held(code, n) for code, n in self.nodes.items()))
        return [{"code": code, "name": n.cfg.name, "level": n.cfg.level, "frameworks": count,
                 "nats_connected": n.nats is not None and n.nats.connected}
                for (code, n), count in zip(self.nodes.items(), counts, strict=True)]

    async def failing(self) -> list[dict[str, Any]]:
        """Every check of every hosted node that fails (nodes/services/readiness.py)."""
        out = []
        for code, n in self.nodes.items():
            for c in not_ready(await readiness.check(n.ctx, n.transport)):
                out.append({"node": code, "check": c.name, "code": c.code, "detail": c.detail})
        return out

    async def metrics(self) -> bytes:
        return await collect_all([n.services.metrics for n in self.nodes.values()], self.registry)

    async def start(self) -> None:
        limit = asyncio.Semaphore(self.cfg.start_concurrency)

        # Listening first: a node's children (here or in other processes) call as soon as they start,
        # and a refused connection would hold their process's channel to this host in back-off.
        tls = [n.cfg.tls for n in self.nodes.values() if n.cfg.tls is not None]
        routing = RoutingServicer({}, starting=self.nodes)
        max_message = max(n.cfg.limits.grpc_message_bytes for n in self.nodes.values())
        self.grpc_server, self.grpc_port = await start_server(
            self.cfg.grpc_listen, routing, tls or None, max_message=max_message,
            interceptors=[interceptor(self.registry, nodes=set(self.nodes))])

        async def one(code: str, node: NodeRuntime) -> None:
            async with limit:
                with node_context(node.cfg.code):  # its tasks' log records name it
                    await node.start_core()
            routing.add(code, node.servicer())
            node.ctx.readiness.grpc_serving = True

        await asyncio.gather(*(one(code, n) for code, n in self.nodes.items()))
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
