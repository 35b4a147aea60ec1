"""/api/v1/admin/values, /assessments, /revocations: what the node's office enters (the bearer token,
or a session whose roles and scope allow it)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, post
from litestar.di import NamedDependency
from litestar.params import JSONBody

from gateway.guards import actor, check_scope, require
from gateway.problems import documented
from gateway.schemas import Assessed, EnterAssessment, Entered, EnterValues, Revoke, Revoked
from nodes.services.context import NodeContext
from nodes.services.entry import EntryService
from nodes.services.trust import HeartbeatService


class AdminController(Controller):
    tags = ("admin",)
    security = ({"bearer": []},)

    @post("/api/v1/admin/values", summary="Enter approved values for this node and report them up", status_code=201,
          responses=documented(400, 401, 403, 409, 422), guards=[require("values.enter")])
    async def enter(self, request: Request[Any, Any, Any], entry: NamedDependency[EntryService],
                    node_context: NamedDependency[NodeContext], data: JSONBody[EnterValues]) -> Entered:
        who = actor(request)
        values = dict(data.values)
        check_scope(who, units=[node_context.me.code], indicators=values)
        return Entered(bundle_id=await entry.enter_values(data.cycle, data.period, values, who.actor))

    @post("/api/v1/admin/assessments", summary="Record ratings, surveys, milestones, events or last year's values "
          "for one unit, and re-score", status_code=201, responses=documented(400, 401, 403, 409, 422),
          guards=[require("opinions.enter")])
    async def assess(self, request: Request[Any, Any, Any], entry: NamedDependency[EntryService],
                     data: JSONBody[EnterAssessment]) -> Assessed:
        who = actor(request)
        check_scope(who, units=[data.unit])
        body = data.body()
        await entry.enter_assessment(data.cycle, data.period, data.unit, body, who.actor)
        return Assessed(unit=data.unit, recorded=sorted(body))

    @post("/api/v1/admin/revocations", summary="Revoke a certificate this node issued to one of its children",
          status_code=201, responses=documented(400, 401, 403, 422), guards=[require("revocations.manage")])
    async def revoke(self, request: Request[Any, Any, Any], heartbeat: NamedDependency[HeartbeatService],
                     data: JSONBody[Revoke]) -> Revoked:
        version = await heartbeat.revoke(data.code, data.serial, data.reason, actor(request).actor)
        return Revoked(code=data.code, serial=data.serial, list_version=version)
