"""/home: each person's work page — what their roles let them do at this node, and what waits for them."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.response import Template

from gateway.guards import actor, signed_in
from gateway.pages import page
from nodes.services.context import NodeContext
from nodes.services.read_models import ReadModels


class HomeController(Controller):
    include_in_schema = False

    @get("/home", guards=[signed_in])
    async def home(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                   read: NamedDependency[ReadModels]) -> Template:
        who = actor(request)
        pending = len(await read.reviews("pending", 500)) if who.can("values.review") else 0
        returned = len(await read.reviews("returned", 500)) if who.can("values.review") else 0
        return await page(request, "home.html.j2", node_context, pending=pending, returned=returned,
                          must_change=who.must_change)
