"""The JSON API of people and intake: /api/v1/users, /api/v1/tasks, /api/v1/entries (grids, batches,
review decisions) and /api/v1/entries/import|export in DHIS2 dataValueSets JSON, ADX XML or SDMX-CSV.

The same service as the pages (nodes/services/intake.py), the same guards and scope checks: a
script with a session (or the node's token) does exactly what a person may do in the browser. A
refused batch is a problem document whose ``errors`` name every cell (``where``, ``message``,
``code``). Exchange documents map codes through ``exchange-map.yaml`` beside node.yaml when it
exists (nodes/exchange/mapping.py), else by identity.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIResponse, OpenAPIType, Operation, RequestBody, Schema
from litestar.params import JSONBody, QueryParameter
from litestar.response import Response

from aggregator.errors import BadInput
from gateway.guards import actor, check_scope, require
from gateway.params import Cycle, Period
from gateway.problems import documented
from gateway.schemas import (
    DecideEntries,
    EntriesDecided,
    EntriesSaved,
    GenerateTasks,
    GridCellView,
    GridColumnView,
    GridView,
    Imported,
    SaveEntries,
    TasksGenerated,
    TaskView,
    UserCreated,
    UserIn,
    UserView,
)
from nodes.exchange import adx, dhis2, sdmx
from nodes.exchange.cells import Cell
from nodes.exchange.mapping import CodeMap, load_map
from nodes.intake import CellInput
from nodes.services.accounts import AccountService
from nodes.services.context import NodeContext
from nodes.services.intake import IntakeService

Format = Annotated[Literal["dhis2", "adx", "sdmx"], QueryParameter(
    description="dhis2 (dataValueSets JSON), adx (IHE ADX XML) or sdmx (SDMX-CSV 2.0)")]
Submit = Annotated[bool, QueryParameter(description="submit for review at once (default: drafts)")]
MEDIA = {"dhis2": "application/json", "adx": "application/adx+xml", "sdmx": "application/vnd.sdmx.data+csv"}
MAX_IMPORT = 20 * 1024 * 1024
MAX_IMPORT_VALUES = 50_000


@dataclass
class ImportOperation(Operation):
    """The import's body is a document in another system's format, read as raw bytes (a JSON body must
    not be decoded by the framework first): its schema is stated here for each media type."""

    def __post_init__(self) -> None:
        doc = "dataValueSets JSON, ADX XML or SDMX-CSV, as the format parameter says"
        self.request_body = RequestBody(required=True, description=doc, content={
            "application/json": OpenAPIMediaType(schema=Schema(type=OpenAPIType.OBJECT, description="DHIS2 dataValueSets")),
            "application/adx+xml": OpenAPIMediaType(schema=Schema(type=OpenAPIType.STRING, description="IHE ADX")),
            "text/csv": OpenAPIMediaType(schema=Schema(type=OpenAPIType.STRING, description="SDMX-CSV 2.0"))})


@dataclass
class ExportOperation(Operation):
    """The export answers a document in the format asked for: its media type and shape stated here."""

    def __post_init__(self) -> None:
        content = {
            MEDIA["dhis2"]: OpenAPIMediaType(schema=Schema(type=OpenAPIType.OBJECT, description="DHIS2 dataValueSets")),
            MEDIA["adx"]: OpenAPIMediaType(schema=Schema(type=OpenAPIType.STRING, description="IHE ADX")),
            MEDIA["sdmx"]: OpenAPIMediaType(schema=Schema(type=OpenAPIType.STRING, description="SDMX-CSV 2.0"))}
        if self.responses is not None:
            self.responses["200"] = OpenAPIResponse(description="the values, as the format parameter says",
                                                    content=content)


def _mapping(node: NodeContext) -> CodeMap:
    path = Path(node.cfg.path).parent / "exchange-map.yaml"
    return load_map(path if path.exists() else None)


def _read(fmt: str, data: bytes, mapping: CodeMap) -> list[Cell]:
    if fmt == "dhis2":
        return dhis2.read_data_value_set(data, mapping, max_values=MAX_IMPORT_VALUES, max_bytes=MAX_IMPORT)
    if fmt == "adx":
        return adx.read_adx(data, mapping, max_values=MAX_IMPORT_VALUES, max_bytes=MAX_IMPORT)
    return sdmx.read_sdmx_csv(data, max_values=MAX_IMPORT_VALUES, max_bytes=MAX_IMPORT)


def _write(fmt: str, cells: list[Cell], mapping: CodeMap, now: int) -> bytes:
    if fmt == "dhis2":
        return dhis2.write_data_value_set(cells, mapping)
    if fmt == "adx":
        return adx.write_adx(cells, mapping, exported=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)))
    return sdmx.write_sdmx_csv(cells)


class EntriesApiController(Controller):
    tags = ("intake",)
    security = ({"bearer": []},)

    @get("/api/v1/users", summary="This node's accounts", guards=[require("users.manage")],
         responses=documented(401, 403))
    async def users(self, accounts: NamedDependency[AccountService]) -> list[UserView]:
        return [UserView(login=u.login, name=u.name, org=u.org, roles=list(u.roles), units=list(u.units),
                         indicators=list(u.indicators), disabled=u.disabled, must_change=u.must_change,
                         locked_until=u.locked_until, oidc=bool(u.oidc_subject)) for u in await accounts.list()]

    @post("/api/v1/admin/users", summary="Add an account (a one-time password is returned once unless one is given)",
          guards=[require("users.manage")], status_code=201, responses=documented(400, 401, 403, 409, 422))
    async def add_user(self, request: Request[Any, Any, Any], accounts: NamedDependency[AccountService],
                       data: JSONBody[UserIn]) -> UserCreated:
        password = data.password if isinstance(data.password, str) else None
        secret = await accounts.add(data.login, data.name, data.roles, actor(request), org=data.org, units=data.units,
                                    indicators=data.indicators, password=password, oidc_subject=data.oidc_subject)
        return UserCreated(login=data.login, one_time_password=secret)

    @get("/api/v1/tasks", summary="The task book (任务书): the tasks the caller may see", guards=[require("tasks.view")],
         responses=documented(400, 401, 403))
    async def tasks(self, request: Request[Any, Any, Any], intake: NamedDependency[IntakeService],
                    cycle: Cycle) -> list[TaskView]:
        return [TaskView(unit=t.unit, indicator=t.indicator, provider=t.provider, frequency=t.frequency,
                         confirm=t.confirm, minimum=t.minimum, maximum=t.maximum)
                for t in await intake.tasks(cycle, actor(request))]

    @post("/api/v1/tasks/generate", summary="Fill the task book from the frameworks in force (edited tasks stay)",
          guards=[require("tasks.manage")], status_code=201, responses=documented(400, 401, 403, 409))
    async def generate(self, request: Request[Any, Any, Any], intake: NamedDependency[IntakeService],
                       data: JSONBody[GenerateTasks]) -> TasksGenerated:
        return TasksGenerated(cycle=data.cycle, tasks=await intake.generate(data.cycle, actor(request)))

    @get("/api/v1/entries", summary="The caller's grids for a period: units × keys, values, statuses, history",
         guards=[require("values.enter")], responses=documented(400, 401, 403, 422))
    async def grids(self, request: Request[Any, Any, Any], intake: NamedDependency[IntakeService], cycle: Cycle,
                    period: Period) -> list[GridView]:
        out = []
        for g in await intake.grids(cycle, period, actor(request)):
            out.append(GridView(
                cycle=g.cycle, period=g.period, provider=g.provider, opens_at=g.opens_at, due_at=g.due_at, open=g.open,
                units=[{"unit": r.unit, "name": r.name} for r in g.rows],
                columns=[GridColumnView(key=c.key, indicator=c.indicator, name=c.name, measure_unit=c.measure_unit,
                                        minimum="" if c.minimum is None else str(c.minimum),
                                        maximum="" if c.maximum is None else str(c.maximum)) for c in g.columns],
                cells=[GridCellView(unit=u, key=k, value=s.value, comment=s.comment, status=s.status,
                                    previous=s.previous, last_year=s.last_year, reason=s.reason,
                                    attachments=list(s.attachments)) for (u, k), s in sorted(g.cells.items())]))
        return out

    @post("/api/v1/entries/batch", summary="Save cells as drafts or submit them for review (all or none)",
          guards=[require("values.enter")], status_code=201, responses=documented(400, 401, 403, 409, 422))
    async def save(self, request: Request[Any, Any, Any], intake: NamedDependency[IntakeService],
                   data: JSONBody[SaveEntries]) -> EntriesSaved:
        who = actor(request)
        check_scope(who, units={c.unit for c in data.cells}, indicators={c.key for c in data.cells})
        inputs = [CellInput(c.unit, c.key, c.value, c.comment, where=f"cells[{i}]") for i, c in enumerate(data.cells)]
        saved = await intake.save(data.cycle, data.period, inputs, who, submit=data.submit, source="api")
        return EntriesSaved(saved=saved.saved, submitted=saved.submitted, late=saved.late, warnings=list(saved.warnings))

    @post("/api/v1/entries/review", summary="Approve or return submitted cells (审核)",
          guards=[require("values.review")], status_code=201, responses=documented(400, 401, 403, 404, 409, 422))
    async def review(self, request: Request[Any, Any, Any], intake: NamedDependency[IntakeService],
                     data: JSONBody[DecideEntries]) -> EntriesDecided:
        who = actor(request)
        check_scope(who, units={c.unit for c in data.cells}, indicators={c.key for c in data.cells})
        d = await intake.decide(data.cycle, data.period, [(c.unit, c.key) for c in data.cells], data.decision, who,
                                data.reason)
        return EntriesDecided(approved=d.approved, returned=d.returned, bundles=list(d.bundles))

    @post("/api/v1/entries/import", summary="Import a DHIS2 dataValueSets, ADX or SDMX-CSV document as entries",
          guards=[require("values.enter")], status_code=201, responses=documented(400, 401, 403, 409, 422),
          operation_class=ImportOperation)
    async def import_document(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                              intake: NamedDependency[IntakeService], format: Format, cycle: Cycle,
                              submit: Submit = False) -> Imported:
        who = actor(request)
        data = await request.body()  # raw: a DHIS2 client sends JSON, which must not be decoded here
        if len(data) > MAX_IMPORT:
            raise BadInput(f"文档 {len(data)} 字节，超过上限 {MAX_IMPORT} (document too large)", code="exchange.too_large")
        cells = await asyncio.to_thread(_read, format, data, _mapping(node_context))
        if not cells:
            raise BadInput("文档中没有数值 (no values in the document)", code="exchange.empty")
        check_scope(who, units={c.unit for c in cells}, indicators={c.indicator for c in cells})
        by_period: dict[str, list[CellInput]] = {}
        for i, c in enumerate(cells):
            if not c.period.startswith(cycle + "-"):
                raise BadInput(f"第 {i + 1} 个数值的报告期 {c.period} 不属于 {cycle} 年度 (period outside the cycle)",
                               code="exchange.period")
            by_period.setdefault(c.period, []).append(CellInput(c.unit, c.indicator, c.value, c.comment,
                                                                where=f"{format}:{c.unit}/{c.indicator}/{c.period}"))
        for period, inputs in sorted(by_period.items()):  # every period checked before any is taken
            await intake.save(cycle, period, inputs, who, submit=submit, source=f"import:{format}", dry_run=True)
        saved = submitted = 0
        for period, inputs in sorted(by_period.items()):
            s = await intake.save(cycle, period, inputs, who, submit=submit, source=f"import:{format}")
            saved, submitted = saved + s.saved, submitted + s.submitted
        return Imported(format=format, periods=sorted(by_period), saved=saved, submitted=submitted)

    @get("/api/v1/entries/export", summary="The values that count at this node for a period, as DHIS2, ADX or SDMX-CSV",
         guards=[require("values.view")], responses=documented(400, 401, 403, 422), operation_class=ExportOperation)
    async def export_document(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                              intake: NamedDependency[IntakeService], format: Format, cycle: Cycle,
                              period: Period) -> Response[bytes]:
        who = actor(request)
        cells: list[Cell] = []
        async with node_context.store.read() as r:
            scope = await intake.scope(r, cycle)
            by_digest: dict[str, list[str]] = {}
            for unit, (digest, _) in scope.by_unit.items():
                if who.covers_unit(unit):
                    by_digest.setdefault(digest, []).append(unit)
            for digest, units in sorted(by_digest.items()):
                for unit, vals in sorted((await r.results.values(cycle, period, digest, nodes=units)).items()):
                    cells += [Cell(unit, k, period, v) for k, v in sorted(vals.items()) if who.covers_indicator(k)]
        body = await asyncio.to_thread(_write, format, cells, _mapping(node_context), node_context.clock())
        name = f"{node_context.me.code}-{period}.{ {'dhis2': 'json', 'adx': 'xml', 'sdmx': 'csv'}[format] }"
        return Response(body, media_type=MEDIA[format], headers={"Content-Disposition": f'attachment; filename="{name}"'})
