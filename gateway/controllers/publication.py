"""/publication and /api/v1/publications: the office opens the publicity window (公示) of a class's
results, finalises them (终审) and revises them; everyone signed in with publication.view sees what is
in publicity (公示中) and its window; auditors see every version. The public reads /public."""

from __future__ import annotations

import time
from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody
from litestar.response import Redirect, Template

from aggregator.errors import AppraisalError
from gateway.controllers.intake import CST, _cycle, _form, _one, cst, cst_date, parse_date
from gateway.guards import actor, require
from gateway.pages import page, see_other
from gateway.params import OptCycle, OptDone, Sha256Path
from gateway.problems import STATUS_BY_KIND, documented
from gateway.publication_schemas import Finalise, PublicationView, Publicise, PublishedFigure
from nodes.accounts import Principal
from nodes.repositories.publications import PublicationRecord
from nodes.services.context import NodeContext
from nodes.services.publication import PublicationService
from nodes.store import Tx
from sync import publication as pubs

STATE_ZH = {"publicity": "公示中", "final": "终审"}
STATE_EN = {"publicity": "in publicity", "final": "final"}


def view_of(p: PublicationRecord) -> PublicationView:
    doc = pubs.read(p.envelope)
    return PublicationView(
        digest=p.digest, node=p.node, cycle=p.cycle, period=p.period, unit_class=p.unit_class,
        framework=p.framework_digest, version=p.version, state=p.state, public=p.public, opens_at=p.opens_at,
        closes_at=p.closes_at, reason=p.reason, previous=doc.previous, published_at=doc.published_at, by=p.created_by,
        units=[PublishedFigure(unit=u.unit, name=u.name, score=str(u.score), rank=u.rank, grade=u.grade)
               for u in sorted(doc.units, key=lambda u: (u.rank == 0, u.rank, u.unit))])


async def shown_to(service: PublicationService, tx: Tx, who: Principal, cycle: str) -> list[PublicationRecord]:
    """Auditors (audit.read) see every version; others the latest visible to them."""
    if who.can("audit.read"):
        return await tx.publications.list(node=service.ctx.me.code, cycle=cycle, role="own")
    return await service.visible(tx, who, cycle=cycle)


class PublicationApiController(Controller):
    tags = ("publication",)
    security = ({"bearer": []},)

    @get("/api/v1/publications", summary="This node's published results (公示 and final) a person may see",
         guards=[require("publication.view")], responses=documented(400, 401, 403))
    async def list_publications(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                                publication: NamedDependency[PublicationService],
                                cycle: OptCycle = None) -> list[PublicationView]:
        async with node_context.store.read() as r:
            return [view_of(p) for p in await shown_to(publication, r, actor(request), _cycle(cycle))]

    @post("/api/v1/publications/publicity", summary="Open the publicity window (公示) of one class's results, signed",
          guards=[require("publication.manage")], status_code=201, responses=documented(400, 401, 403, 404, 409, 422))
    async def publicise(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                        publication: NamedDependency[PublicationService], data: JSONBody[Publicise]) -> PublicationView:
        async with node_context.store.tx() as tx:
            rec = await publication.publicise(tx, actor(request), cycle=data.cycle, period=data.period,
                                              unit_class=data.unit_class, opens_at=data.opens_at,
                                              closes_at=data.closes_at, public=data.public, reason=data.reason)
        return view_of(rec)

    @post("/api/v1/publications/final", summary="Finalise (终审) one class's results after the window",
          guards=[require("publication.manage")], status_code=201, responses=documented(400, 401, 403, 404, 409, 422))
    async def finalise(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                       publication: NamedDependency[PublicationService], data: JSONBody[Finalise]) -> PublicationView:
        async with node_context.store.tx() as tx:
            rec = await publication.finalise(tx, actor(request), cycle=data.cycle, period=data.period,
                                             unit_class=data.unit_class, reason=data.reason)
        return view_of(rec)

    @post("/api/v1/publications/revision", summary="Revise final results: a new signed version with a reason",
          guards=[require("publication.manage")], status_code=201, responses=documented(400, 401, 403, 404, 409, 422))
    async def revise(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                     publication: NamedDependency[PublicationService], data: JSONBody[Finalise]) -> PublicationView:
        async with node_context.store.tx() as tx:
            rec = await publication.revise(tx, actor(request), cycle=data.cycle, period=data.period,
                                           unit_class=data.unit_class, reason=data.reason)
        return view_of(rec)


class PublicationPageController(Controller):
    include_in_schema = False

    @get("/publication", guards=[require("publication.view")])
    async def show(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                   publication: NamedDependency[PublicationService], cycle: OptCycle = None,
                   done: OptDone = None) -> Template:
        return await self._page(request, node_context, publication, _cycle(cycle), done=done or "")

    @post("/publication", guards=[require("publication.manage")])
    async def act(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                  publication: NamedDependency[PublicationService]) -> Template | Redirect:
        form = await _form(request)
        cycle = _cycle(_one(form, "cycle"))
        what = _one(form, "action")
        args = {"cycle": cycle, "period": _one(form, "period", f"{cycle}-Y"), "unit_class": _one(form, "class"),
                "reason": _one(form, "reason").strip()}
        who = actor(request)
        try:
            async with node_context.store.tx() as tx:
                if what == "publicise":
                    opens = parse_date(_one(form, "opens"), "公示开始日期 (opens)")
                    closes = parse_date(_one(form, "closes"), "公示截止日期 (closes)") + 86400 - 1  # through that day
                    rec = await publication.publicise(tx, who, opens_at=opens, closes_at=closes,
                                                      public=_one(form, "public") == "1", **args)
                elif what == "final":
                    rec = await publication.finalise(tx, who, **args)
                else:
                    rec = await publication.revise(tx, who, **args)
        except AppraisalError as exc:
            return await self._page(request, node_context, publication, cycle, error=str(exc), error_code=exc.code,
                                    status=STATUS_BY_KIND.get(exc.kind, 422))
        return see_other(f"/publication?cycle={cycle}&done={rec.digest[:12]}")

    @get("/publication/proof/{digest:str}", guards=[require("publication.view")])
    async def proof(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                    publication: NamedDependency[PublicationService], digest: Sha256Path) -> Response[bytes]:
        """The proof of a version this person may see (``appraise public verify`` checks it offline)."""
        async with node_context.store.read() as r:
            rec = await publication.get_visible(r, actor(request), digest)
        return Response(rec.proof, media_type="application/octet-stream",
                        headers={"Content-Disposition": f'attachment; filename="publication-{digest[:16]}.pb"'})

    async def _page(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                    publication: PublicationService, cycle: str, status: int = 200, **extra: Any) -> Template:
        who = actor(request)
        now = node_context.clock()
        async with node_context.store.read() as r:
            frameworks = await publication.frameworks(r, cycle) if who.can("publication.manage") else []
            rows = await shown_to(publication, r, who, cycle)
        latest: dict[tuple[str, str], PublicationRecord] = {}
        for p in rows:
            latest[(p.period, p.unit_class)] = p
        classes = []
        for f in frameworks:
            current = latest.get((f"{cycle}-Y", f.unit_class))
            classes.append({"class": f.unit_class, "version": f.version, "digest": f.digest[:12],
                            "state": current.state if current else "", "closes": cst(current.closes_at) if current else "",
                            "can_finalise": bool(current and current.state == "publicity" and now >= current.closes_at),
                            "window_open": bool(current and current.open_at(now))})
        today = time.strftime("%Y-%m-%d", time.gmtime(now + CST))
        shown = []
        for p in sorted(latest.values(), key=lambda p: (p.period, p.unit_class)):
            v = view_of(p)
            shown.append({"v": v, "state": STATE_ZH[p.state], "state_en": STATE_EN[p.state], "opens": cst(p.opens_at),
                          "closes": cst(p.closes_at), "published": cst(v.published_at), "open": p.open_at(now),
                          "mine": [u.unit for u in v.units if who.units and u.unit in who.units]})
        versions = [{"digest": p.digest, "short": p.digest[:12], "class": p.unit_class, "period": p.period,
                     "version": p.version, "state": STATE_ZH[p.state], "reason": p.reason, "at": cst(p.created_at),
                     "by": p.created_by} for p in rows] if who.can("audit.read") else []
        return await page(request, "publication.html.j2", node_context, status=status, cycle=cycle, classes=classes,
                          shown=shown, versions=versions, today=today, week=cst_date(now + 7 * 86400),
                          manage=who.can("publication.manage"), **extra)
