"""GET /dashboard: the internal dashboard (computed results before publication: results.interim only)
— rankings with grades and the drill-down of any indicator, one framework
version at a time (the one in force unless ``framework`` or ``version`` names another), labelled. The
template translates the level and source keys (gateway/i18n.py); the rankings also feed its bar chart."""

from __future__ import annotations

from typing import Any

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.response import Template

from aggregator.framework import LEVEL_ZH
from gateway.guards import require
from gateway.params import Cycle, OptFramework, OptIndicator, OptVersion, Period
from gateway.response_cache import FEDERATED_SECONDS
from nodes.services.context import NodeContext
from nodes.services.query import QueryService
from nodes.services.read_models import ReadModels
from nodes.services.versions import Version

SOURCE_ZH = {"rolled_up": "逐级汇总", "reported": "下级报送", "entered": "本级填报"}


def shown_label(v: Version) -> dict[str, Any]:
    fw = v.framework
    return {"issuer": fw.issuer_name, "code": fw.issuer, "cycle": fw.cycle, "class": fw.unit_class,
            "version": fw.version, "digest": v.digest, "short": v.digest[:12], "title": fw.title}


class DashboardController(Controller):
    include_in_schema = False

    @get("/dashboard", cache=FEDERATED_SECONDS, guards=[require("results.interim")])
    async def dashboard(self, node_context: NamedDependency[NodeContext], read: NamedDependency[ReadModels],
                        query_service: NamedDependency[QueryService],
                        cycle: Cycle = "2026", period: Period = "2026-Y",
                        indicator: OptIndicator = None, framework: OptFramework = None,
                        version: OptVersion = None) -> Template:
        names = node_context.unit_names
        shown = await read.versions(cycle, framework, version)
        sections = []
        for v in shown:
            ranked = await read.rankings(cycle, period, [v])
            sections.append({
                "framework": shown_label(v),
                "rankings": [{"rank": r.record.rank, "name": names.get(r.record.unit, r.record.unit),
                              "unit": r.record.unit, "score": r.record.score, "grade": r.grade,
                              "assessed": r.assessed} for r in ranked],
                "leaves": [(i.code, i.name) for i in v.framework.leaves()],
                "interim": any(r.interim for r in ranked), "graded": all(r.graded for r in ranked),
            })
        shown_digests = {v.digest for v in shown}
        others = [shown_label(v) for v in await read.held(cycle) if v.digest not in shown_digests]
        drill = None
        under = next((v for v in shown if indicator and v.framework.indicator(indicator) is not None), None)
        if indicator and under is not None:
            reply = await query_service.drilldown(cycle, period, indicator, 3, under)
            ind = under.framework.indicator(indicator)
            drill = {"name": ind.name if ind is not None else indicator, "framework": shown_label(under),
                     "rows": [{"level": LEVEL_ZH[r.level], "level_key": r.level, "name": r.name,
                               "unit": r.unit, "value": r.value, "source": SOURCE_ZH[r.source],
                               "source_key": r.source}
                              for r in sorted(reply.rows, key=lambda r: r.unit)],
                     "partial": list(reply.partial),
                     "dropped": [{"unit": d.unit, "reason": d.reason, "by": d.by, "via": d.via} for d in reply.dropped],
                     "dropped_total": reply.dropped_total}
        me = node_context.me
        return Template(template_name="dashboard.html.j2", context={
            "me": {"name": me.name, "code": me.code, "level": LEVEL_ZH.get(me.level, me.level), "level_key": me.level},
            "cycle": cycle, "period": period, "indicator": indicator,
            "sections": sections, "others": others, "drill": drill,
        })
