"""/api/v1/rankings, /values, /warnings, /flags, /drilldown: results held here and below, one
framework version at a time (the one in force unless ``framework`` or ``version`` names another),
every figure labelled with the version it answers. These are computed, unpublished results: only for
results.interim (the office, reviewers, auditors, the bearer token); the public reads /public."""

from __future__ import annotations

import msgspec
from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.status_codes import HTTP_200_OK, HTTP_206_PARTIAL_CONTENT

from aggregator.framework import FrameworkRef
from gateway.guards import require
from gateway.params import (
    Cycle,
    Depth,
    Grade,
    Indicator,
    OptFramework,
    OptNode,
    OptPeriod,
    OptVersion,
    Period,
    WarningLevel,
    Years,
)
from gateway.problems import documented
from gateway.response_cache import ANSWER_SECONDS, FEDERATED_SECONDS
from gateway.schemas import (
    Drilldown,
    DrillRow,
    DroppedRow,
    Flags,
    FrameworkLabel,
    Ranking,
    ValueRow,
    WarningRow,
)
from nodes.services.context import NodeContext
from nodes.services.query import QueryService
from nodes.services.read_models import ReadModels
from nodes.services.versions import one
from proto.appraisal.v1 import appraisal_pb2 as pb


def label(ref: FrameworkRef | pb.FrameworkRef) -> FrameworkLabel:
    return FrameworkLabel(issuer=ref.issuer, cycle=ref.cycle, unit_class=ref.unit_class, version=ref.version,
                          digest=ref.digest)


def drilldown_body(reply: pb.QueryReply, cycle: str, period: str, indicator: str) -> Drilldown:
    return Drilldown(indicator=indicator, cycle=cycle, period=period, framework=label(reply.framework),
                     rows=[msgspec.convert({"unit": r.unit, "name": r.name, "parent": r.parent, "level": r.level,
                                            "value": r.value, "source": r.source}, DrillRow) for r in reply.rows],
                     partial=list(reply.partial), complete=not reply.partial,
                     dropped=[DroppedRow(unit=d.unit, code=d.code, reason=d.reason, by=d.by, via=d.via)
                              for d in reply.dropped], dropped_total=reply.dropped_total)


PARTIAL = ResponseSpec(data_container=Drilldown, generate_examples=False,
                       description="部分下级未应答 (partial: some node below did not answer in time): `complete` is "
                                   "false and `partial` names them; their rows are missing, not guessed")


class ResultsController(Controller):
    tags = ("results",)
    guards = (require("results.interim"),)
    security = ({"bearer": []},)

    @get("/api/v1/rankings", summary="Scores and ranks of this node's units, under one framework version",
         cache=ANSWER_SECONDS, responses=documented(400, 401, 403, 404, 409))
    async def rankings(self, node_context: NamedDependency[NodeContext], read: NamedDependency[ReadModels], cycle: Cycle,
                       period: OptPeriod = None, framework: OptFramework = None,
                       version: OptVersion = None) -> list[Ranking]:
        names = node_context.unit_names
        shown = await read.versions(cycle, framework, version)
        return [Ranking(unit=r.record.unit, name=names.get(r.record.unit, r.record.unit), period=r.record.period,
                        score=r.record.score, rank=r.record.rank, grade=r.explanation.get("grade"),
                        framework_digest=r.record.framework_digest, framework=label(r.version.ref),
                        assessed=r.assessed, complete=r.complete, interim=r.interim, graded=r.graded,
                        explanation=r.explanation)
                for r in await read.rankings(cycle, period, shown)]

    @get("/api/v1/values", summary="Values held for a cycle: this node's own and its children's, under one version",
         cache=ANSWER_SECONDS, responses=documented(400, 401, 403, 404, 409))
    async def values(self, node_context: NamedDependency[NodeContext], read: NamedDependency[ReadModels], cycle: Cycle,
                     node_code: OptNode = None, framework: OptFramework = None,
                     version: OptVersion = None) -> list[ValueRow]:
        shown = await read.versions(cycle, framework, version)
        rows = await read.values(node_code or node_context.me.code, cycle, shown)
        return [ValueRow(node=v.node, period=v.period, indicator=v.indicator, value=v.value, source=v.source,
                         framework_digest=v.framework_digest, framework=label(ref)) for v, ref in rows]

    @get("/api/v1/warnings", summary="预警: units behind the time-proportional target in a period",
         cache=ANSWER_SECONDS, responses=documented(400, 401, 403, 404, 409, 422))
    async def warnings(self, read: NamedDependency[ReadModels], cycle: Cycle, period: Period,
                       level: WarningLevel = None, framework: OptFramework = None,
                       version: OptVersion = None) -> list[WarningRow]:
        found = await read.warnings(cycle, period, await read.versions(cycle, framework, version))
        return [msgspec.convert(w, WarningRow) for w in found if level is None or w["level"] == level]

    @get("/api/v1/flags", summary="Units with the same grade several years running (e.g. 一般 two years)",
         cache=ANSWER_SECONDS, responses=documented(400, 401, 403))
    async def flags(self, read: NamedDependency[ReadModels], grade: Grade = "一般",
                    years: Years = 2) -> Flags:
        return Flags(grade=grade, years=years, units=await read.repeated_grades(grade, years))

    @get("/api/v1/drilldown", summary="One indicator over this node's subtree under one framework version "
                                      "(federated over gRPC; only units named by signed frameworks are kept)",
         cache=FEDERATED_SECONDS, responses={**documented(400, 401, 403, 404, 409), 206: PARTIAL})
    async def drilldown(self, query_service: NamedDependency[QueryService], read: NamedDependency[ReadModels],
                        cycle: Cycle, period: Period, indicator: Indicator, depth: Depth = 3,
                        framework: OptFramework = None, version: OptVersion = None) -> Response[Drilldown]:
        shown = one(await read.versions(cycle, framework, version), cycle)
        reply = await query_service.drilldown(cycle, period, indicator, depth, shown)
        body = drilldown_body(reply, cycle, period, indicator)
        # A partial answer is never passed off as a whole one: its status says so as well as its body.
        return Response(body, status_code=HTTP_200_OK if body.complete else HTTP_206_PARTIAL_CONTENT)
