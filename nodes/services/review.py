"""审核 (review, with ``review: manual``): a person approves a child's pending bundle — its values
count, and this node's approval of it, signed with the reviewer's name, goes up with the roll-up —
or returns it for correction; the child learns that from the next heartbeat."""

from __future__ import annotations

from aggregator.errors import BadInput, Conflict, NotFound
from aggregator.numbers import to_text
from nodes.services.context import NodeContext
from nodes.services.scoring import ScoringService
from sync.codec import bundle_from_message

DECISIONS = ("approve", "return")


class ReviewService:
    def __init__(self, ctx: NodeContext, scoring: ScoringService) -> None:
        self.ctx = ctx
        self.scoring = scoring

    async def review(self, child: str, bundle_id: str, decision: str, note: str, reviewer: str,
                     actor: str | None = None) -> str:
        """Returns the bundle's new status. ``reviewer``: the person as the signed approval names them
        (name and login); ``actor``: their login for the audit log (default: ``reviewer``)."""
        ctx = self.ctx
        actor = actor or reviewer
        if decision not in DECISIONS:
            raise BadInput("decision 应为 approve（通过）或 return（退回） (decision must be approve or return)",
                           code="review.decision")
        if decision == "return" and not note.strip():
            raise BadInput("退回须说明理由 (a return needs a reason)", code="review.reason_required")
        now = ctx.clock()
        async with ctx.store.tx() as tx:
            row = await tx.bundles.get(bundle_id[:64])
            if row is None or row.node != child or child not in ctx.me.children:
                raise NotFound(f"没有 {child[:12]} 的结果包 {bundle_id[:12]}… (no such bundle of that child)",
                               code="review.no_such_bundle")
            if row.status != "pending":
                raise Conflict(f"该结果包的状态是 {row.status}，不在待审核中 (bundle is not pending review)",
                               code="review.not_pending")
            if decision == "return":
                await tx.bundles.review(row.id, "returned", reviewer[:64], note[:500], now)
                await tx.audit.append(actor, "review.return", row.id,
                                      {"node": child, "seq": row.seq, "reason": note[:500], "reviewer": reviewer[:64]}, now)
                status = "returned"
            else:
                later = [b for b in await tx.bundles.later(child, row.seq, row.cycle, row.period, row.framework_digest)
                         if b.status in ("accepted", "pending")]
                if later:
                    raise Conflict(f"{child} 已有更新的结果包（序号 {later[0].seq}），请审核最新的 "
                                   "(a later bundle supersedes this one)", code="review.superseded")
                bundle = bundle_from_message(row.message)
                await tx.results.put(node=child, cycle=bundle.cycle, period=bundle.period,
                                     framework_digest=bundle.framework_digest,
                                     values={k: to_text(v) for k, v in bundle.values.items()}, source="reported",
                                     bundle_id=row.id, now=now)
                await tx.bundles.review(row.id, "accepted", reviewer[:64], "", now)
                await tx.audit.append(actor, "review.approve", row.id,
                                      {"node": child, "seq": row.seq, "note": note[:500], "reviewer": reviewer[:64]}, now)
                await self.scoring.recompute(tx, bundle.cycle, bundle.period, bundle.framework_digest,
                                             cause=f"{reviewer} 审核通过 {child}#{row.seq} (approved)", actor=actor)
                status = "accepted"
        ctx.wakeups.outbox.set()
        ctx.wakeups.heartbeat.set()
        return status
