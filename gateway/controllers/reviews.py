"""/api/v1/reviews (the queue) and /api/v1/admin/reviews (a reviewer's decision)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody

from gateway.guards import actor, check_scope, require
from gateway.params import ReviewLimit, ReviewStatus
from gateway.problems import documented
from gateway.schemas import Return, ReviewDecision, Reviewed, ReviewItem
from nodes.services.context import NodeContext
from nodes.services.read_models import ReadModels
from nodes.services.review import ReviewService


class ReviewController(Controller):
    tags = ("results",)

    @get("/api/v1/reviews", summary="Children's bundles by review status: pending, returned, accepted",
         responses=documented(400))
    async def reviews(self, node_context: NamedDependency[NodeContext], read: NamedDependency[ReadModels],
                      status: ReviewStatus = "pending",
                      limit: ReviewLimit = 200) -> list[ReviewItem]:
        names = node_context.child_names
        return [ReviewItem(node=row.node, name=names.get(row.node, row.node), bundle_id=row.id, seq=row.seq,
                           cycle=row.cycle, period=row.period, received_at=row.received_at, reviewer=row.reviewer,
                           reviewed_at=row.reviewed_at, reason=row.reason) for row in await read.reviews(status, limit)]

    @post("/api/v1/admin/reviews", summary="Approve a child's pending bundle, or return it for correction",
          tags=["admin"], status_code=201, guards=[require("values.review")],
          responses=documented(400, 401, 403, 404, 409, 422), security=[{"bearer": []}])
    async def review(self, request: Request[Any, Any, Any], review_service: NamedDependency[ReviewService],
                     data: JSONBody[ReviewDecision]) -> Reviewed:
        # The reviewer signed into the approval is the person of the session (or the token), never free text.
        who = actor(request)
        check_scope(who, units=[data.node])
        decision = "return" if isinstance(data, Return) else "approve"
        status = await review_service.review(data.node, data.bundle_id, decision, data.note, who.label, actor=who.actor)
        return Reviewed(bundle_id=data.bundle_id, status=status)
