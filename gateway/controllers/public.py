"""The public results site (结果可查询), no login anywhere: /public and /api/v1/public.

Only what ``PublicationService.visible(tx, None)`` lets the public see is shown (final versions, and
publicity the office made public, marked 公示中 with its window), read from the signed publications
through ``PublicSite`` (nodes/services/public_site.py), every figure as signed. Pages are the same
for everyone (rendered as for a person not signed in), so they are kept in the response cache under
the store's generation. Downloads by digest are immutable: ``ETag`` is the digest, ``If-None-Match``
answers 304, ``Cache-Control: public``. A superseded version's digest answers 404
``public.superseded`` naming the current version's page (the service's rule: earlier versions are
for auditors, signed in, elsewhere).
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

import msgspec
from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency
from litestar.params import PathParameter, QueryParameter
from litestar.response import Template

from aggregator.errors import NotFound
from aggregator.lineage import Story
from aggregator.numbers import to_text
from gateway.controllers.intake import cst_date
from gateway.pages import page_now
from gateway.params import OptPeriod
from gateway.problems import documented
from gateway.schemas import PublicPublication, PublicPublicationSummary
from nodes import public_data
from nodes.services.context import NodeContext
from nodes.services.divisions import DivisionChangeService
from nodes.services.public_site import PublicSite, Shown, Snapshot, current_path
from nodes.services.rectification import RectificationService
from sync.publication import FINAL

DIGEST = r"[0-9a-f]{64}"
DataName = Annotated[str, PathParameter(pattern=rf"^{DIGEST}\.(csv|sdmx\.csv|json)$",
                                        description="<digest>.csv, <digest>.sdmx.csv or <digest>.json")]
ProofName = Annotated[str, PathParameter(pattern=rf"^{DIGEST}\.pb$", description="<digest>.pb")]
DigestPath = Annotated[str, PathParameter(pattern=rf"^{DIGEST}$", description="公布结果摘要 publication digest")]
UnitPath = Annotated[str, PathParameter(pattern=r"^[0-9A-Za-z-]{2,32}$", description="被考评单位代码 unit code")]
ClassPath = Annotated[str, PathParameter(min_length=1, max_length=64, description="被考评单位类别 class of units")]
CyclePath = Annotated[str, PathParameter(pattern=r"^[0-9]{4}$", description="考评年度 appraisal year")]
Query = Annotated[str, QueryParameter(max_length=64, description="单位名称或代码 unit name or code")]

PAGE_SECONDS = 300  # a page is kept under the store's generation: any write makes the next request render it anew
FINAL_MAX_AGE = 3600  # a final version stays the current one unless revised (then its digest answers 404)
PUBLICITY_MAX_AGE = 60  # publicity is followed by the final version within days
KINDS = {"csv": ("csv", "text/csv; charset=utf-8", "csv"), "sdmx.csv": ("sdmx", "text/csv; charset=utf-8", "sdmx.csv"),
         "json": ("json", "application/json", "json")}
TOP = 10  # units per class on the index page


def _pub_view(s: Shown) -> dict[str, Any]:
    d = s.doc
    return {"digest": s.digest, "short": s.digest[:12], "cycle": d.cycle, "period": d.period,
            "class": s.record.unit_class, "version": d.version, "state": d.state, "final": d.state == FINAL,
            "published": cst_date(d.published_at), "opens": cst_date(d.window_opens),
            "closes": cst_date(d.window_closes), "units": len(d.units), "href": current_path(s),
            "framework": {"version": d.framework.version, "short": d.framework.digest[:12], "issuer": d.framework.issuer},
            "proof": f"/public/proofs/{s.digest}.pb", "csv": f"/public/data/{s.digest}.csv",
            "sdmx": f"/public/data/{s.digest}.sdmx.csv", "json": f"/public/data/{s.digest}.json"}


def _rows(s: Shown, limit: int | None = None) -> list[dict[str, Any]]:
    out = []
    for f in public_data.ranked(s.doc)[:limit]:
        out.append({"rank": f.rank, "unit": f.unit, "name": f.name, "score": to_text(f.score), "grade": f.grade,
                    "assessed": public_data.assessed(f), "href": f"/public/units/{quote(f.unit)}"})
    return out


def _story_view(story: Story, snap: Snapshot) -> dict[str, Any]:
    """沿革 for the page: the codes and names the unit had, and the units it came from and became, each
    linked to its own page where this site shows results for it."""
    def unit(code: str, name: str) -> dict[str, str]:
        return {"code": code, "name": name, "href": f"/public/units/{quote(code)}" if snap.unit(code) else ""}

    return {"entries": [{"since": e.since.isoformat(), **unit(e.code, e.name)} for e in story.entries],
            "ended": story.ended.isoformat() if story.ended else "",
            "came_from": [{"on": lk.effective.isoformat(), "kind": lk.kind, "share": to_text(lk.share),
                           **unit(e.code, e.name)} for lk, e in story.came_from],
            "became": [{"on": lk.effective.isoformat(), "kind": lk.kind, "share": to_text(lk.share),
                        **unit(e.code, e.name)} for lk, e in story.became]}


def _page(request: Request[Any, Any, Any], node: NodeContext, template: str, snap: Snapshot, status: int = 200,
          **context: Any) -> Template:
    return page_now(request, template, node, status, verify_key=snap.root_key_hex, **context)


def _download(request: Request[Any, Any, Any], s: Shown, data: bytes, media: str, filename: str) -> Response[bytes]:
    etag = f'"{s.digest}"'
    age = FINAL_MAX_AGE if s.doc.state == FINAL else PUBLICITY_MAX_AGE
    headers = {"ETag": etag, "Cache-Control": f"public, max-age={age}",
               "Content-Disposition": f"attachment; filename=\"{filename}\""}
    wanted = request.headers.get("if-none-match", "")
    if wanted and (wanted.strip() == "*" or etag in [w.strip().removeprefix("W/") for w in wanted.split(",")]):
        return Response(b"", status_code=304, headers=headers)
    return Response(data, media_type=media, headers=headers)


class PublicController(Controller):
    """The pages and downloads (not in the OpenAPI document; the JSON API below is)."""

    include_in_schema = False

    @get("/public", cache=PAGE_SECONDS)
    async def index(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                    public_site: NamedDependency[PublicSite]) -> Template:
        snap = await public_site.snapshot()
        cycles = [{"cycle": c, "pubs": [{**_pub_view(s), "rows": _rows(s, TOP)} for s in snap.shown if s.doc.cycle == c]}
                  for c in snap.cycles()]
        return _page(request, node_context, "public.html.j2", snap, cycles=cycles, top=TOP)

    @get("/public/search", cache=PAGE_SECONDS)
    async def search(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                     public_site: NamedDependency[PublicSite], q: Query = "") -> Template:
        snap = await public_site.snapshot()
        found = [{"code": c, "name": n, "href": f"/public/units/{quote(c)}"} for c, n in snap.search(q)]
        return _page(request, node_context, "public_search.html.j2", snap, q=q.strip(), found=found)

    @get("/public/units/{code:str}", cache=PAGE_SECONDS)
    async def unit(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                   public_site: NamedDependency[PublicSite], rectification: NamedDependency[RectificationService],
                   divisions: NamedDependency[DivisionChangeService], code: UnitPath) -> Template:
        snap = await public_site.snapshot()
        rows = snap.unit(code)
        if not rows:
            raise NotFound(f"没有单位 {code} 的公布结果 (no published result for unit {code})", code="public.no_unit")
        await divisions.load()
        story = divisions.story(code, rows[-1].shown.doc.cycle)
        # 区划调整: the same unit's results under its former codes belong to its history, each shown
        # under the code and name it had then (新津县 510132's 2019 beside 新津区 510118's 2020).
        former = {e.code for e in story.former(code)} if story is not None else set()
        rows = sorted([*rows, *(r for old in sorted(former) for r in snap.unit(old))],
                      key=lambda r: (r.shown.doc.cycle, r.shown.doc.period, r.shown.doc.published_at))
        history = [{**_pub_view(r.shown), "rank": r.figure.rank, "score": to_text(r.figure.score),
                    "grade": r.figure.grade, "assessed": public_data.assessed(r.figure),
                    "of": len(r.shown.doc.units), "as_then": "" if r.figure.unit == code else
                    f"{r.figure.name}（{r.figure.unit}）"} for r in rows]
        latest = next(r for r in reversed(rows) if r.figure.unit == code)
        groups = [g.__dict__ for g in public_data.groups(latest.shown.framework, latest.figure)]
        names = public_data.indicator_names(latest.shown.framework)
        values = [{"indicator": v.indicator, "name": names.get(v.indicator, ""), "value": to_text(v.value),
                   "source": v.source, "bundle": v.bundle_id[:12]} for v in latest.figure.values]
        trend = [h for h in history if h["assessed"]]
        comments = [{"cycle": c.cycle, "body": c.body, "answer": c.answer, "asked": cst_date(c.created_at),
                     "answered": cst_date(c.answered_at)}
                    for cycle in sorted({h["cycle"] for h in history}, reverse=True)
                    for c in await rectification.answered(cycle, code)]
        return _page(request, node_context, "public_unit.html.j2", snap, code=code, name=latest.figure.name,
                     history=history, comments=comments, comment_href=f"/public/comment/{quote(code)}",
                     story=_story_view(story, snap) if story is not None else None,
                     latest={**next(h for h in reversed(history) if not h["as_then"]), "groups": groups,
                             "values": values},
                     trend_chart={"title": "", "labels": [f"{h['cycle']} {h['period']}" for h in trend],
                                  "scores": [h["score"] for h in trend], "ranks": [h["rank"] for h in trend],
                                  "of": max((h["of"] for h in trend), default=1)},
                     group_chart={"labels": [g["name"] for g in groups], "units": [g["code"] for g in groups],
                                  "values": [g["points"] for g in groups], "weights": [g["weight"] for g in groups]})

    @get("/public/proofs/{name:str}")
    async def proof(self, request: Request[Any, Any, Any], public_site: NamedDependency[PublicSite],
                    name: ProofName) -> Response[bytes]:
        s = await public_site.get(name.removesuffix(".pb"))
        snap = await public_site.snapshot()
        return _download(request, s, s.file("pb", snap.node_name), "application/octet-stream",
                         f"{s.doc.node}-{s.doc.cycle}-{s.doc.period}-v{s.doc.version}-{s.digest[:12]}.pb")

    @get("/public/data/{name:str}")
    async def data(self, request: Request[Any, Any, Any], public_site: NamedDependency[PublicSite],
                   name: DataName) -> Response[bytes]:
        digest, _, ext = name.partition(".")
        kind, media, suffix = KINDS[ext]
        s = await public_site.get(digest)
        snap = await public_site.snapshot()
        return _download(request, s, s.file(kind, snap.node_name), media,
                         f"{s.doc.node}-{s.doc.cycle}-{s.doc.period}-v{s.doc.version}-{s.digest[:12]}.{suffix}")

    @get("/public/{cycle:str}/{unit_class:str}", cache=PAGE_SECONDS)
    async def ranking(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                      public_site: NamedDependency[PublicSite], cycle: CyclePath, unit_class: ClassPath,
                      period: OptPeriod = None) -> Template:
        snap = await public_site.snapshot()
        shown = snap.of_class(cycle, unit_class)
        if not shown:
            raise NotFound(f"{cycle} 年度“{unit_class[:40]}”类尚无公布结果 (nothing published for this cycle and class)",
                           code="public.no_class")
        chosen = next((s for s in shown if s.doc.period == period), None) if period else \
            next((s for s in shown if s.doc.period.endswith("-Y")), shown[0])
        if chosen is None:
            raise NotFound(f"{cycle} 年度“{unit_class[:40]}”类没有 {period} 的公布结果 (nothing published for this period)",
                           code="public.no_period")
        return _page(request, node_context, "public_class.html.j2", snap, pub=_pub_view(chosen), rows=_rows(chosen),
                     periods=[_pub_view(s) for s in shown], reason=chosen.doc.reason)


class PublicApiController(Controller):
    tags = ("public",)

    @get("/api/v1/public/publications", cache=PAGE_SECONDS, responses=documented(),
         summary="Published results the public may see: final versions, and publicity made public (公示中)")
    async def publications(self, public_site: NamedDependency[PublicSite]) -> list[PublicPublicationSummary]:
        snap = await public_site.snapshot()
        return [msgspec.convert(public_data.summary(s.doc, snap.node_name), PublicPublicationSummary)
                for s in snap.shown]

    @get("/api/v1/public/publications/{digest:str}", cache=PAGE_SECONDS, responses=documented(400, 404),
         summary="One published result with every figure as signed (its proof: links.proof)")
    async def publication(self, public_site: NamedDependency[PublicSite], digest: DigestPath) -> PublicPublication:
        s = await public_site.get(digest)
        snap = await public_site.snapshot()
        return msgspec.convert(s.document(snap.node_name), PublicPublication)
