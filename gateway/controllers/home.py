"""/home: each person's work page — their open tasks with deadlines, what was returned to them and
why, what waits for their review or confirmation."""

from __future__ import annotations

import time
from typing import Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.response import Redirect, Template

from gateway.controllers.intake import CST, cst
from gateway.guards import actor, current, signed_in
from gateway.pages import page
from nodes.appeals import STATUS_ZH as APPEAL_STATUS
from nodes.intake import STATUS_ZH
from nodes.services.appeals import AppealService
from nodes.services.context import NodeContext
from nodes.services.intake import IntakeService
from nodes.services.read_models import ReadModels


class HomeController(Controller):
    include_in_schema = False

    @get("/")
    async def start(self, request: Request[Any, Any, Any]) -> Redirect:
        """Signed in: one's work; otherwise the published results (nothing computed is public)."""
        return Redirect("/home" if await current(request) is not None else "/public")

    @get("/home", guards=[signed_in])
    async def home(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                   read: NamedDependency[ReadModels], intake: NamedDependency[IntakeService],
                   appeals: NamedDependency[AppealService]) -> Template:
        who = actor(request)
        cycle = time.strftime("%Y", time.gmtime(node_context.clock() + CST))
        pending = len(await read.reviews("pending", 500)) if who.can("values.review") else 0
        to_review = await intake.waiting(cycle, who) if who.can("values.review") else 0
        todo = await intake.todo(cycle, who) if who.can("values.enter") else None
        periods = [{**p, "due": cst(int(str(p["due_at"])))} for p in todo.periods] if todo else []
        returned = [{"ref": f"{e.unit}/{e.key}", "period": e.period, "value": e.value, "reason": e.reason,
                     "status": STATUS_ZH.get(e.status, e.status), "by": e.decided_by} for e in todo.returned] if todo else []
        appealed = [{"id": a.id, "unit": a.unit, "status": APPEAL_STATUS.get(a.status, a.status), "decision": a.decision,
                     "decide_by": cst(a.decide_by), "target": a.indicator or a.target}
                    for a in await appeals.todo(who)] if who.can("appeals.view") else []
        return await page(request, "home.html.j2", node_context, pending=pending, to_review=to_review, cycle=cycle,
                          periods=periods, returned=returned, must_change=who.must_change, appeals=appealed)
