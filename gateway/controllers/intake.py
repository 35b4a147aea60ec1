"""/tasks, /entry, /review, /confirm, /attachments: the task book, data entry, the evaluated unit's
confirmation and the reviewer's decisions, as pages (nodes/services/intake.py does the work).

Entry pages post every cell of the grid at once: ``v:<unit>/<key>`` (the value as typed) and
``c:<unit>/<key>`` (a comment), with ``action`` = save or submit. A batch with any problem is shown
again with every problem beside its cell and nothing saved (422). ``POST /entry/check`` answers one
cell's check as a fragment, for validation as the person types (htmx).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from litestar import Controller, Request, get, post
from litestar.datastructures import UploadFile
from litestar.di import NamedDependency
from litestar.response import Redirect, Response, Template

from aggregator.errors import AppraisalError, BadInput
from aggregator.framework import valid_cycle, valid_period
from gateway.guards import CSRF_FIELD, actor, check_scope, require
from gateway.i18n import language
from gateway.pages import page, see_other
from gateway.params import OptCycle, OptKey, OptPage, OptPeriod, OptUnit, Sha256Path
from gateway.problems import STATUS_BY_KIND
from gateway.rectification_view import rectification_tasks
from nodes import intake_excel
from nodes.accounts import Principal
from nodes.intake import STATUS_ZH, CellInput, IntakeRefused, Problem, check, periods_of, safe_name
from nodes.services.context import NodeContext
from nodes.services.intake import IntakeService, cells_of
from nodes.services.read_models import ReadModels
from nodes.services.review import ReviewService

CST = 8 * 3600
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
UPLOAD_BYTES = 20 * 1024 * 1024
UPLOAD_CELLS = 50_000  # a city's townships × indicators is a few thousand; reading 50,000 takes about a second
REVIEW_ROWS = 200  # entries shown on one review page (filter by unit or indicator for the others)
GRID_ROWS = 25  # units shown on one entry page per grid (the Excel template has them all)
STATUS_EN = {"": "not entered", "draft": "draft", "submitted": "submitted", "confirmed": "confirmed by the unit",
             "objected": "objected to by the unit", "approved": "approved", "returned": "returned"}


def cst(ts: int) -> str:
    return datetime.fromtimestamp(ts + CST, UTC).strftime("%Y-%m-%d %H:%M") if ts else ""


def cst_date(ts: int) -> str:
    return datetime.fromtimestamp(ts + CST, UTC).strftime("%Y-%m-%d") if ts else ""


def parse_date(text: str, field: str) -> int:
    try:
        d = datetime.strptime(text.strip(), "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise BadInput(f"{field} 应为日期，如 2027-01-20 (a date, e.g. 2027-01-20)", code="form.date") from None
    return int(d.timestamp()) - CST


def _cycle(text: str | None) -> str:
    cycle = (text or "").strip() or time.strftime("%Y", time.gmtime(time.time() + CST))
    if not valid_cycle(cycle):
        raise BadInput(f"年度 {cycle[:8]!r} 无效 (invalid cycle)", code="input.period")
    return cycle


async def _form(request: Request[Any, Any, Any]) -> dict[str, list[str]]:
    form = await request.form()
    return {k: [str(v) for v in form.getall(k)] for k in form if k != CSRF_FIELD}


def _one(form: dict[str, list[str]], key: str, default: str = "") -> str:
    return (form.get(key) or [default])[0]


def grid_view(grid: Any, problems: dict[str, str] | None = None, typed: dict[str, tuple[str, str]] | None = None,
              lang: str = "zh-CN", page_no: int = 0, per_page: int = 25) -> dict[str, Any]:
    problems = problems or {}
    typed = typed or {}
    rows = []
    # The page of units shown; a unit with a problem is always shown, so that no refusal is hidden.
    flagged = {ref.split("/", 1)[0] for ref in problems}
    shown = [r for i, r in enumerate(grid.rows) if i // per_page == page_no or r.unit in flagged]
    for row in shown:
        cells: list[dict[str, Any] | None] = []
        for col in grid.columns:
            state = grid.cells.get((row.unit, col.key))
            if state is None:
                cells.append(None)
                continue
            ref = f"{row.unit}/{col.key}"
            value, comment = typed.get(ref, (state.value, state.comment))
            cells.append({"ref": ref, "value": value, "comment": comment, "status": state.status,
                          "status_text": (STATUS_EN if lang == "en" else STATUS_ZH).get(state.status, state.status),
                          "previous": state.previous, "last_year": state.last_year, "reason": state.reason,
                          "attachments": state.attachments, "problem": problems.get(ref, ""),
                          "editable": state.status in ("", "draft", "returned", "objected", "approved")})
        rows.append({"unit": row.unit, "name": row.name, "cells": cells})
    pages = max(1, -(-len(grid.rows) // per_page))
    return {"provider": grid.provider, "columns": grid.columns, "rows": rows, "open": grid.open,
            "due": cst(grid.due_at), "opens": cst(grid.opens_at), "pages": pages, "page": page_no,
            "units": len(grid.rows)}


class IntakeController(Controller):
    include_in_schema = False

    # --- the task book
    @get("/tasks", guards=[require("tasks.view")])
    async def tasks(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                    intake: NamedDependency[IntakeService], cycle: OptCycle = None) -> Template:
        return await self._tasks(request, node_context, intake, _cycle(cycle))

    async def _tasks(self, request: Request[Any, Any, Any], node: NodeContext, intake: IntakeService, cycle: str, *,
                     status: int = 200, **extra: Any) -> Template:
        who = actor(request)
        rows = await intake.tasks(cycle, who)
        scope = await intake.scope_of(cycle)
        by_ind: dict[str, dict[str, Any]] = {}
        for t in rows:
            fw = scope.by_unit.get(t.unit, ("", None))[1]
            ind = fw.indicator(t.indicator) if fw is not None else None
            g = by_ind.setdefault(t.indicator, {"code": t.indicator, "name": ind.name if ind else t.indicator,
                                                "measure": ind.measure_unit if ind else "", "rows": []})
            setting = (t.provider, t.frequency, t.confirm, t.minimum, t.maximum)
            same = g.setdefault("settings", {}).setdefault(setting, {
                "provider": t.provider, "frequency": t.frequency, "confirm": t.confirm, "minimum": t.minimum,
                "maximum": t.maximum, "units": []})
            same["units"].append(scope.names.get(t.unit, t.unit))
            g["rows"].append({"unit": t.unit, "name": scope.names.get(t.unit, t.unit), "provider": t.provider,
                              "frequency": t.frequency, "confirm": t.confirm, "minimum": t.minimum,
                              "maximum": t.maximum})
        periods = [{"period": p.period, "opens": cst_date(p.opens_at), "due": cst_date(p.due_at)}
                   for p in await intake.periods(cycle)]
        providers = sorted({t.provider for t in rows if t.provider})
        rectification = await rectification_tasks(request, cycle, who)
        return await page(request, "tasks.html.j2", node, status=status, cycle=cycle, groups=list(by_ind.values()),
                          periods=periods, providers=providers, manage=who.can("tasks.manage"),
                          rectification=rectification, **extra)

    @post("/tasks/generate", guards=[require("tasks.manage")])
    async def generate(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                       intake: NamedDependency[IntakeService]) -> Template | Redirect:
        form = await _form(request)
        cycle = _cycle(_one(form, "cycle"))
        try:
            n = await intake.generate(cycle, actor(request))
        except AppraisalError as e:
            return await self._tasks(request, node_context, intake, cycle, status=STATUS_BY_KIND.get(e.kind, 422),
                                     error=str(e), error_code=e.code)
        return await self._tasks(request, node_context, intake, cycle, done=f"{n}")

    @post("/tasks/edit", guards=[require("tasks.manage")])
    async def edit(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                   intake: NamedDependency[IntakeService]) -> Template | Redirect:
        form = await _form(request)
        cycle = _cycle(_one(form, "cycle"))
        try:
            await intake.edit_tasks(cycle, _one(form, "indicator"), form.get("units", []), actor(request),
                                    provider=_one(form, "provider"), frequency=_one(form, "frequency", "Y"),
                                    confirm=_one(form, "confirm") == "on", minimum=_one(form, "minimum"),
                                    maximum=_one(form, "maximum"))
        except AppraisalError as e:
            return await self._tasks(request, node_context, intake, cycle, status=STATUS_BY_KIND.get(e.kind, 422),
                                     error=str(e), error_code=e.code)
        return see_other(f"/tasks?cycle={cycle}")

    @post("/tasks/window", guards=[require("tasks.manage")])
    async def window(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                     intake: NamedDependency[IntakeService]) -> Template | Redirect:
        form = await _form(request)
        cycle = _cycle(_one(form, "cycle"))
        try:
            await intake.set_window(cycle, _one(form, "period"), parse_date(_one(form, "opens"), "开始日期"),
                                    parse_date(_one(form, "due"), "截止日期"), actor(request))
        except AppraisalError as e:
            return await self._tasks(request, node_context, intake, cycle, status=STATUS_BY_KIND.get(e.kind, 422),
                                     error=str(e), error_code=e.code)
        return see_other(f"/tasks?cycle={cycle}")

    @post("/tasks/unlock", guards=[require("tasks.manage")])
    async def unlock(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                     intake: NamedDependency[IntakeService]) -> Template | Redirect:
        form = await _form(request)
        cycle = _cycle(_one(form, "cycle"))
        try:
            until = parse_date(_one(form, "until"), "解锁至") + 86400  # to the end of that day
            await intake.unlock(cycle, _one(form, "period"), _one(form, "provider"), until, _one(form, "reason"),
                                actor(request))
        except AppraisalError as e:
            return await self._tasks(request, node_context, intake, cycle, status=STATUS_BY_KIND.get(e.kind, 422),
                                     error=str(e), error_code=e.code)
        return await self._tasks(request, node_context, intake, cycle, unlocked=_one(form, "period"))

    # --- data entry
    @get("/entry", guards=[require("values.enter")])
    async def entry(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                    intake: NamedDependency[IntakeService], cycle: OptCycle = None,
                    period: OptPeriod = None, page: OptPage = 0) -> Template:
        return await self._entry(request, node_context, intake, _cycle(cycle), period, page_no=page or 0)

    async def _entry(self, request: Request[Any, Any, Any], node: NodeContext, intake: IntakeService, cycle: str,
                     period: str | None, *, status: int = 200, problems: list[Problem] | None = None,
                     typed: dict[str, tuple[str, str]] | None = None, page_no: int = 0, **extra: Any) -> Template:
        who = actor(request)
        tasks = await intake.tasks(cycle, who)
        periods = sorted({p for t in tasks for p in periods_of(cycle, t.frequency)})
        if period is None or not valid_period(period, cycle):
            todo = await intake.todo(cycle, who)
            open_periods = [str(p["period"]) for p in todo.periods]
            period = open_periods[0] if open_periods else (periods[-1] if periods else f"{cycle}-Y")
        lang = language(request)
        by_ref = {p.where: p.message for p in problems or []}
        grids = [grid_view(g, by_ref, typed, lang, page_no, GRID_ROWS) for g in await intake.grids(cycle, period, who)]
        general = [p for p in problems or [] if p.where not in {c["ref"] for g in grids for r in g["rows"]
                                                              for c in r["cells"] if c}]
        return await page(request, "entry.html.j2", node, status=status, cycle=cycle, period=period, periods=periods,
                          grids=grids, problems=problems or [], general=general, page_no=page_no, **extra)

    @post("/entry", guards=[require("values.enter")])
    async def save(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                   intake: NamedDependency[IntakeService]) -> Template | Redirect:
        form = await _form(request)
        cycle, period = _cycle(_one(form, "cycle")), _one(form, "period")
        submit = _one(form, "action") == "submit"
        inputs, typed = [], {}
        for key, values in form.items():
            if key.startswith("v:"):
                ref = key[2:]
                unit, _, k = ref.partition("/")
                comment = _one(form, f"c:{ref}")
                typed[ref] = (values[0], comment)
                if values[0].strip() or comment.strip() or submit:
                    inputs.append(CellInput(unit, k, values[0], comment, where=ref))
        who = actor(request)
        check_scope(who, units={c.unit for c in inputs}, indicators={c.key for c in inputs})
        try:
            saved = await intake.save(cycle, period, inputs, who, submit=submit)
        except IntakeRefused as e:
            return await self._entry(request, node_context, intake, cycle, period, status=422, problems=e.problems,
                                     typed=typed, error=str(e), error_code=e.code)
        except AppraisalError as e:
            return await self._entry(request, node_context, intake, cycle, period,
                                     status=STATUS_BY_KIND.get(e.kind, 422), typed=typed, error=str(e),
                                     error_code=e.code)
        return await self._entry(request, node_context, intake, cycle, period, saved=saved)

    @get("/entry/template.xlsx", guards=[require("values.enter")])
    async def excel_template(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                             intake: NamedDependency[IntakeService], cycle: OptCycle = None,
                             period: OptPeriod = None) -> Response[bytes]:
        """The person's grids for the period as an Excel value template (nodes/intake_excel.py)."""
        who = actor(request)
        cyc = _cycle(cycle)
        per = period or f"{cyc}-Y"
        grids = await intake.grids(cyc, per, who)
        if not grids:
            raise BadInput(f"{per} 没有您的填报任务，无需模板 (no tasks for this period)", code="intake.no_tasks")
        data = await asyncio.to_thread(intake_excel.template, grids, node_name=node_context.me.name,
                                       provider=who.org or who.label, generated_at=node_context.clock())
        name = f"{node_context.me.code}-{per}-{who.org or who.login}.xlsx"
        return Response(data, media_type=XLSX, headers={
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}", "Cache-Control": "private"})

    @post("/entry/upload", guards=[require("values.enter")])
    async def excel_upload(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                           intake: NamedDependency[IntakeService]) -> Template:
        """A filled template: every problem named by sheet!cell, and nothing taken from a file with any."""
        form = await request.form()
        cycle, period = _cycle(str(form.get("cycle", ""))), str(form.get("period", ""))
        submit = str(form.get("action", "")) == "submit"
        upload = form.get("file")
        who = actor(request)
        try:
            if not isinstance(upload, UploadFile):
                raise BadInput("请选择要上传的 Excel 文件 (choose a file)", code="intake.upload_missing")
            data = await upload.read()
            name = safe_name(upload.filename or "upload.xlsx")
            grids = await intake.grids(cycle, period, who)
            inputs = await asyncio.to_thread(intake_excel.read, data, grids, filename=name,
                                             max_bytes=UPLOAD_BYTES, max_cells=UPLOAD_CELLS)
            check_scope(who, units={c.unit for c in inputs}, indicators={c.key for c in inputs})
            saved = await intake.save(cycle, period, inputs, who, submit=submit, source=f"excel:{name}")
        except IntakeRefused as e:
            return await self._entry(request, node_context, intake, cycle, period, status=422, error=str(e),
                                     error_code=e.code, upload_problems=e.problems)
        except AppraisalError as e:
            return await self._entry(request, node_context, intake, cycle, period,
                                     status=STATUS_BY_KIND.get(e.kind, 422), error=str(e), error_code=e.code)
        return await self._entry(request, node_context, intake, cycle, period, saved=saved, uploaded=name)

    @post("/entry/check", guards=[require("values.enter")])
    async def check_cell(self, request: Request[Any, Any, Any], intake: NamedDependency[IntakeService]) -> Template:
        """One cell, checked as it is typed (htmx): the message for that cell, or nothing."""
        form = await _form(request)
        # the cell is the one value htmx sent (its input's own name, v:<unit>/<key>), or an explicit ref
        ref = _one(form, "ref") or next((k[2:] for k in form if k.startswith("v:")), "")
        cycle, period = _cycle(_one(form, "cycle")), _one(form, "period")
        unit, _, key = ref.partition("/")
        message = ""
        grids = await intake.grids(cycle, period, actor(request))
        grid = next((g for g in grids if (unit, key) in g.cells), None)
        if grid is None:
            message = "不在您的填报任务中 (not one of your tasks)"
        else:
            _, problems = check(grid, [CellInput(unit, key, _one(form, f"v:{ref}"), _one(form, f"c:{ref}"), ref)])
            message = problems[0].message if problems else ""
        return Template(template_name="cell_check.html.j2", context={"message": message, "ref": ref})

    @post("/entry/attach", guards=[require("values.enter")])
    async def attach(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                     intake: NamedDependency[IntakeService]) -> Template:
        form = await request.form()
        cycle, period = _cycle(str(form.get("cycle", ""))), str(form.get("period", ""))
        unit, _, key = str(form.get("cell", "")).partition("/")
        upload = form.get("file")
        try:
            if not isinstance(upload, UploadFile):
                raise BadInput("请选择要上传的文件 (choose a file)", code="intake.attachment_missing")
            check_scope(actor(request), units=[unit], indicators=[key])
            data = await upload.read()
            sha = await intake.attach(cycle, period, unit, key, upload.filename or "file", data, actor(request))
        except AppraisalError as e:
            return await self._entry(request, node_context, intake, cycle, period,
                                     status=STATUS_BY_KIND.get(e.kind, 422), error=str(e), error_code=e.code)
        return await self._entry(request, node_context, intake, cycle, period, attached=sha)

    @get("/attachments/{sha256:str}", guards=[require("values.view")])
    async def download(self, request: Request[Any, Any, Any], intake: NamedDependency[IntakeService],
                       sha256: Sha256Path) -> Response[bytes]:
        name, ctype, data = await intake.attachment(sha256[:64], actor(request))
        return Response(data, media_type=ctype, headers={
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}", "Cache-Control": "private"})

    # --- the evaluated unit confirms
    @get("/confirm", guards=[require("values.confirm")])
    async def confirm_page(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                           intake: NamedDependency[IntakeService], cycle: OptCycle = None) -> Template:
        return await self._confirm(request, node_context, intake, _cycle(cycle))

    async def _confirm(self, request: Request[Any, Any, Any], node: NodeContext, intake: IntakeService, cycle: str,
                       *, status: int = 200, **extra: Any) -> Template:
        who = actor(request)
        async with node.store.read() as r:
            waiting = await r.intake.entries(cycle, units=sorted(who.units) or [node.me.code], statuses=["submitted"])
            tasks = {(t.unit, t.indicator): t for t in await r.intake.tasks(cycle)}
        scope = await intake.scope_of(cycle)
        rows = []
        for e in waiting:
            t = tasks.get((e.unit, e.key.split(".")[0]))
            if t is None or not t.confirm:
                continue
            fw = scope.by_unit.get(e.unit, ("", None))[1]
            ind = fw.indicator(e.key.split(".")[0]) if fw else None
            rows.append({"ref": f"{e.unit}/{e.key}", "period": e.period, "unit": scope.names.get(e.unit, e.unit),
                         "indicator": ind.name if ind else e.key, "value": e.value, "comment": e.comment,
                         "provider": e.provider, "by": e.entered_by})
        return await page(request, "confirm.html.j2", node, status=status, cycle=cycle, rows=rows, **extra)

    @post("/confirm", guards=[require("values.confirm")])
    async def confirm(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                      intake: NamedDependency[IntakeService]) -> Template:
        form = await _form(request)
        cycle = _cycle(_one(form, "cycle"))
        try:
            by_period: dict[str, list[tuple[str, str]]] = {}
            for item in form.get("cell", []):
                period, _, ref = item.partition("|")
                by_period.setdefault(period, []).extend(cells_of([ref]))
            if not by_period:
                raise BadInput("请选择要确认的数据 (choose what to confirm)", code="intake.nothing")
            objection = _one(form, "objection") if _one(form, "action") == "object" else ""
            if _one(form, "action") == "object" and not objection.strip():
                raise BadInput("提出异议须说明理由 (an objection needs a reason)", code="intake.objection_reason")
            check_scope(actor(request), units={u for cs in by_period.values() for u, _ in cs})
            for period, cells in by_period.items():
                await intake.confirm(cycle, period, cells, actor(request), objection=objection)
        except AppraisalError as e:
            return await self._confirm(request, node_context, intake, cycle, status=STATUS_BY_KIND.get(e.kind, 422),
                                       error=str(e), error_code=e.code)
        return await self._confirm(request, node_context, intake, cycle, done=True)

    # --- review
    @get("/review", guards=[require("values.review")])
    async def review_page(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                          intake: NamedDependency[IntakeService], read: NamedDependency[ReadModels],
                          cycle: OptCycle = None, unit: OptUnit = None, key: OptKey = None) -> Template:
        return await self._review(request, node_context, intake, read, _cycle(cycle), unit=unit or "", key=key or "")

    async def _review(self, request: Request[Any, Any, Any], node: NodeContext, intake: IntakeService,
                      read: ReadModels, cycle: str, *, status: int = 200, unit: str = "", key: str = "",
                      **extra: Any) -> Template:
        who = actor(request)
        rows = []
        queue, total = await intake.queue(cycle, who, unit=unit, key=key, limit=REVIEW_ROWS)
        for q in queue:
            e = q.entry
            rows.append({"ref": f"{e.unit}/{e.key}", "period": e.period, "unit": q.unit_name, "unit_code": e.unit,
                         "indicator": q.indicator_name, "key": e.key, "measure": q.measure_unit, "value": e.value,
                         "approved": e.approved_value, "changed": bool(e.approved_value) and e.approved_value != e.value,
                         "comment": e.comment, "by": e.entered_by, "at": cst(e.submitted_at), "late": e.late,
                         "status": STATUS_ZH.get(e.status, e.status),
                         "history": [{"at": cst(h.at), "actor": h.actor, "action": h.action, "before": h.before,
                                      "value": h.value, "note": h.note} for h in q.history],
                         "attachments": q.attachments, "own": e.entered_by == who.actor})
        names = node.child_names
        bundles = [{"node": b.node, "name": names.get(b.node, b.node), "id": b.id, "seq": b.seq, "period": b.period,
                    "received": cst(b.received_at)} for b in await read.reviews("pending", 200)
                   if who.covers_unit(b.node)]
        files = await self._files(node, intake, cycle, rows)
        return await page(request, "review.html.j2", node, status=status, cycle=cycle, rows=rows, bundles=bundles,
                          files=files, total=total, unit=unit, key=key, **extra)

    @staticmethod
    async def _files(node: NodeContext, intake: IntakeService, cycle: str,
                     rows: list[dict[str, Any]]) -> dict[str, list[dict[str, str]]]:
        out: dict[str, list[dict[str, str]]] = {}
        async with node.store.read() as r:
            for period in sorted({row["period"] for row in rows}):
                found = await r.intake.attachments_of(cycle, period, {row["unit_code"] for row in rows})
                for (u, k), files in found.items():
                    out[f"{period}|{u}/{k}"] = [{"sha": f.sha256, "name": f.name} for f in files]
        return out

    @post("/review", guards=[require("values.review")])
    async def decide(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                     intake: NamedDependency[IntakeService], read: NamedDependency[ReadModels]) -> Template:
        form = await _form(request)
        cycle = _cycle(_one(form, "cycle"))
        decision = "return" if _one(form, "action") == "return" else "approve"
        picked = form.get("shown", []) if _one(form, "action") == "approve_page" else form.get("cell", [])
        try:
            by_period: dict[str, list[tuple[str, str]]] = {}
            for item in picked:
                period, _, ref = item.partition("|")
                by_period.setdefault(period, []).extend(cells_of([ref]))
            if not by_period:
                raise BadInput("请选择要审核的数据 (choose what to review)", code="review.nothing")
            check_scope(actor(request), units={u for cs in by_period.values() for u, _ in cs},
                        indicators={k for cs in by_period.values() for _, k in cs})
            total = 0
            for period, cells in sorted(by_period.items()):
                d = await intake.decide(cycle, period, cells, decision, actor(request), _one(form, "reason"))
                total += d.approved + d.returned
        except AppraisalError as e:
            return await self._review(request, node_context, intake, read, cycle,
                                      status=STATUS_BY_KIND.get(e.kind, 422), error=str(e), error_code=e.code)
        return await self._review(request, node_context, intake, read, cycle, done=decision, count=total)

    @post("/review/bundle", guards=[require("values.review")])
    async def decide_bundle(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                            intake: NamedDependency[IntakeService], read: NamedDependency[ReadModels],
                            review_service: NamedDependency[ReviewService]) -> Template:
        """A child government's pending bundle (review: manual), approved or returned in the page."""
        form = await _form(request)
        who: Principal = actor(request)
        cycle = _cycle(_one(form, "cycle"))
        try:
            child = _one(form, "node")
            check_scope(who, units=[child])
            decision = "return" if _one(form, "action") == "return" else "approve"
            await review_service.review(child, _one(form, "bundle_id"), decision, _one(form, "reason"), who.label,
                                        actor=who.actor)
        except AppraisalError as e:
            return await self._review(request, node_context, intake, read, cycle,
                                      status=STATUS_BY_KIND.get(e.kind, 422), error=str(e), error_code=e.code)
        return await self._review(request, node_context, intake, read, cycle, done=decision, count=1)
