"""/health, /ready, /api/v1/status, /api/v1/sync: who this node is, whether it can work, and how its
synchronisation stands.

``/health`` is liveness (the process answers); ``/ready`` is readiness (store, NATS, gRPC and, below
the province, trust loaded: nodes/services/readiness.py), 200 or a 503 problem document naming in
``errors`` each part that is not ready. Neither needs a token: probes carry none, and they say
nothing a caller could not learn by trying the node."""

from __future__ import annotations

from typing import Literal, cast

import msgspec
from litestar import Controller, Response, get
from litestar.di import NamedDependency

from gateway.problems import documented, problem
from gateway.schemas import Health, Status, SyncStatus
from nodes.services import readiness
from nodes.services.read_models import ReadModels


class ReadyCheck(msgspec.Struct, kw_only=True):
    name: str
    ok: bool


class Ready(msgspec.Struct, kw_only=True):
    status: Literal["ready"]
    node: str
    checks: list[ReadyCheck]


class NodeController(Controller):
    tags = ("node",)

    @get("/health", summary="Liveness", sync_to_thread=False)
    def health(self, read: NamedDependency[ReadModels]) -> Health:
        return msgspec.convert({"status": "ok", **read.node_info()}, Health)

    @get("/ready", summary="Readiness: store, NATS, gRPC and trust", responses=documented())
    async def ready(self, read: NamedDependency[ReadModels]) -> Response[Ready]:
        # Response[Ready], not "Ready | Response": the 200's schema is Ready alone (a union documents
        # an empty schema beside it, which every body matches); the 503 is the documented problem.
        checks = await readiness.check(read.ctx, read.transport)
        failed = readiness.not_ready(checks)
        if failed:
            names = "、".join(c.name for c in failed)
            answer = problem(503, "node.not_ready", f"节点未就绪：{names} (not ready: {', '.join(c.name for c in failed)})",
                             "/ready", [{"where": c.name, "message": c.detail, "code": c.code} for c in failed],
                             headers={"Retry-After": "5", "Cache-Control": "no-store"})
            return cast("Response[Ready]", answer)
        return Response(Ready(status="ready", node=read.ctx.me.code,
                              checks=[ReadyCheck(name=c.name, ok=c.ok) for c in checks]))

    @get("/api/v1/status", summary="Node status: counts, frameworks, sync state", responses=documented())
    async def status(self, read: NamedDependency[ReadModels]) -> Status:
        return msgspec.convert(await read.status(), Status, from_attributes=True)

    @get("/api/v1/sync", summary="Honest sync status: sent, acknowledged, pending, last error, per direction",
         responses=documented())
    async def sync(self, read: NamedDependency[ReadModels]) -> SyncStatus:
        return msgspec.convert(await read.sync_status(), SyncStatus)
