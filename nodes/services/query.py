"""The federated drill-down: one indicator over this node's subtree, this node's own rows plus
its children's answers over gRPC (each child answers for its own subtree; anything else it sends
is dropped). ``partial`` names the children that did not answer."""

from __future__ import annotations

import asyncio

from nodes.services.context import NodeContext
from proto.appraisal.v1 import appraisal_pb2 as pb
from sync.ports import ResultRecord

CHILD_LEVEL = {"province": "city", "city": "county", "county": "township"}


class QueryService:
    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx

    async def query(self, req: pb.QueryRequest) -> pb.QueryReply:
        ctx = self.ctx
        me = ctx.me
        reply = pb.QueryReply()
        async with ctx.store.read() as r:
            rows = await r.results.for_indicator(req.cycle, req.period, req.indicator)
        latest: dict[str, ResultRecord] = {}
        for row in rows:
            if (row.node == me.code or row.node in me.children) and (
                    row.node not in latest or row.updated_at >= latest[row.node].updated_at):
                latest[row.node] = row
        child_level = CHILD_LEVEL.get(me.level, "")
        for code, row in sorted(latest.items()):
            own = code == me.code
            reply.rows.add(unit=code, name=me.name if own else me.children[code],
                           parent=(me.parent or "") if own else me.code,
                           level=me.level if own else child_level, indicator=req.indicator, value=row.value,
                           source=row.source)
        depth = min(req.depth, ctx.limits.query_depth)  # whoever asks, this node descends no deeper
        if depth > 0:
            sub = pb.QueryRequest(cycle=req.cycle, period=req.period, indicator=req.indicator, depth=depth - 1)

            async def ask(peer_code: str, target: str) -> tuple[str, pb.QueryReply | None]:
                client = ctx.client(target, peer_code)
                try:
                    return peer_code, await client.query(sub, timeout=ctx.limits.query_timeout_seconds)
                except Exception:
                    return peer_code, None
                finally:
                    await client.close()

            answers = await asyncio.gather(*(ask(c.code, c.grpc) for c in ctx.cfg.children if c.grpc))
            for code, answer in answers:
                if answer is None:
                    reply.partial.append(code)
                    continue
                reply.rows.extend(row for row in answer.rows if row.unit != code and row.unit.startswith(code))
                reply.partial.extend(p for p in answer.partial if p.startswith(code))
            reply.partial.extend(c.code for c in ctx.cfg.children if not c.grpc)
        return reply
