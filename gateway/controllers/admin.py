"""/api/v1/admin/values, /assessments, /revocations: what the node's office enters (admin token)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, post
from litestar.di import NamedDependency
from litestar.params import JSONBody

from gateway.guards import ACTOR_KEY, admin_guard
from gateway.problems import documented
from gateway.schemas import Assessed, EnterAssessment, Entered, EnterValues, Revoke, Revoked
from nodes.services.entry import EntryService
from nodes.services.trust import HeartbeatService


class AdminController(Controller):
    tags = ("admin",)
    guards = (admin_guard,)
    security = ({"bearer": []},)

    @post("/api/v1/admin/values", summary="Enter approved values for this node and report them up", status_code=201,
          responses=documented(400, 401, 409, 422))
    async def enter(self, request: Request[Any, Any, Any], entry: NamedDependency[EntryService],
                    data: JSONBody[EnterValues]) -> Entered:
        values = dict(data.values)
        return Entered(bundle_id=await entry.enter_values(data.cycle, data.period, values, request.state[ACTOR_KEY]))

    @post("/api/v1/admin/assessments", summary="Record ratings, surveys, milestones, events or last year's values "
          "for one unit, and re-score", status_code=201, responses=documented(400, 401, 409, 422))
    async def assess(self, request: Request[Any, Any, Any], entry: NamedDependency[EntryService],
                     data: JSONBody[EnterAssessment]) -> Assessed:
        body = data.body()
        await entry.enter_assessment(data.cycle, data.period, data.unit, body, request.state[ACTOR_KEY])
        return Assessed(unit=data.unit, recorded=sorted(body))

    @post("/api/v1/admin/revocations", summary="Revoke a certificate this node issued to one of its children",
          status_code=201, responses=documented(400, 401, 422))
    async def revoke(self, request: Request[Any, Any, Any], heartbeat: NamedDependency[HeartbeatService],
                     data: JSONBody[Revoke]) -> Revoked:
        version = await heartbeat.revoke(data.code, data.serial, data.reason, request.state[ACTOR_KEY])
        return Revoked(code=data.code, serial=data.serial, list_version=version)
