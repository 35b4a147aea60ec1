"""/rectification (整改), /comments (公众评议), the public comment form /public/comment/{unit}, and
their JSON API /api/v1/rectifications and /api/v1/comments (nodes/services/rectification.py does the
work).

The office sees every item, creates them from the weak indicators of the cycle's current
publication, from a decided appeal, from a comment or by hand, accepts or returns closures and
carries open items into next year's task book; a unit sees its own, writes its measures, uploads
closure evidence and asks for closure; an auditor reads. Every item or comment a request names is
checked against the person's scope (``check_scope``) before the service is called.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from litestar import Controller, HttpMethod, Request, get, post, route
from litestar.datastructures import UploadFile
from litestar.di import NamedDependency
from litestar.params import JSONBody, PathParameter
from litestar.response import Response, Template

from aggregator.errors import AppraisalError, BadInput, NotFound
from aggregator.framework import valid_cycle
from gateway.guards import actor, check_capability, check_scope, public_form, require
from gateway.i18n import language
from gateway.pages import page
from gateway.params import OptCycle, OptUnit, Sha256Path
from gateway.problems import STATUS_BY_KIND, documented
from gateway.rectification_schemas import (
    AcceptClosure,
    ByHand,
    CarryOver,
    CommentView,
    CreateRectification,
    FromAppeal,
    FromComment,
    FromWeak,
    RectificationView,
    Reopen,
    RequestClosure,
    SetMeasure,
    UpdateRectification,
)
from gateway.rectification_view import cst, item_row, parse_date
from nodes import rectification as rules
from nodes.accounts import Principal
from nodes.repositories.rectification import CommentRecord, RectificationRecord
from nodes.services.context import NodeContext
from nodes.services.rectification import Item, RateLimited, RectificationService, current_cycle

DAY = 86400
ItemPath = Annotated[int, PathParameter(ge=1, le=2**53, description="整改事项编号 rectification item id")]
CommentPath = Annotated[int, PathParameter(ge=1, le=2**53, description="评议意见编号 comment id")]
UnitPath = Annotated[str, PathParameter(max_length=32, description="被考评单位代码 unit code")]
COMMENT_STATUS_ZH = {"new": "待答复", "answered": "已答复", "hidden": "已屏蔽"}
COMMENT_STATUS_EN = {"new": "waiting for an answer", "answered": "answered", "hidden": "hidden"}


def _cycle(text: str | None, node: NodeContext) -> str:
    cycle = (text or "").strip() or current_cycle(node.clock())
    if not valid_cycle(cycle):
        raise BadInput(f"年度 {cycle[:8]!r} 无效 (invalid cycle)", code="input.period")
    return cycle


def _deadline(text: str) -> int:
    """A date typed on a page: the item is due by the end of that day (China time)."""
    return parse_date(text, "整改期限") + DAY - 1


def _status(e: AppraisalError) -> int:
    return 429 if isinstance(e, RateLimited) else STATUS_BY_KIND.get(e.kind, 422)


async def _form(request: Request[Any, Any, Any]) -> dict[str, str]:
    form = await request.form()
    return {k: str(form.get(k)) for k in form if not isinstance(form.get(k), UploadFile)}


def item_view(i: Item) -> RectificationView:
    r = i.record
    return RectificationView(id=r.id, cycle=r.cycle, unit=r.unit, unit_name=i.unit_name, source=r.source, ref=r.ref,
                             title=r.title, measure=r.measure, owner=r.owner, deadline=r.deadline, status=r.status,
                             overdue=i.overdue, evidence=list(r.evidence), closure=r.closure, created_by=r.created_by,
                             created_at=r.created_at, closed_by=r.closed_by, closed_at=r.closed_at,
                             carried_from=r.carried_from)


def comment_view(c: CommentRecord, name: str) -> CommentView:
    return CommentView(id=c.id, cycle=c.cycle, unit=c.unit, unit_name=name, body=c.body, contact=c.contact,
                       created_at=c.created_at, status=c.status, answer=c.answer, answered_by=c.answered_by,
                       answered_at=c.answered_at, rectification=c.rectification)


class RectificationController(Controller):
    include_in_schema = False

    # ------------------------------------------------------------------ /rectification
    @get("/rectification", guards=[require("rectification.view")])
    async def items_page(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                         rectification: NamedDependency[RectificationService], cycle: OptCycle = None,
                         unit: OptUnit = None) -> Template:
        return await self._page(request, node_context, rectification, _cycle(cycle, node_context), unit=unit)

    async def _page(self, request: Request[Any, Any, Any], node: NodeContext, rect: RectificationService, cycle: str,
                    *, status: int = 200, unit: str | None = None, **extra: Any) -> Template:
        who = actor(request)
        lang = language(request)
        rows = [item_row(i, lang) for i in await rect.items(who, cycle=cycle, unit=unit)]
        units = [{"code": c, "name": n} for c, n in rect.units().items() if who.covers_unit(c)]
        return await page(request, "rectification.html.j2", node, status=status, cycle=cycle, items=rows,
                          units=units, next_cycle=rules.next_cycle(cycle), manage=who.can("rectification.manage"),
                          update=who.can("rectification.update"),
                          overdue=sum(1 for r in rows if r["overdue"]), **extra)

    async def _act(self, request: Request[Any, Any, Any], node: NodeContext, rect: RectificationService,
                   cycle: str, action: Any, done: str) -> Template:
        try:
            await action()
        except AppraisalError as e:
            return await self._page(request, node, rect, cycle, status=_status(e), error=str(e), error_code=e.code)
        return await self._page(request, node, rect, cycle, done=done)

    @post("/rectification/weak", guards=[require("rectification.manage")])
    async def weak(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                   rectification: NamedDependency[RectificationService]) -> Template:
        form = await _form(request)
        cycle = _cycle(form.get("cycle"), node_context)
        made: list[RectificationRecord] = []

        async def run() -> None:
            made.extend(await rectification.from_weak(actor(request), cycle=cycle,
                                                      deadline=_deadline(form.get("deadline", ""))))
        page_ = await self._act(request, node_context, rectification, cycle, run, "weak")
        page_.context["made"] = len(made)
        return page_

    @post("/rectification/new", guards=[require("rectification.manage")])
    async def new(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                  rectification: NamedDependency[RectificationService]) -> Template:
        form = await _form(request)
        cycle = _cycle(form.get("cycle"), node_context)
        who = actor(request)

        async def run() -> None:
            check_scope(who, units=[form.get("unit", "")])
            await rectification.create(who, cycle=cycle, unit=form.get("unit", ""), title=form.get("title", ""),
                                       owner=form.get("owner", ""), deadline=_deadline(form.get("deadline", "")))
        return await self._act(request, node_context, rectification, cycle, run, "new")

    @post("/rectification/carry", guards=[require("rectification.manage")])
    async def carry(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                    rectification: NamedDependency[RectificationService]) -> Template:
        form = await _form(request)
        cycle = _cycle(form.get("cycle"), node_context)
        made: list[RectificationRecord] = []

        async def run() -> None:
            made.extend(await rectification.carry(actor(request), cycle=cycle,
                                                  deadline=_deadline(form.get("deadline", ""))))
        page_ = await self._act(request, node_context, rectification, cycle, run, "carry")
        page_.context["made"] = len(made)
        return page_

    async def _on_item(self, request: Request[Any, Any, Any], node: NodeContext, rect: RectificationService,
                       item: int, what: str, do: Any) -> Template:
        """An act on one item: its unit must lie inside the person's scope, then ``do(form)``."""
        who = actor(request)
        found = (await rect.item(item)).record
        check_scope(who, units=[found.unit])
        form = await _form(request)

        async def run() -> None:
            await do(who, form)
        return await self._act(request, node, rect, found.cycle, run, what)

    @post("/rectification/{item:int}/measure", guards=[require("rectification.update")])
    async def measure(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                      rectification: NamedDependency[RectificationService], item: ItemPath) -> Template:
        async def do(who: Principal, form: dict[str, str]) -> None:
            await rectification.set_measure(who, item, form.get("measure", ""))
        return await self._on_item(request, node_context, rectification, item, "measure", do)

    @post("/rectification/{item:int}/evidence", guards=[require("rectification.update")])
    async def evidence(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                       rectification: NamedDependency[RectificationService], item: ItemPath) -> Template:
        upload = (await request.form()).get("file")

        async def do(who: Principal, _form: dict[str, str]) -> None:
            if not isinstance(upload, UploadFile):
                raise BadInput("请选择要上传的文件 (choose a file)", code="intake.attachment_missing")
            await rectification.attach(who, item, upload.filename or "file", await upload.read())
        return await self._on_item(request, node_context, rectification, item, "evidence", do)

    @post("/rectification/{item:int}/request", guards=[require("rectification.update")])
    async def request_closure(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                              rectification: NamedDependency[RectificationService], item: ItemPath) -> Template:
        async def do(who: Principal, form: dict[str, str]) -> None:
            await rectification.request_closure(who, item, form.get("closure", ""))
        return await self._on_item(request, node_context, rectification, item, "request", do)

    @post("/rectification/{item:int}/accept", guards=[require("rectification.manage")])
    async def accept(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                     rectification: NamedDependency[RectificationService], item: ItemPath) -> Template:
        async def do(who: Principal, _form: dict[str, str]) -> None:
            await rectification.accept(who, item)
        return await self._on_item(request, node_context, rectification, item, "accept", do)

    @post("/rectification/{item:int}/reopen", guards=[require("rectification.manage")])
    async def reopen(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                     rectification: NamedDependency[RectificationService], item: ItemPath) -> Template:
        async def do(who: Principal, form: dict[str, str]) -> None:
            await rectification.reopen(who, item, form.get("reason", ""))
        return await self._on_item(request, node_context, rectification, item, "reopen", do)

    @get("/rectification/{item:int}/evidence/{sha256:str}", guards=[require("rectification.view")])
    async def evidence_file(self, request: Request[Any, Any, Any],
                            rectification: NamedDependency[RectificationService], item: ItemPath,
                            sha256: Sha256Path) -> Response[bytes]:
        found = (await rectification.item(item)).record
        check_scope(actor(request), units=[found.unit])
        name, ctype, data = await rectification.evidence_file(item, sha256)
        return Response(data, media_type=ctype, headers={
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}", "Cache-Control": "private"})

    # ------------------------------------------------------------------ /comments
    @get("/comments", guards=[require("comments.answer")])
    async def comments_page(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                            rectification: NamedDependency[RectificationService], cycle: OptCycle = None) -> Template:
        return await self._comments(request, node_context, rectification, _cycle(cycle, node_context))

    async def _comments(self, request: Request[Any, Any, Any], node: NodeContext, rect: RectificationService,
                        cycle: str, *, status: int = 200, **extra: Any) -> Template:
        who = actor(request)
        lang = language(request)
        names = COMMENT_STATUS_EN if lang == "en" else COMMENT_STATUS_ZH
        rows = [{"id": c.id, "unit": c.unit, "unit_name": rect.unit_name(c.unit), "body": c.body, "contact": c.contact,
                 "at": cst(c.created_at), "status": c.status, "status_text": names.get(c.status, c.status),
                 "answer": c.answer, "answered_by": c.answered_by, "answered": cst(c.answered_at),
                 "rectification": c.rectification}
                for c in await rect.comments(who, cycle=cycle)]
        links = [{"unit": code, "name": name, "href": f"/public/comment/{code}"} for code, name in rect.units().items()
                 if who.covers_unit(code)]
        return await page(request, "comments.html.j2", node, status=status, cycle=cycle, comments=rows, links=links,
                          manage=who.can("rectification.manage"),
                          waiting=sum(1 for r in rows if r["status"] == "new"), **extra)

    async def _on_comment(self, request: Request[Any, Any, Any], node: NodeContext, rect: RectificationService,
                          comment: int, what: str, do: Any) -> Template:
        who = actor(request)
        found = await rect.comment(comment)
        check_scope(who, units=[found.unit])
        form = await _form(request)
        try:
            await do(who, form)
        except AppraisalError as e:
            return await self._comments(request, node, rect, found.cycle, status=_status(e), error=str(e),
                                        error_code=e.code)
        return await self._comments(request, node, rect, found.cycle, done=what)

    @post("/comments/{comment:int}/answer", guards=[require("comments.answer")])
    async def answer(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                     rectification: NamedDependency[RectificationService], comment: CommentPath) -> Template:
        async def do(who: Principal, form: dict[str, str]) -> None:
            await rectification.answer(who, comment, form.get("answer", ""))
        return await self._on_comment(request, node_context, rectification, comment, "answer", do)

    @post("/comments/{comment:int}/hide", guards=[require("rectification.manage")])
    async def hide(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                   rectification: NamedDependency[RectificationService], comment: CommentPath) -> Template:
        async def do(who: Principal, form: dict[str, str]) -> None:
            await rectification.hide(who, comment, form.get("reason", ""))
        return await self._on_comment(request, node_context, rectification, comment, "hide", do)

    @post("/comments/{comment:int}/item", guards=[require("rectification.manage")])
    async def make_item(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                        rectification: NamedDependency[RectificationService], comment: CommentPath) -> Template:
        async def do(who: Principal, form: dict[str, str]) -> None:
            await rectification.from_comment(who, comment=comment, deadline=_deadline(form.get("deadline", "")),
                                             title=form.get("title", ""))
        return await self._on_comment(request, node_context, rectification, comment, "item", do)

    # ------------------------------------------------------------------ the public form (no login)
    @get("/public/comment/{unit:str}")
    async def public_comment_form(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                                  rectification: NamedDependency[RectificationService], unit: UnitPath) -> Template:
        return await self._public(request, node_context, rectification, unit[:32])

    async def _public(self, request: Request[Any, Any, Any], node: NodeContext, rect: RectificationService,
                      unit: str, *, status: int = 200, **extra: Any) -> Template:
        if unit not in rect.units():
            raise NotFound(f"单位 {unit[:32]} 不是本节点的被考评单位 (not a unit of this node)",
                           code="rectification.unit")
        return await page(request, "public_comment.html.j2", node, status=status, unit=unit,
                          unit_name=rect.unit_name(unit), token=rect.form_token(unit), limit=rules.MAX_COMMENT, **extra)

    @post("/public/comment/{unit:str}", guards=[public_form])
    async def public_comment(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                             rectification: NamedDependency[RectificationService], unit: UnitPath) -> Template:
        form = await _form(request)
        unit = unit[:32]
        address = request.client.host if request.client else ""
        try:
            await rectification.submit_comment(unit=unit, body=form.get("body", ""), contact=form.get("contact", ""),
                                               address=address, token=form.get("token", ""),
                                               trap=form.get("website", ""))
        except AppraisalError as e:
            headers = {"Retry-After": "3600"} if isinstance(e, RateLimited) else {}
            page_ = await self._public(request, node_context, rectification, unit, status=_status(e), error=str(e),
                                       error_code=e.code, body=form.get("body", "")[:rules.MAX_COMMENT],
                                       contact=form.get("contact", "")[:rules.MAX_CONTACT])
            page_.headers.update(headers)
            return page_
        return await self._public(request, node_context, rectification, unit, sent=True)


class RectificationApiController(Controller):
    tags = ("rectification",)
    security = ({"bearer": []},)

    @route("/api/v1/rectifications", http_method=[HttpMethod.OPTIONS], include_in_schema=False,
           sync_to_thread=False)
    def allow(self) -> Response[None]:
        """Litestar's own OPTIONS handler of a path with GET and POST handlers names only the methods of
        the first one registered (it is made for the first route built and kept when the route is
        rebuilt with the next handler). A controller registers its handlers in name order, so this one,
        named before ``create`` and ``list_items``, comes first and no automatic one is made."""
        return Response(None, status_code=204, headers={"Allow": "GET, OPTIONS, POST"})

    @get("/api/v1/rectifications", summary="Rectification items (整改) the caller may see",
         guards=[require("rectification.view")], responses=documented(400, 401, 403))
    async def list_items(self, request: Request[Any, Any, Any], rectification: NamedDependency[RectificationService],
                         cycle: OptCycle = None, unit: OptUnit = None) -> list[RectificationView]:
        return [item_view(i) for i in await rectification.items(actor(request), cycle=cycle, unit=unit)]

    @post("/api/v1/rectifications", summary="Create items: from weak indicators, an appeal, a comment, by hand, "
                                            "or carry a cycle's open items into the next",
          guards=[require("rectification.manage")], status_code=201, responses=documented(400, 401, 403, 404, 409, 422))
    async def create(self, request: Request[Any, Any, Any], rectification: NamedDependency[RectificationService],
                     data: JSONBody[CreateRectification]) -> list[RectificationView]:
        who = actor(request)
        made: list[RectificationRecord]
        if isinstance(data, FromWeak):
            made = await rectification.from_weak(who, cycle=data.cycle, deadline=data.deadline)
        elif isinstance(data, FromAppeal):
            check_scope(who, units=[await rectification.appeal_unit(data.appeal)])
            made = [await rectification.from_appeal(who, appeal=data.appeal, deadline=data.deadline, title=data.title)]
        elif isinstance(data, FromComment):
            check_scope(who, units=[(await rectification.comment(data.comment)).unit])
            made = [await rectification.from_comment(who, comment=data.comment, deadline=data.deadline,
                                                     title=data.title)]
        elif isinstance(data, ByHand):
            check_scope(who, units=[data.unit])
            made = [await rectification.create(who, cycle=data.cycle, unit=data.unit, title=data.title,
                                               owner=data.owner, deadline=data.deadline)]
        else:
            assert isinstance(data, CarryOver)
            made = await rectification.carry(who, cycle=data.cycle, deadline=data.deadline)
        return [item_view(await rectification.item(r.id)) for r in made if who.covers_unit(r.unit)]

    @post("/api/v1/rectifications/{item:int}", summary="Update an item: the unit's measure or closure request, "
                                                       "the office's acceptance or return",
          guards=[require("rectification.view")], status_code=200, responses=documented(400, 401, 403, 404, 409, 422))
    async def update(self, request: Request[Any, Any, Any], rectification: NamedDependency[RectificationService],
                     item: ItemPath, data: JSONBody[UpdateRectification]) -> RectificationView:
        who = actor(request)
        found = (await rectification.item(item)).record
        if isinstance(data, (SetMeasure, RequestClosure)):
            check_capability(who, "rectification.update")
        else:
            check_capability(who, "rectification.manage")
        check_scope(who, units=[found.unit])
        if isinstance(data, SetMeasure):
            await rectification.set_measure(who, item, data.measure)
        elif isinstance(data, RequestClosure):
            await rectification.request_closure(who, item, data.closure, list(data.evidence))
        elif isinstance(data, AcceptClosure):
            await rectification.accept(who, item)
        else:
            assert isinstance(data, Reopen)
            await rectification.reopen(who, item, data.reason)
        return item_view(await rectification.item(item))

    @get("/api/v1/comments", summary="Public comments (公众评议) about the caller's units, newest first",
         guards=[require("comments.answer")], responses=documented(400, 401, 403))
    async def list_comments(self, request: Request[Any, Any, Any], rectification: NamedDependency[RectificationService],
                            cycle: OptCycle = None) -> list[CommentView]:
        return [comment_view(c, rectification.unit_name(c.unit))
                for c in await rectification.comments(actor(request), cycle=cycle)]
