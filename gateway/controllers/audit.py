"""/api/v1/audit: the node's hash-chained audit log, newest first, and whether it is intact.

Only the office reads it (the admin token, until roles exist): rejection entries name the nodes
and subjects that sent bad messages, and each read runs a verification (nodes/services/audit_log.py)."""

from __future__ import annotations

import json

from litestar import Controller, get
from litestar.di import NamedDependency

from gateway.guards import require
from gateway.params import AuditBefore, AuditLimit, OptAction
from gateway.problems import documented
from gateway.schemas import AuditBreakView, AuditCounterView, AuditEntryView, AuditLog
from nodes.services.audit_log import AuditService


class AuditController(Controller):
    tags = ("audit",)
    guards = (require("audit.read"),)
    security = ({"bearer": []},)

    @get("/api/v1/audit", summary="The node's audit log (hash-chained), newest first", responses=documented(400, 401, 403))
    async def audit(self, audit_log: NamedDependency[AuditService], action: OptAction = None,
                    before: AuditBefore = None, limit: AuditLimit = 200) -> AuditLog:
        verdict = await audit_log.verify()
        rows, after = await audit_log.page(limit, before, action)
        broken = verdict.first_break
        return AuditLog(intact=broken is None,
                        first_break=None if broken is None else AuditBreakView(seq=broken.seq, reason=broken.reason),
                        verified_seq=verdict.verified_seq,
                        entries=[AuditEntryView(seq=e.seq, at=e.at, actor=e.actor, action=e.action, subject=e.subject,
                                                detail=json.loads(e.detail), hash=e.hash) for e in rows],
                        next=after,
                        counters=[AuditCounterView(sender=c.sender, action=c.action, code=c.code, total=c.total,
                                                   pending=c.pending, window_start=c.window_start, last_at=c.last_at)
                                  for c in await audit_log.counters()])
