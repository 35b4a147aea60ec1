"""/use (结果运用): the office produces the signed lists its rules make from a cycle's final results;
the office and auditors read them and download each as Excel, CSV or the signed envelope
(``/use/{digest}.xlsx|.csv|.dsse``; ``/use/{cycle}.xlsx|.csv``: every list of the cycle, a sheet
each). JSON: ``GET /api/v1/use-lists``, ``POST /api/v1/use-lists`` (nodes/services/results_use.py)."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any
from urllib.parse import quote

import msgspec
from litestar import Controller, HttpMethod, Request, get, post, route
from litestar.di import NamedDependency
from litestar.params import JSONBody, PathParameter, QueryParameter
from litestar.response import Response, Template

from aggregator.errors import AppraisalError, BadInput
from aggregator.framework import valid_cycle
from aggregator.numbers import to_text
from gateway.guards import actor, require
from gateway.i18n import language
from gateway.pages import form_of, page
from gateway.params import OptCycle
from gateway.problems import STATUS_BY_KIND, documented
from gateway.use_schemas import ProduceUseLists, UseEntryView, UseListView
from nodes import use_export
from nodes.results_use import Rule, body_name
from nodes.services.context import NodeContext
from nodes.services.results_use import Held, ResultsUseService

CST = 8 * 3600
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
DSSE = "application/vnd.fedappraisal.use-list.v1+dsse"
UseFile = Annotated[str, PathParameter(pattern=r"^([0-9a-f]{64}\.(xlsx|csv|dsse)|[0-9]{4}\.(xlsx|csv))$",
                                       description="清单摘要或年度加扩展名 (a list's digest or a cycle, and .xlsx/.csv/.dsse)")]
Versions = Annotated[bool, QueryParameter(description="every version, not only the latest of each list")]


class UseForm(msgspec.Struct, forbid_unknown_fields=True):
    cycle: str = ""


def _cycle(text: str | None) -> str:
    cycle = (text or "").strip() or time.strftime("%Y", time.gmtime(time.time() + CST))
    if not valid_cycle(cycle):
        raise BadInput(f"年度 {cycle[:8]!r} 无效，应为四位年份 (cycle: a year, e.g. 2026)", code="use.cycle")
    return cycle


def view(held: Held, new: bool = False) -> UseListView:
    rec, u = held
    return UseListView(digest=rec.digest, node=u.node, cycle=u.cycle, list_=u.list, title=u.title, body=u.body,
                       body_name=body_name(u.body), version=u.version, issued_at=u.issued_at,
                       created_by=rec.created_by, publications=list(u.publications),
                       entries=[UseEntryView(unit=e.unit, name=e.name, rule=e.rule, because=e.because)
                                for e in u.entries], new=new,
                       xlsx=f"/use/{rec.digest}.xlsx", csv=f"/use/{rec.digest}.csv", dsse=f"/use/{rec.digest}.dsse")


def _when(r: Rule, lang: str) -> str:
    w, en = r.when, lang == "en"
    parts = []
    if w.grades:
        grades = "/".join(sorted(w.grades))
        if w.cycles > 1:
            parts.append(f"grade {grades} {w.cycles} cycles running" if en else f"连续 {w.cycles} 年 {grades}")
        else:
            parts.append(f"grade {grades}" if en else f"等次为 {grades}")
    if w.rank_bottom is not None:
        parts.append(f"among the last {w.rank_bottom}" if en else f"排名后 {w.rank_bottom} 名")
    if w.score_below is not None:
        parts.append(f"score below {to_text(w.score_below)}" if en else f"得分低于 {to_text(w.score_below)}")
    return (" and " if en else "且").join(parts)


def _attachment(data: bytes, media: str, name: str) -> Response[bytes]:
    return Response(data, media_type=media, headers={
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}", "Cache-Control": "private"})


class ResultsUseController(Controller):
    tags = ("results-use",)

    async def _page(self, request: Request[Any, Any, Any], node: NodeContext, use: ResultsUseService, cycle: str, *,
                    status: int = 200, **extra: Any) -> Template:
        lang = language(request)
        finals = await use.finals_now(cycle)
        lists = await use.lists(cycle)
        history = await use.lists(cycle, every_version=True)
        return await page(
            request, "use.html.j2", node, status=status, cycle=cycle, configured=use.configured,
            rules=[{"code": r.code, "list": r.list, "title": r.title, "body": body_name(r.body, lang),
                    "when": _when(r, lang)} for r in use.rules],
            finals=[{"cycle": p.cycle, "class": p.framework.unit_class, "version": p.version, "digest": p.digest,
                     "units": len(p.units)} for p in finals],
            lists=[{**msgspec.to_builtins(view(h)), "body_label": body_name(h[1].body, lang),
                    "signed": use_export.signed_time(h[1].issued_at)} for h in lists],
            history=[{"digest": r.digest, "list": u.list, "title": u.title, "version": u.version,
                      "signed": use_export.signed_time(u.issued_at), "by": r.created_by,
                      "latest": any(r.digest == x[0].digest for x in lists)} for r, u in history],
            can_manage=actor(request).can("use.manage"), **extra)

    @get("/use", guards=[require("use.view")], include_in_schema=False)
    async def use_page(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                       results_use: NamedDependency[ResultsUseService], cycle: OptCycle = None) -> Template:
        return await self._page(request, node_context, results_use, _cycle(cycle))

    @post("/use", guards=[require("use.manage")], include_in_schema=False)
    async def produce_page(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                           results_use: NamedDependency[ResultsUseService]) -> Template:
        data = await form_of(request, UseForm)
        cycle = data.cycle.strip()
        try:
            made = await results_use.produce(actor(request), cycle)
        except AppraisalError as e:
            shown = cycle if valid_cycle(cycle) else _cycle(None)
            return await self._page(request, node_context, results_use, shown, status=STATUS_BY_KIND.get(e.kind, 422),
                                    error=str(e), error_code=e.code)
        return await self._page(request, node_context, results_use, cycle, status=201,
                                produced=sum(1 for _, new in made if new), unchanged=sum(1 for _, new in made if not new))

    @get("/use/{item:str}", guards=[require("use.view")], include_in_schema=False)
    async def download(self, node_context: NamedDependency[NodeContext],
                       results_use: NamedDependency[ResultsUseService], item: UseFile) -> Response[bytes]:
        stem, _, ext = item.partition(".")
        me = node_context.me
        if len(stem) == 4:  # every list of a cycle (latest versions)
            lists = [u for _, u in await results_use.lists(stem)]
            if ext == "xlsx":
                data = await asyncio.to_thread(use_export.xlsx, lists, me.name)
                return _attachment(data, XLSX, f"{me.code}-{stem}-结果运用.xlsx")
            return _attachment(use_export.csv_bytes(lists), "text/csv; charset=utf-8", f"{me.code}-{stem}-结果运用.csv")
        rec, u = await results_use.get(stem)
        name = f"{me.code}-{u.cycle}-{u.list}-v{u.version}"
        if ext == "dsse":
            return _attachment(rec.envelope, DSSE, f"{name}.dsse")
        if ext == "xlsx":
            return _attachment(await asyncio.to_thread(use_export.xlsx, [u], me.name), XLSX, f"{name}.xlsx")
        return _attachment(use_export.csv_bytes([u]), "text/csv; charset=utf-8", f"{name}.csv")

    @route("/api/v1/use-lists", http_method=HttpMethod.OPTIONS, include_in_schema=False)
    async def allowed(self) -> Response[None]:
        """Litestar's own OPTIONS answer lists only the methods of the first handler of a path (GET);
        this path has two."""
        return Response(None, status_code=204, headers={"Allow": "GET, OPTIONS, POST"})

    @get("/api/v1/use-lists", summary="Results-use lists (结果运用): the latest version of each, or every version",
         guards=[require("use.view")], responses=documented(400, 401, 403), security=[{"bearer": []}])
    async def lists(self, results_use: NamedDependency[ResultsUseService], cycle: OptCycle = None,
                    versions: Versions = False) -> list[UseListView]:
        return [view(h) for h in await results_use.lists(cycle, every_version=versions)]

    @post("/api/v1/use-lists", summary="Produce the signed results-use lists of a cycle from its final results",
          guards=[require("use.manage")], status_code=201, responses=documented(400, 401, 403, 409, 422),
          security=[{"bearer": []}])
    async def produce(self, request: Request[Any, Any, Any], results_use: NamedDependency[ResultsUseService],
                      data: JSONBody[ProduceUseLists]) -> list[UseListView]:
        return [view(h, new) for h, new in await results_use.produce(actor(request), data.cycle)]
