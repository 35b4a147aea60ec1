"""GET /: the dashboard page — rankings with grades and the drill-down of any indicator."""

from __future__ import annotations

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.response import Template

from aggregator.framework import LEVEL_ZH
from gateway.params import Cycle, OptIndicator, Period
from nodes.services.context import NodeContext
from nodes.services.query import QueryService
from nodes.services.read_models import ReadModels
from proto.appraisal.v1 import appraisal_pb2 as pb

SOURCE_ZH = {"rolled_up": "逐级汇总", "reported": "下级报送", "entered": "本级填报"}


class DashboardController(Controller):
    include_in_schema = False

    @get("/")
    async def dashboard(self, node_context: NamedDependency[NodeContext], read: NamedDependency[ReadModels],
                        query_service: NamedDependency[QueryService],
                        cycle: Cycle = "2026", period: Period = "2026-Y",
                        indicator: OptIndicator = None) -> Template:
        names = node_context.child_names
        ranked = await read.rankings(cycle, period)
        held = await read.frameworks(cycle)
        leaves = [(i.code, i.name) for i in held[-1].framework.leaves()] if held else []
        drill = None
        if indicator:
            reply = await query_service.query(pb.QueryRequest(cycle=cycle, period=period, indicator=indicator, depth=3))
            drill = {"name": dict(leaves).get(indicator, indicator),
                     "rows": [{"level": LEVEL_ZH.get(r.level, r.level), "level_key": r.level, "name": r.name,
                               "unit": r.unit, "value": r.value, "source": SOURCE_ZH.get(r.source, r.source)}
                              for r in sorted(reply.rows, key=lambda r: r.unit)],
                     "partial": list(reply.partial)}
        me = node_context.me
        return Template(template_name="dashboard.html.j2", context={
            "me": {"name": me.name, "code": me.code, "level": LEVEL_ZH.get(me.level, me.level)},
            "cycle": cycle, "period": period, "indicator": indicator,
            "rankings": [{"rank": r.record.rank, "name": names.get(r.record.unit, r.record.unit), "unit": r.record.unit,
                          "score": r.record.score, "grade": r.grade, "assessed": r.assessed} for r in ranked],
            "leaves": leaves, "drill": drill,
            "interim": any(r.interim for r in ranked), "graded": all(r.graded for r in ranked),
        })
