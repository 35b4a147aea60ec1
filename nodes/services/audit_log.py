"""The node's audit log as a service: verification from a checkpoint, off the event loop and one at a
time; folding counted refusals into the chain when their window is over; pages, newest first.

Verification used to re-hash the whole chain inside the event loop on every read, so a few
requests could stall every other route. Now each check starts at the last verified entry (the
checkpoint, kept in the store), re-hashes that entry and everything after it in a worker thread,
page by page, and moves the checkpoint on. Only ``appraise audit verify`` walks from genesis.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass

from nodes.audit import FIELDS, GENESIS, AuditBreak, verify_entries
from nodes.repositories.audit import CounterRecord
from nodes.services.context import NodeContext
from sync.ports import AuditRecord

log = logging.getLogger("fedappraisal.audit")

PAGE = 2000  # entries hashed per worker-thread call


@dataclass(frozen=True)
class Verdict:
    first_break: AuditBreak | None
    verified_seq: int  # every entry up to here verified (from genesis, by this check or an earlier one)
    checked: int  # entries this check hashed

    @property
    def intact(self) -> bool:
        return self.first_break is None


def _walk(rows: list[AuditRecord], prev: str, first: int) -> tuple[int, AuditBreak | None]:
    return verify_entries(({f: getattr(r, f) for f in FIELDS} for r in rows), prev, first)


class AuditService:
    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx
        self._verifying = asyncio.Lock()
        # Set by every committed write (Store.on_commit): the background round runs only after one.
        self.changed = asyncio.Event()
        ctx.store.on_commit.append(self.changed.set)

    async def verify(self) -> Verdict:
        """From the checkpoint to the tip. Callers arriving during a check wait for it and then find
        little or nothing left to hash."""
        async with self._verifying:
            return await self._verify()

    async def _verify(self) -> Verdict:
        store = self.ctx.store
        async with store.read() as r:
            checkpoint = await r.audit.checkpoint()
            again = await r.audit.from_seq(checkpoint[0], 1) if checkpoint else []
        start = checkpoint or (0, GENESIS)
        checked, broken = 0, None
        if checkpoint:  # the checkpoint's own entry is hashed again, so an edit to it is seen too
            if not again or again[0].seq != start[0]:
                broken = AuditBreak(start[0], "已核验的条目不见了 (the verified checkpoint entry is missing)")
            elif again[0].hash != start[1]:
                broken = AuditBreak(start[0], "条目与已核验的检查点不符 (entry differs from the verified checkpoint)")
            else:
                checked, broken = _walk(again, again[0].prev_hash, start[0])
            if broken is not None:
                return Verdict(broken, start[0] - 1, checked)
        good = start  # (seq, hash) of the last entry known good
        while True:
            async with store.read() as r:
                rows = await r.audit.from_seq(good[0] + 1, PAGE)
            if not rows:
                break
            count, broken = await asyncio.to_thread(_walk, rows, good[1], good[0] + 1)
            checked += count
            if broken is not None:  # the entries before the break still verified
                if count > 1:
                    good = (rows[count - 2].seq, rows[count - 2].hash)
                break
            good = (rows[-1].seq, rows[-1].hash)
            if len(rows) < PAGE:
                break
        if good != start:
            async with store.tx(quiet=True) as tx:  # the audit log is never served from a cache
                await tx.audit.set_checkpoint(good[0], good[1], self.ctx.clock())
        return Verdict(broken, good[0], checked)

    async def fold(self) -> int:
        """Fold every counted window that is over into its summary entry."""
        async with self.ctx.store.tx(quiet=True) as tx:
            return await tx.audit.fold(self.ctx.clock(), self.ctx.limits.audit_repeat_seconds, self.ctx.me.code)

    async def run(self) -> None:
        """The ``audit`` task: fold ended windows and move the checkpoint on, in the background, so
        summaries reach the chain even when the flood stops and reads find little to hash. It runs a
        period after a write and not otherwise: an idle node (thousands on one host) costs no timer, and
        a jitter of a tenth keeps the nodes of a host that started together from folding in step."""
        period = max(1.0, min(60.0, self.ctx.limits.audit_repeat_seconds / 2))
        while True:
            await self.changed.wait()
            await asyncio.sleep(period * (1 + random.random() / 10))
            self.changed.clear()
            try:
                async with self.ctx.store.read() as r:
                    counting = await r.audit.open_windows()
                if counting:  # a write transaction only when there is something to fold
                    await self.fold()
                await self.verify()
                if counting:
                    async with self.ctx.store.read() as r:
                        if await r.audit.open_windows():
                            self.changed.set()  # a window still counting: fold it when it is over
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store may be away for a while; the next round tries again
                self.changed.set()
                self.ctx.health.last_error = f"audit: {exc}"
                log.warning("audit fold or verification failed: %s", exc)

    async def page(self, limit: int, before: int | None = None,
                   action: str | None = None) -> tuple[list[AuditRecord], int | None]:
        async with self.ctx.store.read() as r:
            return await r.audit.page(limit, before, action)

    async def counters(self) -> list[CounterRecord]:
        async with self.ctx.store.read() as r:
            return await r.audit.counters()


__all__ = ["AuditService", "Verdict"]
