"""/appeals (申诉/复核) as pages and /api/v1/appeals as JSON: the evaluated unit files an appeal
against a figure of its current publicity publication and follows it; the office assigns an eligible
reviewer and may extend a deadline; the assigned reviewer decides (nodes/services/appeals.py).

Pages post forms back to /appeals… and answer 303 to /appeals; a refusal is shown on the page with
the status the API would answer. The filing form is multipart: evidence files may be sent with it.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from litestar import Controller, HttpMethod, Request, get, post, route
from litestar.datastructures import UploadFile
from litestar.di import NamedDependency
from litestar.params import JSONBody, PathParameter
from litestar.response import Redirect, Response, Template

from aggregator.errors import AppraisalError, BadInput
from gateway.appeal_schemas import AppealIn, AppealView, AssignIn, DecideIn, ExtendIn, WithdrawIn
from gateway.controllers.intake import cst, parse_date
from gateway.guards import actor, check_assigned, check_scope, require
from gateway.i18n import language
from gateway.pages import page, see_other
from gateway.params import OptCycle, Sha256Path
from gateway.problems import STATUS_BY_KIND, documented
from nodes.appeals import OPEN, STATUS_EN, STATUS_ZH, TARGET_ZH
from nodes.repositories.appeals import AppealRecord
from nodes.services.appeals import AppealService, Upload
from nodes.services.context import NodeContext

AppealId = Annotated[int, PathParameter(ge=1, le=2**31 - 1, description="申诉编号 appeal id")]
TARGET_EN = {"value": "value", "score": "score", "grade": "grade"}
MAX_UPLOADS = 5


def view(a: AppealRecord, now: int) -> AppealView:
    return AppealView(id=a.id, cycle=a.cycle, period=a.period, unit=a.unit, unit_name=str(a.before.get("name", "")),
                      publication=a.publication, target=a.target, indicator=a.indicator,  # type: ignore[arg-type]
                      reason=a.reason, evidence=list(a.evidence), status=a.status,  # type: ignore[arg-type]
                      filed_by=a.filed_by, filed_at=a.filed_at, decide_by=a.decide_by,
                      overdue=a.status in OPEN and now >= a.decide_by, reviewer=a.reviewer, decision=a.decision,
                      decided_by=a.decided_by, decided_at=a.decided_at, before=a.before, after=a.after)


class AppealsApiController(Controller):
    tags = ("appeals",)
    security = ({"bearer": []},)

    @get("/api/v1/appeals", summary="Appeals the caller may see (申诉): a unit its own, a reviewer those assigned to it",
         guards=[require("appeals.view")], responses=documented(400, 401, 403))
    async def list_appeals(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                           appeals: NamedDependency[AppealService], cycle: OptCycle = None) -> list[AppealView]:
        now = node_context.clock()
        return [view(a, now) for a in await appeals.visible(actor(request), cycle=cycle)]

    @route("/api/v1/appeals", http_method=[HttpMethod.OPTIONS], include_in_schema=False, status_code=204)
    async def allowed_methods(self) -> Response[None]:
        """Litestar's automatic OPTIONS answer names only the methods of the first handler registered on a
        path; this path has two."""
        return Response(None, status_code=204, headers={"Allow": "GET, OPTIONS, POST"})

    @post("/api/v1/appeals", summary="File an appeal against a value, score or grade during the publicity window",
          guards=[require("appeals.file")], status_code=201, responses=documented(400, 401, 403, 404, 409, 422))
    async def file(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                   appeals: NamedDependency[AppealService], data: JSONBody[AppealIn]) -> AppealView:
        who = actor(request)
        check_scope(who, units=[data.unit])
        a = await appeals.file(who, cycle=data.cycle, period=data.period, unit=data.unit, target=data.target,
                               indicator=data.indicator, reason=data.reason, evidence=data.evidence)
        return view(a, node_context.clock())

    @post("/api/v1/appeals/{appeal_id:int}/assign", summary="Assign a reviewer (not of the unit, not the provider)",
          guards=[require("appeals.assign")], status_code=200, responses=documented(400, 401, 403, 404, 409, 422))
    async def assign(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                     appeals: NamedDependency[AppealService], appeal_id: AppealId, data: JSONBody[AssignIn]) -> AppealView:
        return view(await appeals.assign(actor(request), appeal_id, data.reviewer), node_context.clock())

    @post("/api/v1/appeals/{appeal_id:int}/decide", summary="The assigned reviewer decides: upheld, partly or rejected",
          guards=[require("appeals.decide")], status_code=200, responses=documented(400, 401, 403, 404, 409, 422))
    async def decide(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                     appeals: NamedDependency[AppealService], appeal_id: AppealId, data: JSONBody[DecideIn]) -> AppealView:
        who = actor(request)
        check_assigned(who, (await appeals.get(who, appeal_id)).reviewer)
        return view(await appeals.decide(who, appeal_id, data.decision, data.reason), node_context.clock())

    @post("/api/v1/appeals/{appeal_id:int}/extend", summary="Extend the deadline for a decision (office)",
          guards=[require("appeals.assign")], status_code=200, responses=documented(400, 401, 403, 404, 409, 422))
    async def extend(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                     appeals: NamedDependency[AppealService], appeal_id: AppealId, data: JSONBody[ExtendIn]) -> AppealView:
        return view(await appeals.extend(actor(request), appeal_id, data.until, data.reason), node_context.clock())

    @post("/api/v1/appeals/{appeal_id:int}/withdraw", summary="The appealing unit withdraws an open appeal",
          guards=[require("appeals.file")], status_code=200, responses=documented(400, 401, 403, 404, 409, 422))
    async def withdraw(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                       appeals: NamedDependency[AppealService], appeal_id: AppealId,
                       data: JSONBody[WithdrawIn]) -> AppealView:
        who = actor(request)
        check_scope(who, units=[(await appeals.get(who, appeal_id)).unit])
        return view(await appeals.withdraw(who, appeal_id, data.note), node_context.clock())


class AppealsPageController(Controller):
    include_in_schema = False

    @get("/appeals", guards=[require("appeals.view")])
    async def appeals_page(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                           appeals: NamedDependency[AppealService]) -> Template:
        return await self._page(request, node_context, appeals)

    async def _page(self, request: Request[Any, Any, Any], node: NodeContext, appeals: AppealService, *,
                    status: int = 200, **extra: Any) -> Template:
        who = actor(request)
        en = language(request) == "en"
        now = node.clock()
        rows = []
        for a in reversed(await appeals.visible(who)):
            open_ = a.status in OPEN
            async with node.store.read() as r:
                files = await r.appeals.files(a.evidence)
            rows.append({
                "id": a.id, "unit": a.unit, "unit_name": a.before.get("name", ""), "period": a.period,
                "target": (TARGET_EN if en else TARGET_ZH)[a.target], "indicator": a.indicator, "reason": a.reason,
                "files": [{"sha": s, "name": files.get(s, (s[:12], ""))[0]} for s in a.evidence],
                "status": a.status, "status_text": (STATUS_EN if en else STATUS_ZH).get(a.status, a.status),
                "filed_by": a.filed_by, "filed_at": cst(a.filed_at), "decide_by": cst(a.decide_by),
                "overdue": open_ and now >= a.decide_by, "reviewer": a.reviewer, "decision": a.decision,
                "decided_by": a.decided_by, "decided_at": cst(a.decided_at), "before": a.before, "after": a.after,
                "can_assign": open_ and who.can("appeals.assign"),
                "eligible": await appeals.eligible(a.id) if open_ and who.can("appeals.assign") else [],
                "can_decide": a.status == "assigned" and a.reviewer == who.login and who.can("appeals.decide"),
                "can_withdraw": open_ and who.can("appeals.file") and a.unit in who.units})
        forms = []
        if who.can("appeals.file"):
            for o in await appeals.open_for(who):
                p, f = o.publication, o.figure
                forms.append({"cycle": p.cycle, "period": p.period, "unit": f.unit, "name": f.name,
                              "closes": cst(p.closes_at), "score": str(f.score), "rank": f.rank, "grade": f.grade,
                              "values": [{"key": v.indicator, "value": str(v.value)} for v in f.values],
                              "version": p.version})
        return await page(request, "appeals.html.j2", node, status=status, rows=rows, forms=forms,
                          decide_days=appeals.decide_days, **extra)

    async def _refused(self, request: Request[Any, Any, Any], node: NodeContext, appeals: AppealService,
                       e: AppraisalError) -> Template:
        return await self._page(request, node, appeals, status=STATUS_BY_KIND.get(e.kind, 422), error=str(e),
                                error_code=e.code)

    @post("/appeals", guards=[require("appeals.file")])
    async def file_form(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                        appeals: NamedDependency[AppealService]) -> Template | Redirect:
        form = await request.form()
        who = actor(request)
        try:
            unit = str(form.get("unit", ""))
            check_scope(who, units=[unit])
            uploads = []
            for f in form.getall("files") if "files" in form else []:
                if isinstance(f, UploadFile) and f.filename:
                    uploads.append(Upload(f.filename, await f.read()))
            if len(uploads) > MAX_UPLOADS:
                raise BadInput(f"一次至多上传 {MAX_UPLOADS} 个附件 (at most {MAX_UPLOADS} files at once)",
                               code="appeals.too_many_files")
            await appeals.file(who, cycle=str(form.get("cycle", "")), period=str(form.get("period", "")), unit=unit,
                               target=str(form.get("target", "")), indicator=str(form.get("indicator", "")),
                               reason=str(form.get("reason", "")), uploads=uploads)
        except AppraisalError as e:
            return await self._refused(request, node_context, appeals, e)
        return see_other("/appeals")

    @post("/appeals/{appeal_id:int}/assign", guards=[require("appeals.assign")])
    async def assign_form(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                          appeals: NamedDependency[AppealService], appeal_id: AppealId) -> Template | Redirect:
        form = await request.form()
        try:
            await appeals.assign(actor(request), appeal_id, str(form.get("reviewer", "")))
        except AppraisalError as e:
            return await self._refused(request, node_context, appeals, e)
        return see_other("/appeals")

    @post("/appeals/{appeal_id:int}/extend", guards=[require("appeals.assign")])
    async def extend_form(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                          appeals: NamedDependency[AppealService], appeal_id: AppealId) -> Template | Redirect:
        form = await request.form()
        try:
            until = parse_date(str(form.get("until", "")), tr_field(request, "新的期限", "new deadline")) + 86400 - 1
            await appeals.extend(actor(request), appeal_id, until, str(form.get("reason", "")))
        except AppraisalError as e:
            return await self._refused(request, node_context, appeals, e)
        return see_other("/appeals")

    @post("/appeals/{appeal_id:int}/decide", guards=[require("appeals.decide")])
    async def decide_form(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                          appeals: NamedDependency[AppealService], appeal_id: AppealId) -> Template | Redirect:
        form = await request.form()
        who = actor(request)
        try:
            check_assigned(who, (await appeals.get(who, appeal_id)).reviewer)
            await appeals.decide(who, appeal_id, str(form.get("decision", "")), str(form.get("reason", "")))
        except AppraisalError as e:
            return await self._refused(request, node_context, appeals, e)
        return see_other("/appeals")

    @post("/appeals/{appeal_id:int}/withdraw", guards=[require("appeals.file")])
    async def withdraw_form(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                            appeals: NamedDependency[AppealService], appeal_id: AppealId) -> Template | Redirect:
        who = actor(request)
        try:
            check_scope(who, units=[(await appeals.get(who, appeal_id)).unit])
            await appeals.withdraw(who, appeal_id)
        except AppraisalError as e:
            return await self._refused(request, node_context, appeals, e)
        return see_other("/appeals")

    @get("/appeals/{appeal_id:int}/evidence/{sha256:str}", guards=[require("appeals.view")])
    async def evidence(self, request: Request[Any, Any, Any], appeals: NamedDependency[AppealService], appeal_id: AppealId,
                       sha256: Sha256Path) -> Response[bytes]:
        name, ctype, data = await appeals.evidence(actor(request), appeal_id, sha256[:64])
        return Response(data, media_type=ctype, headers={
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}", "Cache-Control": "private"})


def tr_field(request: Request[Any, Any, Any], zh: str, en: str) -> str:
    return en if language(request) == "en" else zh
