"""Results and ingest: children's signed bundles from JetStream (a fetched batch in one
transaction, sync/results_receiver.py) or submitted over gRPC; gap repair by pulling what is
missing from the child over gRPC; this node's own bundles for its parent.
"""

from __future__ import annotations

import logging

from nodes.services.context import NodeContext
from nodes.services.scoring import ScoringService
from nodes.store import Tx
from sync.codec import Bundle
from sync.results_receiver import pull_missing, receive_results, receive_results_batch
from sync.results_sender import bundles_for_parent

log = logging.getLogger("fedappraisal.results")


class ResultsService:
    def __init__(self, ctx: NodeContext, scoring: ScoringService) -> None:
        self.ctx = ctx
        self.scoring = scoring
        self._pulling: set[str] = set()  # children whose missing bundles are being pulled

    @property
    def hold(self) -> bool:
        """review: manual — children's bundles wait for a person to approve them."""
        return self.ctx.cfg.review == "manual"

    async def after_results(self, tx: Tx, accepted: list[Bundle]) -> None:
        keys = dict.fromkeys((b.cycle, b.period, b.framework_digest) for b in accepted)
        for cycle, period, fw_digest in keys:
            cause = ", ".join(f"{b.node}#{b.seq}" for b in accepted
                              if (b.cycle, b.period, b.framework_digest) == (cycle, period, fw_digest))
            await self.scoring.recompute(tx, cycle, period, fw_digest, cause=f"结果包 (bundles) {cause}"[:500])

    async def on_batch(self, msgs: list[tuple[str, bytes]]) -> list[bool]:
        """A fetched batch of children's bundles, taken in one transaction."""
        ctx = self.ctx
        outcomes = await receive_results_batch(ctx.store, ctx.me, [(d, s) for s, d in msgs], ctx.clock(),
                                               self.after_results, hold=self.hold)
        for outcome in outcomes:
            ctx.log_outcome("results", outcome)
            if outcome.retry:
                self.pull(outcome.origin)
        return [not o.retry for o in outcomes]

    def pull(self, child: str) -> None:
        """A gap (or a bundle the child reports it signed and this node never got): pull what is
        missing from the child directly, while the live stream goes on."""
        if child in self.ctx.me.children and child not in self._pulling:
            self._pulling.add(child)
            self.ctx.tasks.spawn(self._pull_gap(child), name=f"gap:{child}")

    async def _pull_gap(self, child: str) -> None:
        ctx = self.ctx
        peer = next((c for c in ctx.cfg.children if c.code == child), None)
        client = ctx.client(peer.grpc, peer.code) if peer is not None and peer.grpc else None
        try:
            if client is None:
                return

            async def fetch(after_seq: int) -> list[bytes]:
                assert client is not None
                return await client.fetch_bundles(ctx.me.code, after_seq, timeout=ctx.limits.pull_timeout_seconds)

            outcomes = await pull_missing(ctx.store, ctx.me, child, fetch, ctx.clock, self.after_results,
                                          ctx.limits.fetch_batch, hold=self.hold)
            for outcome in outcomes:
                ctx.log_outcome("results (pulled)", outcome)
        except Exception as exc:  # the live stream's redelivery will ask again
            ctx.health.last_error = f"gap pull from {child}: {exc}"
            log.warning("pulling missing bundles from %s: %s", child, exc)
        finally:
            self._pulling.discard(child)
            if client is not None:
                await client.close()

    async def own_bundles(self, requester: str, after_seq: int) -> list[bytes]:
        """gRPC FetchBundles: our bundles after ``after_seq``, for our parent only."""
        return await bundles_for_parent(self.ctx.store, self.ctx.me, requester, after_seq,
                                        self.ctx.limits.pull_reply_bytes)

    async def submit(self, data: bytes, caller: str) -> tuple[bool, str]:
        """gRPC SubmitResults: one bundle handed in directly by ``caller`` (its TLS certificate's node
        code; without TLS its host), who is named if it is refused."""
        ctx = self.ctx
        outcome = await receive_results(ctx.store, ctx.me, data, ctx.clock(), self.after_results, None, hold=self.hold,
                                        peer=caller)
        ctx.log_outcome("results", outcome)
        return outcome.accepted, outcome.reason
