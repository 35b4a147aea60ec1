"""/api/v1/rankings, /values, /warnings, /flags, /drilldown: results held here and below."""

from __future__ import annotations

import msgspec
from litestar import Controller, get
from litestar.di import NamedDependency

from gateway.params import Cycle, Depth, Grade, Indicator, OptNode, OptPeriod, Period, WarningLevel, Years
from gateway.problems import documented
from gateway.schemas import (
    Drilldown,
    DrillRow,
    Flags,
    Ranking,
    ValueRow,
    WarningRow,
)
from nodes.services.context import NodeContext
from nodes.services.query import QueryService
from nodes.services.read_models import ReadModels
from proto.appraisal.v1 import appraisal_pb2 as pb


class ResultsController(Controller):
    tags = ("results",)

    @get("/api/v1/rankings", summary="Scores and ranks of this node's units", responses=documented(400))
    async def rankings(self, node_context: NamedDependency[NodeContext], read: NamedDependency[ReadModels], cycle: Cycle,
                       period: OptPeriod = None) -> list[Ranking]:
        names = node_context.child_names
        return [Ranking(unit=r.record.unit, name=names.get(r.record.unit, r.record.unit), period=r.record.period,
                        score=r.record.score, rank=r.record.rank, grade=r.explanation.get("grade"),
                        framework_digest=r.record.framework_digest, assessed=r.assessed, complete=r.complete,
                        interim=r.interim, graded=r.graded, explanation=r.explanation)
                for r in await read.rankings(cycle, period)]

    @get("/api/v1/values", summary="Values held for a cycle: this node's own and its children's",
         responses=documented(400))
    async def values(self, node_context: NamedDependency[NodeContext], read: NamedDependency[ReadModels], cycle: Cycle,
                     node_code: OptNode = None) -> list[ValueRow]:
        rows = await read.values(node_code or node_context.me.code, cycle)
        return [ValueRow(node=v.node, period=v.period, indicator=v.indicator, value=v.value, source=v.source,
                         framework_digest=v.framework_digest) for v in rows]

    @get("/api/v1/warnings", summary="预警: units behind the time-proportional target in a period",
         responses=documented(400, 422))
    async def warnings(self, read: NamedDependency[ReadModels], cycle: Cycle, period: Period,
                       level: WarningLevel = None) -> list[WarningRow]:
        found = await read.warnings(cycle, period)
        return [msgspec.convert(w, WarningRow) for w in found if level is None or w["level"] == level]

    @get("/api/v1/flags", summary="Units with the same grade several years running (e.g. 一般 two years)",
         responses=documented(400))
    async def flags(self, read: NamedDependency[ReadModels], grade: Grade = "一般",
                    years: Years = 2) -> Flags:
        return Flags(grade=grade, years=years, units=await read.repeated_grades(grade, years))

    @get("/api/v1/drilldown", summary="One indicator over this node's subtree (federated over gRPC)",
         responses=documented(400))
    async def drilldown(self, query_service: NamedDependency[QueryService], cycle: Cycle, period: Period, indicator: Indicator,
                        depth: Depth = 3) -> Drilldown:
        reply = await query_service.query(pb.QueryRequest(cycle=cycle, period=period, indicator=indicator, depth=depth))
        return Drilldown(indicator=indicator, cycle=cycle, period=period,
                         rows=[DrillRow(unit=r.unit, name=r.name, parent=r.parent, level=r.level, value=r.value,
                                        source=r.source) for r in reply.rows],
                         partial=list(reply.partial), complete=not reply.partial)
