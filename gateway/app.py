"""Litestar application factory for a node's gateway."""

import asyncio
import base64
import hmac
import html
import json
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import TYPE_CHECKING, Any

from litestar import Litestar, MediaType, Request, Response, get, post
from litestar.exceptions import HTTPException, NotAuthorizedException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin

from aggregator.framework import LEVEL_ZH
from nodes.yamlfile import FileError
from proto.appraisal.v1 import appraisal_pb2 as pb
from sync.envelope import EnvelopeError

if TYPE_CHECKING:
    from nodes.service import Node

SOURCE_ZH = {"rolled_up": "逐级汇总", "reported": "下级报送", "entered": "本级填报"}


def create_app(node: "Node") -> Litestar:
    from nodes.service import NodeError, framework_of

    def require_admin(request: Request[Any, Any, Any]) -> str:
        supplied = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not supplied or not hmac.compare_digest(supplied, node.cfg.admin_token):
            raise NotAuthorizedException("需要管理令牌 (admin token required)")
        return "admin"

    def node_info() -> dict[str, Any]:
        return {"code": node.me.code, "name": node.me.name, "level": node.me.level,
                "parent": node.me.parent, "path": list(node.me.path),
                "children": [{"code": c.code, "name": c.name} for c in node.cfg.children]}

    @get("/health", summary="Liveness", tags=["node"])
    async def health() -> dict[str, Any]:
        return {"status": "ok", **node_info()}

    @get("/api/v1/status", summary="Node status: counts, frameworks, sync state", tags=["node"])
    async def status() -> dict[str, Any]:
        async with node.store.read() as r:
            counts = await r.counts()
            fws = await r.frameworks()
        transport_error = node.nats.last_error if node.nats else ""
        return {
            **node_info(), "counts": counts,
            "frameworks": [{"digest": f.digest, "issuer": f.issuer, "cycle": f.cycle, "class": f.unit_class,
                            "version": f.version, "role": f.role} for f in fws],
            "sync": {"outbox_pending": counts["outbox_pending"], "last_error": node.last_error or transport_error},
        }

    @get("/api/v1/frameworks", summary="Frameworks held (received and issued), with each indicator's link",
         tags=["frameworks"])
    async def frameworks(cycle: str | None = None, envelopes: bool = False) -> list[dict[str, Any]]:
        async with node.store.read() as r:
            rows = await r.frameworks(cycle=cycle)
        out = []
        for row in rows:
            fw = framework_of(row)
            item: dict[str, Any] = {
                "digest": row.digest, "role": row.role, "issuer": fw.issuer, "issuer_name": fw.issuer_name,
                "cycle": fw.cycle, "class": fw.unit_class, "version": fw.version, "title": fw.title,
                "parent": None if fw.parent is None else {"issuer": fw.parent.issuer, "version": fw.parent.version,
                                                          "digest": fw.parent.digest},
                "units": [{"code": u.code, "name": u.name} for u in fw.units],
                "indicators": [{
                    "code": i.code, "name": i.name, "parent_code": i.parent_code, "weight": str(i.weight),
                    "leaf": i.leaf, "unit": i.measure_unit, "direction": i.direction, "rollup": i.rollup,
                    "target": None if i.target is None else str(i.target),
                    "links": [{"parent_indicator": lk.parent_indicator, "rule": lk.rule, "share": str(lk.share),
                               "parent_framework_digest": lk.parent_framework_digest} for lk in i.links],
                } for i in fw.indicators],
            }
            if envelopes:
                item["cascade"] = base64.b64encode(row.cascade).decode()
            out.append(item)
        return out

    @get("/api/v1/rankings", summary="Scores and ranks of this node's units", tags=["results"])
    async def rankings(cycle: str, period: str | None = None) -> list[dict[str, Any]]:
        async with node.store.read() as r:
            rows = await r.scores(cycle, period)
        names = {c.code: c.name for c in node.cfg.children}
        out = []
        for s in rows:
            explanation = json.loads(s.explanation)
            out.append({"unit": s.unit, "name": names.get(s.unit, s.unit), "period": s.period, "score": s.score,
                        "rank": s.rank, "grade": explanation.get("grade"), "framework_digest": s.framework_digest,
                        "explanation": explanation})
        return out

    @get("/api/v1/values", summary="Values held for a cycle: this node's own and its children's", tags=["results"])
    async def values(cycle: str, node_code: str | None = None) -> list[dict[str, Any]]:
        async with node.store.read() as r:
            rows = await r.values_of(node_code or node.me.code, cycle)
        return [{"node": v.node, "period": v.period, "indicator": v.indicator, "value": v.value,
                 "source": v.source, "framework_digest": v.framework_digest} for v in rows]

    @get("/api/v1/sync", summary="Honest sync status: sent, acknowledged, pending, last error, per direction",
         tags=["node"])
    async def sync() -> dict[str, Any]:
        return await node.sync_status()

    @get("/api/v1/warnings", summary="预警: units behind the time-proportional target in a period", tags=["results"])
    async def warnings(cycle: str, period: str, level: str | None = None) -> list[dict[str, str]]:
        try:
            found = await node.warnings(cycle, period)
        except NodeError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None
        return [w for w in found if level is None or w["level"] == level]

    @get("/api/v1/flags", summary="Units with the same grade several years running (e.g. 一般 two years)",
         tags=["results"])
    async def flags(grade: str = "一般", years: int = 2) -> dict[str, Any]:
        if not 2 <= years <= 10:
            raise HTTPException(status_code=400, detail="years 应在 2 到 10 之间 (years must be 2..10)")
        return {"grade": grade, "years": years, "units": await node.repeated_grades(grade, years)}

    @get("/api/v1/drilldown", summary="One indicator over this node's subtree (federated over gRPC)",
         tags=["results"])
    async def drilldown(cycle: str, period: str, indicator: str, depth: int = 3) -> dict[str, Any]:
        reply = await node.query(pb.QueryRequest(cycle=cycle, period=period, indicator=indicator,
                                                 depth=max(0, min(depth, 3))))
        return {"indicator": indicator, "cycle": cycle, "period": period,
                "rows": [{"unit": r.unit, "name": r.name, "parent": r.parent, "level": r.level, "value": r.value,
                          "source": r.source} for r in reply.rows],
                "partial": list(reply.partial), "complete": not reply.partial}

    @get("/api/v1/audit", summary="The node's audit log (hash-chained)", tags=["audit"])
    async def audit(action: str | None = None, limit: int = 200) -> dict[str, Any]:
        if not 0 <= limit <= 10_000:
            raise HTTPException(status_code=400, detail="limit 应在 0 到 10000 之间 (limit must be 0..10000)")
        async with node.store.read() as r:
            rows = await r.audit_entries(limit=limit, action=action)
            broken = await r.verify_audit()
        return {"intact": broken is None,
                "first_break": None if broken is None else {"seq": broken.seq, "reason": broken.reason},
                "entries": [{"seq": e.seq, "at": e.at, "actor": e.actor, "action": e.action, "subject": e.subject,
                             "detail": json.loads(e.detail), "hash": e.hash} for e in rows]}

    @post("/api/v1/admin/frameworks", summary="Publish a framework (YAML text) for this node's children",
          tags=["admin"], status_code=201)
    async def publish(request: Request[Any, Any, Any], data: dict[str, str]) -> dict[str, Any]:
        require_admin(request)
        # The client's file name only labels messages; the file itself always has a fixed name.
        label = Path(str(data.get("filename") or "framework.yaml")).name or "framework.yaml"
        with TemporaryDirectory() as tmp:
            path = Path(tmp) / "framework.yaml"
            await asyncio.to_thread(path.write_text, str(data.get("yaml", "")), encoding="utf-8")
            try:
                digest = await node.publish_framework_text(path)
            except (FileError, NodeError, EnvelopeError) as exc:
                raise HTTPException(status_code=422, detail=str(exc).replace(str(path), label)) from None
        return {"digest": digest}

    @post("/api/v1/admin/values", summary="Enter approved values for this node and report them up",
          tags=["admin"], status_code=201)
    async def enter(request: Request[Any, Any, Any], data: dict[str, Any]) -> dict[str, Any]:
        actor = require_admin(request)
        vals = data.get("values")
        if not isinstance(vals, dict):
            raise HTTPException(status_code=422, detail="values 应为 指标编码: 数值 的映射 (values must be a mapping)")
        try:
            bundle_id = await node.enter_values(str(data.get("cycle", "")), str(data.get("period", "")), vals, actor)
        except NodeError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None
        return {"bundle_id": bundle_id}

    @post("/api/v1/admin/assessments", summary="Record ratings, surveys, milestones, events or last year's values "
          "for one unit, and re-score", tags=["admin"], status_code=201)
    async def assess(request: Request[Any, Any, Any], data: dict[str, Any]) -> dict[str, Any]:
        actor = require_admin(request)
        body = {k: v for k, v in data.items() if k not in ("cycle", "period", "unit")}
        try:
            await node.enter_assessment(str(data.get("cycle", "")), str(data.get("period", "")),
                                        str(data.get("unit", "")), body, actor)
        except NodeError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None
        return {"unit": data.get("unit"), "recorded": sorted(body)}

    @get("/api/v1/reviews", summary="Children's bundles by review status: pending, returned, accepted", tags=["results"])
    async def reviews(status: str = "pending", limit: int = 200) -> list[dict[str, Any]]:
        if status not in ("pending", "returned", "accepted", "rejected"):
            raise HTTPException(status_code=422, detail="status 应为 pending/returned/accepted/rejected")
        async with node.store.read() as r:
            rows = await r.bundles_by_status(status, limit=max(0, min(limit, 1000)))
        names = {c.code: c.name for c in node.cfg.children}
        return [{"node": row.node, "name": names.get(row.node, row.node), "bundle_id": row.id, "seq": row.seq,
                 "cycle": row.cycle, "period": row.period, "received_at": row.received_at, "reviewer": row.reviewer,
                 "reviewed_at": row.reviewed_at, "reason": row.reason} for row in rows]

    @post("/api/v1/admin/reviews", summary="Approve a child's pending bundle, or return it for correction",
          tags=["admin"], status_code=201)
    async def review(request: Request[Any, Any, Any], data: dict[str, Any]) -> dict[str, Any]:
        require_admin(request)
        reviewer = str(data.get("reviewer", "")).strip()
        if not reviewer:
            raise HTTPException(status_code=422, detail="reviewer 应为审核人姓名或科室 (name the reviewer)")
        try:
            status = await node.review(str(data.get("node", "")), str(data.get("bundle_id", "")),
                                       str(data.get("decision", "")), str(data.get("note", "")), reviewer)
        except NodeError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None
        return {"bundle_id": data.get("bundle_id"), "status": status}

    @post("/api/v1/admin/revocations", summary="Revoke a certificate this node issued to one of its children",
          tags=["admin"], status_code=201)
    async def revoke(request: Request[Any, Any, Any], data: dict[str, Any]) -> dict[str, Any]:
        actor = require_admin(request)
        serial = data.get("serial")
        if isinstance(serial, bool) or not isinstance(serial, int):
            raise HTTPException(status_code=422, detail="serial 应为证书序号（整数） (serial must be an integer)")
        try:
            version = await node.revoke(str(data.get("code", "")), serial, str(data.get("reason", "")), actor)
        except NodeError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None
        return {"code": data.get("code"), "serial": serial, "list_version": version}

    @get("/", media_type=MediaType.HTML, include_in_schema=False)
    async def dashboard(cycle: str = "2026", period: str = "2026-Y", indicator: str | None = None) -> Response[str]:
        drill = None
        if indicator:
            drill = await node.query(pb.QueryRequest(cycle=cycle, period=period, indicator=indicator, depth=3))
        return Response(await _dashboard(node, cycle, period, indicator, drill), media_type=MediaType.HTML)

    return Litestar(
        route_handlers=[health, status, sync, frameworks, rankings, values, warnings, flags, drilldown, audit,
                        publish, enter, assess, revoke, reviews, review, dashboard],
        openapi_config=OpenAPIConfig(title=f"fedappraisal gateway · {node.me.name}", version="1.0.0",
                                     path="/schema", render_plugins=[JsonRenderPlugin()]),
        debug=False,
    )


async def _dashboard(node: "Node", cycle: str, period: str, indicator: str | None,
                     drill: pb.QueryReply | None) -> str:
    from nodes.service import framework_of

    esc = html.escape
    async with node.store.read() as r:
        scores = await r.scores(cycle, period)
        fws = await r.frameworks(cycle=cycle)
    names = {c.code: c.name for c in node.cfg.children}
    leaves: list[tuple[str, str]] = []
    for row in fws:
        leaves = [(i.code, i.name) for i in framework_of(row).leaves()]
    rank_rows = "".join(
        f"<tr><td>{s.rank}</td><td>{esc(names.get(s.unit, s.unit))}（{esc(s.unit)}）</td><td>{esc(s.score)}</td>"
        f"<td>{esc(str(json.loads(s.explanation).get('grade', '')))}</td></tr>" for s in scores)
    drill_links = " · ".join(
        f'<a href="/?cycle={esc(cycle)}&period={esc(period)}&indicator={esc(c)}">{esc(n)}</a>' for c, n in leaves)
    drill_table = ""
    if drill is not None and indicator:
        rows = sorted(drill.rows, key=lambda r: r.unit)
        body = "".join(
            f"<tr><td>{LEVEL_ZH.get(r.level, r.level)}</td><td style='padding-left:{len(r.unit) * 6}px'>"
            f"{esc(r.name)}（{esc(r.unit)}）</td><td>{esc(r.value)}</td><td>{esc(SOURCE_ZH.get(r.source, r.source))}</td></tr>"
            for r in rows)
        partial = f"<p>未能到达 (unreachable): {esc(', '.join(drill.partial))}</p>" if drill.partial else ""
        drill_table = (f"<h3>{esc(dict(leaves).get(indicator, indicator))}（{esc(indicator)}）</h3>"
                       f"<table><tr><th>层级</th><th>单位</th><th>数值</th><th>来源</th></tr>{body}</table>{partial}"
                       f'<p><a href="/api/v1/drilldown?cycle={esc(cycle)}&period={esc(period)}'
                       f'&indicator={esc(indicator)}">JSON</a></p>')
    return f"""<!doctype html><html lang="zh-CN"><meta charset="utf-8">
<title>{esc(node.me.name)} · 绩效考评</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 10px}}</style>
<h1>{esc(node.me.name)}（{esc(node.me.code)}，{LEVEL_ZH.get(node.me.level, node.me.level)}级）绩效考评</h1>
<h2>{esc(cycle)} 年度排名 · {esc(period)}</h2>
<table><tr><th>名次</th><th>被考评单位</th><th>得分</th><th>等次</th></tr>
{rank_rows or '<tr><td colspan=4>暂无结果</td></tr>'}</table>
<h2>指标下钻 (drill-down)</h2><p>{drill_links or '暂无指标体系'}</p>{drill_table}
<p><a href="/api/v1/status">节点状态</a> · <a href="/api/v1/frameworks">指标体系</a> ·
<a href="/api/v1/audit">审计日志</a> · <a href="/schema/openapi.json">OpenAPI</a></p></html>"""
