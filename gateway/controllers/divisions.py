"""/api/v1/division-changes (read) and /api/v1/admin/division-changes (issue): 区划调整."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody, QueryParameter

from aggregator.errors import BadInput
from aggregator.lineage import DivisionChange, Merge, Move, Recode, Split
from gateway.division_schemas import (
    DivisionChanges,
    DivisionChangeView,
    DivisionListView,
    IssuedDivisionChanges,
    IssueDivisionChanges,
    TreeUnit,
)
from gateway.guards import actor, require
from gateway.problems import documented
from nodes.division_file import events
from nodes.services.divisions import DivisionChangeService

OptDay = Annotated[str | None, QueryParameter(name="date", pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
                                         description="YYYY-MM-DD: also the tree in force that day")]


def _change(c: DivisionChange) -> DivisionChangeView:
    units = list(c.units) if isinstance(c, Merge) else [getattr(c, "unit", "")]
    return DivisionChangeView(kind=c.kind, effective=c.effective.isoformat(), issuer=c.issuer, ref=c.ref, units=units,
                              code=c.code if isinstance(c, Recode | Move | Merge) else "",
                              name=getattr(c, "name", "") if not isinstance(c, Split) else "",
                              parent=c.parent if isinstance(c, Move) else "",
                              survivor=c.survivor if isinstance(c, Merge) else False)


class DivisionController(Controller):
    tags = ("divisions",)

    @get("/api/v1/division-changes", summary="Division change lists held (区划调整), in acceptance order; with ?date= "
         "also the tree in force that day", responses=documented(400, 422))
    async def lists(self, divisions: NamedDependency[DivisionChangeService], day: OptDay = None) -> DivisionChanges:
        await divisions.load()
        lists = [DivisionListView(position=h.position, issuer=h.changes.issuer, seq=h.changes.seq,
                                  digest=h.changes.digest, previous=h.changes.previous, issued_at=h.changes.issued_at,
                                  sender=h.sender, accepted_at=h.accepted_at,
                                  changes=[_change(c) for c in h.changes.changes]) for h in divisions.held()]
        if day is None:
            return DivisionChanges(lists=lists)
        try:
            on = date.fromisoformat(day)
        except ValueError:
            raise BadInput(f"date {day!r} 不是有效日期 (not a valid day; use YYYY-MM-DD)",
                           code="divisions.bad_query_date") from None
        tree = divisions.tree_at(on)
        units = [] if tree is None else [TreeUnit(code=u.code, name=u.name, uid=u.uid, parent=u.parent)
                                         for u in sorted(tree.units.values(), key=lambda u: u.code)]
        return DivisionChanges(lists=lists, date=on.isoformat(), tree=units)

    @post("/api/v1/admin/division-changes", summary="Sign and issue a division change list for units below this node",
          tags=["admin"], status_code=201, guards=[require("divisions.manage")],
          responses=documented(400, 401, 403, 422), security=[{"bearer": []}])
    async def issue(self, request: Request[Any, Any, Any], divisions: NamedDependency[DivisionChangeService],
                    data: JSONBody[IssueDivisionChanges]) -> IssuedDivisionChanges:
        changes = events(msgspec.to_builtins(data.changes))
        cl = await divisions.issue(changes, actor(request).actor)
        return IssuedDivisionChanges(issuer=cl.issuer, seq=cl.seq, digest=cl.digest)
