"""/api/v1/audit: the node's hash-chained audit log and whether it is intact."""

from __future__ import annotations

import json

from litestar import Controller, get
from litestar.di import NamedDependency

from gateway.params import AuditLimit, OptAction
from gateway.problems import documented
from gateway.schemas import AuditBreakView, AuditEntryView, AuditLog
from nodes.services.read_models import ReadModels


class AuditController(Controller):
    tags = ("audit",)

    @get("/api/v1/audit", summary="The node's audit log (hash-chained)", responses=documented(400))
    async def audit(self, read: NamedDependency[ReadModels], action: OptAction = None,
                    limit: AuditLimit = 200) -> AuditLog:
        rows, broken = await read.audit(action, limit)
        return AuditLog(intact=broken is None,
                        first_break=None if broken is None else AuditBreakView(seq=broken.seq, reason=broken.reason),
                        entries=[AuditEntryView(seq=e.seq, at=e.at, actor=e.actor, action=e.action, subject=e.subject,
                                                detail=json.loads(e.detail), hash=e.hash) for e in rows])
