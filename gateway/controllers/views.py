"""/frameworks, /audit and /opinions: the framework view (the indicator tree, each leaf's link to its
parent's indicator and the parent framework version), the audit log for auditors (verified, newest
first, a page at a time), and the opinion providers' page (ratings of the indicators scored by raters).
"""

from __future__ import annotations

import json
from typing import Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.response import Template

from aggregator.errors import AppraisalError, BadInput
from aggregator.framework import LEVEL_ZH
from gateway.controllers.intake import _cycle, _form, _one, cst
from gateway.guards import actor, check_scope, require, signed_in
from gateway.pages import page
from gateway.params import AuditBefore, OptAction, OptCycle, OptFramework, OptPeriod
from gateway.problems import STATUS_BY_KIND
from nodes.services.audit_log import AuditService
from nodes.services.context import NodeContext
from nodes.services.entry import EntryService
from nodes.services.read_models import ReadModels

ROLE_ZH = {"received": "上级下发", "issued": "本级下发", "internal": "本级部门"}
AUDIT_PAGE = 100


class ViewsController(Controller):
    include_in_schema = False

    @get("/frameworks", guards=[signed_in])
    async def frameworks(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                         read: NamedDependency[ReadModels], cycle: OptCycle = None,
                         framework: OptFramework = None) -> Template:
        cyc = _cycle(cycle)
        held = await read.frameworks(cyc)
        by_digest = {h.record.digest: h for h in held}
        shown = next((h for h in held if framework and h.record.digest.startswith(framework)), None) \
            or next((h for h in reversed(held) if h.record.role != "received"), held[-1] if held else None)
        tree: list[dict[str, Any]] = []
        parent_label = ""
        if shown is not None:
            fw = shown.framework
            parent = by_digest.get(fw.parent.digest) if fw.parent is not None else None
            if fw.parent is not None:
                parent_label = f"{fw.parent.issuer} {fw.parent.cycle}「{fw.parent.unit_class}」第 {fw.parent.version} 版 · " \
                               f"{fw.parent.digest[:12]}"
            depth = {i.code: 0 for i in fw.indicators}
            for i in fw.indicators:
                depth[i.code] = depth.get(i.parent_code, -1) + 1 if i.parent_code else 0
                links = []
                for link in i.links:
                    p = parent.framework.indicator(link.parent_indicator) if parent is not None else None
                    links.append({"code": link.parent_indicator, "name": p.name if p else "", "rule": link.rule,
                                  "share": str(link.share), "digest": link.parent_framework_digest[:12]})
                tree.append({"code": i.code, "name": i.name, "depth": depth[i.code], "leaf": i.leaf,
                             "weight": str(i.weight), "unit": i.measure_unit, "target": "" if i.target is None else str(i.target),
                             "method": i.method, "provider": i.provider, "frequency": i.frequency, "links": links,
                             "direction": i.direction})
        choices = [{"digest": h.record.digest, "label": f"{ROLE_ZH.get(h.record.role, h.record.role)} · "
                    f"{h.framework.issuer_name or h.framework.issuer}「{h.framework.unit_class}」第 {h.framework.version} 版",
                    "chosen": shown is not None and h.record.digest == shown.record.digest} for h in held]
        return await page(request, "frameworks.html.j2", node_context, cycle=cyc, choices=choices, tree=tree,
                          shown=None if shown is None else {
                              "digest": shown.record.digest, "role": ROLE_ZH.get(shown.record.role, shown.record.role),
                              "title": shown.framework.title, "class": shown.framework.unit_class,
                              "version": shown.framework.version,
                              "units": [f"{u.name}（{u.code}）" for u in shown.framework.units]},
                          parent_label=parent_label)

    @get("/audit", guards=[require("audit.read")])
    async def audit(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                    audit_log: NamedDependency[AuditService], action: OptAction = None,
                    before: AuditBefore = None) -> Template:
        verdict = await audit_log.verify()
        rows, after = await audit_log.page(AUDIT_PAGE, before, action)
        entries = [{"seq": e.seq, "at": cst(e.at), "actor": e.actor, "action": e.action, "subject": e.subject[:255],
                    "short": e.subject if len(e.subject) <= 20 else e.subject[:16] + "…",
                    "detail": json.dumps(json.loads(e.detail), ensure_ascii=False)[:400], "hash": e.hash[:12]}
                   for e in rows]
        broken = verdict.first_break
        return await page(request, "audit.html.j2", node_context, entries=entries, next=after, action=action or "",
                          intact=broken is None, broken=None if broken is None else {"seq": broken.seq,
                                                                                      "reason": broken.reason},
                          verified=verdict.verified_seq)

    @get("/opinions", guards=[require("opinions.enter")])
    async def opinions(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                       read: NamedDependency[ReadModels], cycle: OptCycle = None,
                       period: OptPeriod = None) -> Template:
        return await self._opinions(request, node_context, read, _cycle(cycle), period)

    async def _opinions(self, request: Request[Any, Any, Any], node: NodeContext, read: ReadModels, cycle: str,
                        period: str | None, *, status: int = 200, **extra: Any) -> Template:
        who = actor(request)
        per = period or f"{cycle}-Y"
        # each unit with the rated indicators of the framework it is appraised by (the latest naming it)
        by_unit: dict[str, tuple[int, list[dict[str, str]]]] = {}
        for h in await read.frameworks(cycle):
            if h.record.role not in ("issued", "internal"):
                continue
            rated = [{"code": i.code, "name": i.name} for i in h.framework.leaves() if i.method == "raters"]
            for u in h.framework.units:
                if who.covers_unit(u.code) and h.framework.version >= by_unit.get(u.code, (0, []))[0]:
                    by_unit[u.code] = (h.framework.version, rated)
        names = node.unit_names
        units = [{"code": code, "name": names.get(code, code), "rated": rated}
                 for code, (_, rated) in sorted(by_unit.items()) if rated]
        return await page(request, "opinions.html.j2", node, status=status, cycle=cycle, period=per, units=units,
                          level=LEVEL_ZH.get(node.me.level, ""), **extra)

    @post("/opinions", guards=[require("opinions.enter")])
    async def rate(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                   read: NamedDependency[ReadModels], entry: NamedDependency[EntryService]) -> Template:
        form = await _form(request)
        cycle, period, unit = _cycle(_one(form, "cycle")), _one(form, "period"), _one(form, "unit")
        who = actor(request)
        check_scope(who, units=[unit])
        try:
            ratings: dict[str, list[str]] = {}
            for key, values in form.items():
                if key.startswith("r:") and values[0].strip():
                    ratings[key[2:]] = values[0].replace("，", " ").replace(",", " ").split()
            if not ratings:
                raise BadInput("请至少填写一项评分 (enter at least one rating)", code="opinions.nothing")
            await entry.enter_assessment(cycle, period, unit, {"ratings": ratings}, who.actor)
        except AppraisalError as e:
            return await self._opinions(request, node_context, read, cycle, period,
                                        status=STATUS_BY_KIND.get(e.kind, 422), error=str(e), error_code=e.code)
        return await self._opinions(request, node_context, read, cycle, period, done=unit)
