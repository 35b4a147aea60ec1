"""The federated drill-down: one indicator over this node's subtree, under one framework version.

This node answers from its own store (its own value and its children's), then asks each child over
gRPC for the child's subtree under the framework this node issued. It keeps of each answer only the
units that signed frameworks name (sync/drilldown.py), with names, levels and parents it derives
itself, and says what it dropped. ``partial`` names the nodes whose part is missing."""

from __future__ import annotations

import asyncio

from nodes.services import versions
from nodes.services.context import NodeContext
from nodes.services.versions import Version
from proto.appraisal.v1 import appraisal_pb2 as pb
from sync.drilldown import LISTED, MAX_TOTAL, Checked, check_answer, proof_of

CHILD_LEVEL = {"province": "city", "city": "county", "county": "township", "township": ""}


COMPLETE_TTL = 10.0  # seconds a whole answer is kept at most (what a child holds but does not roll up)
PARTIAL_TTL = 1.0  # a partial one: children that did not answer are asked again soon, but not per request


def _life(reply: pb.QueryReply) -> float:
    return PARTIAL_TTL if reply.partial else COMPLETE_TTL


class QueryService:
    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx

    async def query(self, req: pb.QueryRequest) -> pb.QueryReply:
        """gRPC Query from the parent: under the parent's framework it names (one this node received),
        and below this node under its own latest framework that pins that one."""
        key = ("query", req.cycle, req.period, req.indicator, req.depth, req.framework_digest)
        return await self.ctx.cache.get(key, lambda: self._query(req), COMPLETE_TTL, keep=_life)

    async def _query(self, req: pb.QueryRequest) -> pb.QueryReply:
        async with self.ctx.store.read() as r:
            theirs = await versions.received(self.ctx, r, req.cycle, req.framework_digest)
            mine = None if theirs is None else await versions.pinning(self.ctx, r, req.cycle, theirs.digest)
        if theirs is None:  # not (yet) holding the version asked about: nothing of it to show
            return pb.QueryReply(partial=sorted(self.ctx.me.children) if req.depth else [])
        return await self._answer(req, theirs.digest, mine, mine or theirs)

    async def drilldown(self, cycle: str, period: str, indicator: str, depth: int, version: Version) -> pb.QueryReply:
        """The gateway's drill-down under ``version``, one of this node's own frameworks (versions.py)."""
        req = pb.QueryRequest(cycle=cycle, period=period, indicator=indicator, depth=depth)
        mine = version if version.record.role == "issued" else None
        key = ("drilldown", cycle, period, indicator, depth, version.digest)
        return await self.ctx.cache.get(key, lambda: self._answer(req, version.own.digest, mine, version),
                                        COMPLETE_TTL, keep=_life)

    async def _answer(self, req: pb.QueryRequest, own_digest: str, mine: Version | None,
                      label: Version) -> pb.QueryReply:
        """``own_digest``: the framework this node's own value answers; ``mine``: its framework for its
        children (None: it has none for this version)."""
        ctx = self.ctx
        me = ctx.me
        ref = label.ref
        reply = pb.QueryReply(framework=pb.FrameworkRef(issuer=ref.issuer, cycle=ref.cycle, unit_class=ref.unit_class,
                                                        version=ref.version, digest=ref.digest))
        units = mine.units & set(me.children) if mine is not None else frozenset()
        async with ctx.store.read() as r:
            rows = await r.results.for_indicator(req.cycle, req.period, req.indicator)
        for row in rows:
            own = row.node == me.code and row.framework_digest == own_digest
            if own or (mine is not None and row.node in units and row.framework_digest == mine.digest):
                reply.rows.add(unit=row.node, name=me.name if own else me.children[row.node],
                               parent=(me.parent or "") if own else me.code, level=me.level if own else
                               CHILD_LEVEL[me.level], indicator=req.indicator, value=row.value, source=row.source)
        depth = min(req.depth, ctx.limits.query_depth)  # whoever asks, this node descends no deeper
        if depth == 0:
            return reply
        if mine is None:
            reply.partial.extend(sorted(me.children))  # nothing below of this version
            return reply
        reply.proofs.append(proof_of(me.code, mine.record.envelope, me.chain))
        sub = pb.QueryRequest(cycle=req.cycle, period=req.period, indicator=req.indicator, depth=depth - 1,
                              framework_digest=mine.digest)
        asked = [c for c in ctx.cfg.children if c.code in units]

        async def ask(peer_code: str, target: str) -> tuple[str, pb.QueryReply | None]:
            try:
                return peer_code, await ctx.channels.get(target, peer_code).query(
                    sub, timeout=ctx.limits.query_timeout_seconds)
            except Exception:
                await ctx.channels.drop(target, peer_code)
                return peer_code, None

        answers = await asyncio.gather(*(ask(c.code, c.grpc) for c in asked if c.grpc))
        now = ctx.clock()
        total = 0
        for code, answer in answers:
            if answer is None:
                reply.partial.append(code)
                continue
            checked: Checked = check_answer(answer, child=code, asked=(mine.framework, mine.digest), cycle=req.cycle,
                                            indicator=req.indicator, depth=sub.depth, root=me.root, trust=me.trust,
                                            now=now, by=me.code)
            reply.rows.extend(checked.rows)
            reply.proofs.extend(checked.proofs)
            reply.partial.extend(checked.partial)
            reply.dropped.extend(checked.dropped[:LISTED - len(reply.dropped)])
            total += checked.dropped_total
        reply.dropped_total = min(total, MAX_TOTAL)
        reply.partial.extend(c.code for c in asked if not c.grpc)
        return reply

