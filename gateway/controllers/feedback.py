"""/feedback (绩效报告): the list (the office sees every unit of the current publications and can
generate all PDFs; a unit's account sees its own), one unit's report as a page inside the layout or
standalone and printable (``?print=1``), its PDF (``…/{unit}.pdf``: the stored one while it matches
the current publication, else rendered on demand), and ``GET /api/v1/feedback/{cycle}/{unit}``.

Access: ``feedback.view`` to read, ``feedback.generate`` to generate; the unit a URL names is checked
against the person's scope (``check_scope``: 403 ``auth.scope``)."""

from __future__ import annotations

import re
from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import PathParameter, QueryParameter
from litestar.response import Response, Template

from aggregator.errors import AppraisalError, BadInput
from gateway.controllers.intake import _cycle, _form, _one, cst
from gateway.feedback_schemas import FeedbackReport, report_out
from gateway.guards import actor, check_scope, require
from gateway.i18n import language
from gateway.pages import page
from gateway.params import CYCLE, OptCycle, OptPeriod
from gateway.problems import STATUS_BY_KIND, documented
from nodes import feedback_render
from nodes.services.context import NodeContext
from nodes.services.feedback import FeedbackService, default_period

CyclePath = Annotated[str, PathParameter(pattern=CYCLE, description="考评年度 appraisal year, e.g. 2026")]
UNIT = r"^[0-9A-Za-z-]{2,32}$"
UnitPath = Annotated[str, PathParameter(pattern=UNIT, description="被考评单位代码 unit code")]
UnitOrPdf = Annotated[str, PathParameter(pattern=r"^[0-9A-Za-z-]{2,32}(\.pdf)?$",
                                         description="被考评单位代码，加 .pdf 取 PDF (unit code; .pdf for the PDF)")]
Print = Annotated[bool, QueryParameter(description="standalone printable page")]
STYLESHEETS = ("/static/vendor/noto-sans-sc/400.css", "/static/vendor/noto-sans-sc/700.css", "/feedback/report.css")
_UNIT = re.compile(UNIT)


class FeedbackController(Controller):
    include_in_schema = False

    @get("/feedback/report.css", cache=3600)
    async def css(self) -> Response[str]:
        return Response(feedback_render.CSS, media_type="text/css; charset=utf-8")

    @get("/feedback", guards=[require("feedback.view")])
    async def index(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                    feedback_service: NamedDependency[FeedbackService], cycle: OptCycle = None,
                    period: OptPeriod = None) -> Template:
        return await self._index(request, node_context, feedback_service, _cycle(cycle), period)

    async def _index(self, request: Request[Any, Any, Any], node: NodeContext, service: FeedbackService, cycle: str,
                     period: str | None, *, status: int = 200, **extra: Any) -> Template:
        who = actor(request)
        per = default_period(cycle, period)
        async with node.store.read() as r:
            units = await service.units(r, cycle, per)
            stored = {s.unit: s for s in await service.stored(r, cycle, per)}
        rows = []
        for rec, code, name in units:
            if not who.covers_unit(code):
                continue
            s = stored.get(code)
            rows.append({"code": code, "name": name, "class": rec.unit_class, "state": rec.state,
                         "version": rec.version, "stored": bool(s), "current": bool(s and s.publication == rec.digest),
                         "generated_at": cst(s.generated_at) if s else "", "sha256": s.sha256[:12] if s else ""})
        return await page(request, "feedback_list.html.j2", node, status=status, cycle=cycle, period=per, rows=rows,
                          may_generate=who.can("feedback.generate"), **extra)

    @post("/feedback/generate", guards=[require("feedback.generate")])
    async def generate(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                       feedback_service: NamedDependency[FeedbackService]) -> Template:
        form = await _form(request)
        cycle = _cycle(_one(form, "cycle"))
        period = _one(form, "period") or None
        try:
            made = await feedback_service.generate(actor(request), cycle, period)
        except AppraisalError as e:
            return await self._index(request, node_context, feedback_service, cycle, period,
                                     status=STATUS_BY_KIND.get(e.kind, 422), error=str(e), error_code=e.code)
        return await self._index(request, node_context, feedback_service, cycle, period, generated=len(made))

    @get("/feedback/{cycle:str}/{unit:str}", guards=[require("feedback.view")])
    async def report(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                     feedback_service: NamedDependency[FeedbackService], cycle: CyclePath, unit: UnitOrPdf,
                     period: OptPeriod = None, print: Print = False) -> Response[Any]:
        code, want_pdf = (unit[:-4], True) if unit.endswith(".pdf") else (unit, False)
        if not _UNIT.match(code):
            raise BadInput("单位代码无效 (invalid unit code)", code="feedback.unit")
        check_scope(actor(request), units=[code])
        if want_pdf:
            data, how = await feedback_service.pdf(cycle, period, code)
            return Response(data, media_type="application/pdf", headers={
                "Content-Disposition": f'inline; filename="feedback-{cycle}-{code}.pdf"', "X-Report-Source": how})
        async with node_context.store.read() as r:
            rep = await feedback_service.report(r, cycle, period, code)
        lang = language(request)
        if print:
            return Response(str(feedback_render.html(rep, lang=lang, standalone=True, stylesheets=STYLESHEETS)),
                            media_type="text/html; charset=utf-8")
        return await page(request, "feedback_report.html.j2", node_context, report=rep,
                          report_html=feedback_render.html(rep, lang=lang))


class FeedbackApiController(Controller):
    @get("/api/v1/feedback/{cycle:str}/{unit:str}", summary="One unit's feedback report (绩效报告) as JSON",
         guards=[require("feedback.view")], responses=documented(400, 401, 403, 404, 422))
    async def report_json(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                          feedback_service: NamedDependency[FeedbackService], cycle: CyclePath, unit: UnitPath,
                          period: OptPeriod = None) -> FeedbackReport:
        check_scope(actor(request), units=[unit])
        async with node_context.store.read() as r:
            return report_out(await feedback_service.report(r, cycle, period, unit))
