"""Trust and heartbeat, both ways.

As a parent (:class:`HeartbeatService`): sign a short-lived heartbeat every
``heartbeat_seconds`` naming the latest framework issued per cycle and class, the bundles
returned for correction and the revocation lists in force (sync/trust_updates.py), at once after
a revocation; revoke a child's certificate.

As a child (:class:`ParentWatch`): verify the parent's heartbeat, keep the last good one (a child
whose heartbeat expired may be frozen on old data, docs/design.md rule 7), and catch up over gRPC
on frameworks the heartbeat names that this node does not hold. Catch-up retries by the node's
retry policy; when it gives up, that is audited and shown in the sync status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable

from aggregator.errors import AppraisalError
from nodes.services.context import NodeContext
from sync.refusals import from_grpc, from_nats
from sync.retry import GaveUp, RetryPolicy
from sync.trust_updates import Pulse, heartbeat_update, receive_trust_update, revoke

log = logging.getLogger("fedappraisal.trust")

Announce = Callable[[str, bytes], Awaitable[None]]  # core NATS publish
TakeCascade = Callable[[str | None, bytes], Awaitable[bool]]  # subject (None: over gRPC), message


class HeartbeatService:
    def __init__(self, ctx: NodeContext, announce: Announce) -> None:
        self.ctx = ctx
        self.announce = announce

    async def issued_refs(self) -> list[tuple[str, str, int, str]]:
        async with self.ctx.store.read() as r:
            rows = await r.frameworks.list(role="issued")
        latest: dict[tuple[str, str], tuple[str, str, int, str]] = {}
        for row in rows:
            key = (row.cycle, row.unit_class)
            if key not in latest or row.version > latest[key][2]:
                latest[key] = (row.cycle, row.unit_class, row.version, row.digest)
        return list(latest.values())

    async def returned_notices(self) -> list[tuple[str, str, int, str, int]]:
        async with self.ctx.store.read() as r:
            rows = await r.bundles.by_status("returned", limit=500)
        return [(row.node, row.id, row.seq, row.reason, row.reviewed_at) for row in rows]

    async def trust_update(self) -> bytes:
        return heartbeat_update(self.ctx.me, await self.issued_refs(), self.ctx.clock(),
                                ttl=3 * self.ctx.cfg.heartbeat_seconds, returned=await self.returned_notices())

    async def run(self) -> None:
        wakeup = self.ctx.wakeups.heartbeat
        while True:
            try:
                await self.announce("hb." + ".".join(self.ctx.me.path), await self.trust_update())
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # children notice the silence; say why here
                self.ctx.health.last_error = f"heartbeat: {exc}"
            with contextlib.suppress(TimeoutError):
                # A tenth of jitter: the nodes of a host that started together do not beat in step.
                await asyncio.wait_for(wakeup.wait(), timeout=self.ctx.cfg.heartbeat_seconds * (0.95 + random.random() / 10))
            wakeup.clear()

    async def revoke(self, code: str, serial: int, reason: str, actor: str) -> int:
        """Revoke a child's certificate; the new list goes out with the next heartbeat, at once."""
        crl = await revoke(self.ctx.store, self.ctx.me, code, serial, reason, self.ctx.clock(), actor)
        self.ctx.wakeups.heartbeat.set()
        return crl.version


class ParentWatch:
    def __init__(self, ctx: NodeContext, take_cascade: TakeCascade, retry: RetryPolicy,
                 stream_live: Callable[[], bool] = lambda: False) -> None:
        """``stream_live()``: this node's cascade consumer is subscribed and being answered."""
        self.ctx = ctx
        self.take_cascade = take_cascade
        self.retry = retry
        self.stream_live = stream_live
        self.pulse: Pulse | None = None  # the parent's last good heartbeat
        self.pulse_error = ""
        self._catching_up = False
        self._asked: set[str] = set()  # frameworks a heartbeat named that we asked the parent for

    async def on_heartbeat(self, data: bytes, catch_up: bool = True) -> None:
        """``catch_up`` False: the update came with a gRPC catch-up reply and may be older than
        the last one from NATS; that is not a replay, so keep whichever is newer."""
        try:
            me = self.ctx.me
            sender = from_nats("hb." + ".".join(me.path[:-1])) if catch_up else from_grpc(me.parent or "")
            pulse, installed = await receive_trust_update(self.ctx.store, me, data, self.ctx.clock(),
                                                          self.pulse if catch_up else None, sender)
        except (AppraisalError, ValueError) as exc:
            self.pulse_error = str(exc)[:300]
            log.warning("rejected heartbeat: %s", exc)
            return
        if self.pulse is None or pulse.issued_at >= self.pulse.issued_at:
            self.pulse = pulse
        self.pulse_error = ""
        if installed:
            self.ctx.wakeups.heartbeat.set()  # pass newer revocation lists on to our children at once
        missing = set(await self.missing_frameworks()) - self._asked
        if catch_up and missing:
            # Ask once per framework: one issued to a sibling class is named but never addressed to us.
            self._asked |= missing
            self.ctx.tasks.spawn(self._catch_up_unless_delivered(missing), name="catch-up")

    async def _catch_up_unless_delivered(self, missing: set[str]) -> None:
        """A heartbeat naming a new framework usually beats the framework's own stream message by
        moments; ask the parent over gRPC only if the stream has not delivered it within the grace (a
        county's townships would otherwise each fetch and verify every framework twice).

        While this node's cascade consumer is live the stream will deliver, however busy the host:
        the grace doubles, up to a heartbeat period, before the node asks. A host taking a
        province's cascade is slow for exactly as long as it is busy, and catch-ups then would only
        add to the load (every township asking its county at once)."""
        grace = self.ctx.limits.catch_up_grace_seconds
        patience = max(grace, float(self.ctx.cfg.heartbeat_seconds))
        waited = 0.0
        while True:
            await asyncio.sleep(grace)
            waited += grace
            if not missing & set(await self.missing_frameworks()):
                return
            if waited >= patience or not self.stream_live():
                break
            grace = min(2 * grace, patience - waited)
        await self.catch_up()

    async def missing_frameworks(self) -> list[str]:
        """Frameworks the parent's last heartbeat names that this node does not hold."""
        if self.pulse is None:
            return []
        async with self.ctx.store.read() as r:
            return [d for *_, d in self.pulse.frameworks if await r.frameworks.get(d) is None]

    async def catch_up(self) -> None:
        """Ask the parent over gRPC for frameworks we may have missed, and for its trust update."""
        if self._catching_up:
            return
        self._catching_up = True
        ctx = self.ctx
        client = ctx.client(ctx.cfg.parent_grpc, ctx.me.parent or "")

        def failed(_attempt: int, exc: Exception) -> None:
            ctx.health.last_error = f"catch-up from {ctx.cfg.parent_grpc}: {exc}"

        async def gave_up(reason: str) -> None:
            ctx.health.give_up("catch-up", reason, ctx.clock())
            async with ctx.store.tx() as tx:
                await tx.audit.append(ctx.me.code, "gave_up.catch_up", ctx.me.parent or "",
                                      {"reason": reason, "code": "transport.gave_up"}, ctx.clock())

        try:
            messages, trust = await self.retry.run(
                lambda: client.fetch_frameworks(ctx.me.code, timeout=ctx.limits.rpc_timeout_seconds),
                what=f"catch-up from {ctx.cfg.parent_grpc}", on_error=failed, on_give_up=gave_up)
            ctx.health.recovered("catch-up")
            if trust:
                await self.on_heartbeat(trust, catch_up=False)
            for data in messages:
                await self.take_cascade(None, data)
        except GaveUp:
            # After the flag is down, so that a heartbeat arriving during the give-up cannot leave a
            # framework marked as asked for: the next one that names a missing framework asks again.
            self._catching_up = False
            self._asked.clear()
        finally:
            self._catching_up = False
            await client.close()
