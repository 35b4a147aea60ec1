"""Outbox relay: publish committed outbox rows to JetStream, in order per subject.

A row is marked sent only after JetStream acknowledged it; a failed subject waits (its order
matters: a parent takes a child's bundles in sequence) while the others go on, and the relay
pauses by the node's one retry policy before trying the failed ones again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from nodes.services.context import NodeContext
from sync.retry import RetryPolicy

log = logging.getLogger("fedappraisal.outbox")

Publish = Callable[[str, bytes, str], Awaitable[None]]  # subject, payload, message id; raises unless acknowledged


class OutboxRelay:
    def __init__(self, ctx: NodeContext, publish: Publish, retry: RetryPolicy) -> None:
        self.ctx = ctx
        self.publish = publish
        self.retry = retry

    async def run(self) -> None:
        failures = 0  # consecutive rounds with a failed subject
        wakeup = self.ctx.wakeups.outbox
        while True:
            # Woken by every committed write (Store.on_commit, wired by the runtime) and after a failed
            # round's pause: an idle node costs no timer.
            if not failures:
                await wakeup.wait()
            wakeup.clear()
            stalled = await self.relay_once()
            failures = failures + 1 if stalled else 0
            if stalled:
                await self.retry.pause(failures)

    async def relay_once(self) -> set[str]:
        """Publish what is pending; return the subjects that failed (they wait for the next round)."""
        health = self.ctx.health
        try:
            async with self.ctx.store.read() as r:
                rows = await r.outbox.pending()
        except Exception as exc:  # store briefly unavailable: try again on the next tick
            health.last_error = f"outbox: {exc}"
            return {"*"}
        stalled: set[str] = set()
        for row in rows:
            if row.subject in stalled:
                continue
            try:
                await self.publish(row.subject, row.payload, row.msg_id)
                async with self.ctx.store.tx(quiet=True) as tx:  # no cached read shows the outbox
                    await tx.outbox.mark_sent(row.id, self.ctx.clock())
                health.send_errors.pop(row.subject, None)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the row stays pending and is retried
                stalled.add(row.subject)
                health.send_errors[row.subject] = (self.ctx.clock(), f"{type(exc).__name__}: {exc}"[:300])
                health.last_error = f"outbox {row.subject}: {exc}"
                log.warning("outbox relay: %s: %s", row.subject, exc)
        return stalled
