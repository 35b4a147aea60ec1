"""/health, /api/v1/status, /api/v1/sync: who this node is and how its synchronisation stands."""

from __future__ import annotations

import msgspec
from litestar import Controller, get
from litestar.di import NamedDependency

from gateway.problems import documented
from gateway.schemas import Health, Status, SyncStatus
from nodes.services.read_models import ReadModels


class NodeController(Controller):
    tags = ("node",)

    @get("/health", summary="Liveness", sync_to_thread=False)
    def health(self, read: NamedDependency[ReadModels]) -> Health:
        return msgspec.convert({"status": "ok", **read.node_info()}, Health)

    @get("/api/v1/status", summary="Node status: counts, frameworks, sync state", responses=documented())
    async def status(self, read: NamedDependency[ReadModels]) -> Status:
        return msgspec.convert(await read.status(), Status, from_attributes=True)

    @get("/api/v1/sync", summary="Honest sync status: sent, acknowledged, pending, last error, per direction",
         responses=documented())
    async def sync(self, read: NamedDependency[ReadModels]) -> SyncStatus:
        return msgspec.convert(await read.sync_status(), SyncStatus)
