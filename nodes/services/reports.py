"""Status reports, both ways (sync/reports.py).

As a child: sign this node's report — the frameworks it holds and issued, what it refused, its audit
chain head, its children's latest reports — and hand it to the parent over gRPC whenever it changes
(checked every heartbeat, and at once when woken) and every ``RESEND_EVERY`` heartbeats regardless,
so the parent's anchor of this node's audit chain stays recent.

As a parent: verify each child's report, keep the newest per descendant, answer a child's question
about the anchor it holds for it, and tell per descendant whether its cascade is current, lagging,
refused or unreported (``/api/v1/sync`` and ``appraise status``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from hashlib import sha256

from aggregator.errors import AppraisalError
from nodes.repositories.publications import PublicationRecord
from nodes.services.context import NodeContext, framework_of
from sync.envelope import code_of, keyid, signer_ids
from sync.identity import Me
from sync.ports import Occurrence
from sync.refusals import from_grpc, record, record_alone
from sync.reports import (
    DescendantState,
    Ref,
    Refusal,
    Report,
    cascade_states,
    content_key,
    make_report,
    verify_report,
)
from sync.transport.grpc import FederationClient

log = logging.getLogger("fedappraisal.reports")

RESEND_EVERY = 6  # heartbeats between reports that say nothing new
# Seconds between two reports, however often the node is woken. A report carries the node's whole
# subtree, and during a cascade a county is woken by each township's report: the higher the node, the
# larger the report and the fewer of them (a province hears of a township's change within ~7 s).
MIN_GAP = {"township": 1.0, "county": 2.0, "city": 4.0}


class ReportService:
    def __init__(self, ctx: NodeContext, behind: Callable[[str], None] = lambda child: None) -> None:
        """``behind(child)``: a child has signed bundles this node does not hold (gap repair)."""
        self.ctx = ctx
        self.behind = behind
        self.last_error = ""
        self.last_sent_at = 0
        self._last_at = 0  # the time of the last report built
        self._client: FederationClient | None = None
        # Per descendant, the SHA-256 of the report held: loaded at the first report taken, kept
        # with every commit. Forwarded reports with these bytes were verified when they were taken.
        self._held: dict[str, bytes] | None = None

    async def build(self) -> bytes:
        ctx = self.ctx
        async with ctx.store.read() as r:
            received_rows = await r.frameworks.list(role="received")
            issued_rows = await r.frameworks.list(role="issued")
            rejected = await r.audit.latest("reject.framework", 50)
            underived = await r.audit.latest("derive.failed", 20)
            head = await r.audit.head()
            children = await r.reports.direct()
            last = await r.bundles.last(ctx.me.code)
            finals = [p for p in await r.publications.current(ctx.me.code) if p.state == "final" and p.role == "own"]
            lists = await r.division_changes.refs()
            refused_lists = await r.audit.latest("reject.division_changes", 10)
        received = _latest([Ref(f.issuer, f.cycle, f.unit_class, f.version, f.digest) for f in received_rows])
        issued_fws = {f.digest: framework_of(f) for f in issued_rows}
        issued = _latest([Ref(f.issuer, f.cycle, f.unit_class, f.version, f.digest,
                              tuple(u.code for u in issued_fws[f.digest].units)) for f in issued_rows])
        held = {f.digest for f in received_rows}
        pinned = {fw.parent.digest for fw in issued_fws.values() if fw.parent is not None}
        refusals: list[Refusal] = []
        for e in rejected:  # a framework refused and not held since (a later delivery may have been taken)
            if e.subject not in held and len(refusals) < 10:
                d = _detail(e.detail)
                refusals.append(Refusal(e.subject, "", 0, str(d.get("code", "")), str(d.get("reason", "")), e.at))
        for e in underived:  # held, but not passed down: the children stay on what they had
            if e.subject in held and e.subject not in pinned and len(refusals) < 20:
                d = _detail(e.detail)
                refusals.append(Refusal(e.subject, str(d.get("issuer", "")), int(str(d.get("version", 0) or 0)),
                                        str(d.get("code", "derive.failed")), str(d.get("reason", "")), e.at))
        taken = {x.digest for x in lists}
        for e in refused_lists:  # a change list refused and not taken since: the ancestors see why
            if e.subject not in taken and len(refusals) < 20:
                d = _detail(e.detail)
                refusals.append(Refusal(e.subject, str(d.get("issuer", "")), int(str(d.get("seq", 0) or 0)),
                                        str(d.get("code", "division.refused")), str(d.get("reason", "")), e.at))
        # Strictly increasing times: the parent keeps a report only if it is newer than the one it holds, and
        # two reports within one second (before and after a framework arrived) must not look the same age.
        self._last_at = max(ctx.clock(), self._last_at + 1)
        return make_report(ctx.me, received=received, issued=issued, refusals=refusals, audit_head=head,
                           descendants=children, now=self._last_at, bundle_seq=last.seq if last is not None else 0,
                           publications=_carried(finals, ctx.me), division_lists=lists)

    async def run(self) -> None:
        """As a child: keep the parent told."""
        ctx = self.ctx
        if ctx.me.parent is None or not ctx.cfg.parent_grpc:
            return
        said, quiet = b"", 0
        built_at = -1  # the store's write count when the last report was built
        retry_in = 0.0  # after a failed send: seconds until the next try, doubling up to a heartbeat
        while True:
            started = time.monotonic()
            writes = ctx.store.writes
            if writes == built_at and said and quiet < RESEND_EVERY:
                # Nothing written since the last report, which this one would repeat: an idle node
                # (thousands of them on one host) builds a report every RESEND_EVERY heartbeats only.
                quiet += 1
            else:
                try:
                    data = await self.build()
                    built_at = writes
                    key = content_key(data)
                    if key != said or quiet >= RESEND_EVERY:
                        ok, reason = await self._send(data)
                        self.last_error = "" if ok else f"上级拒收状态报告 (parent refused the report): {reason}"[:300]
                        retry_in = 0.0
                        if ok:
                            said, quiet, self.last_sent_at = key, 0, ctx.clock()
                    else:
                        quiet += 1
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the parent is down or unreachable: try again next time
                    self.last_error = f"状态报告未送达 (report not delivered): {exc}"[:300]
                    await self._close()
                    # Soon, not a heartbeat later: the parent may only be starting (on a host, beside us).
                    retry_in = min(max(2 * retry_in, 1.0), float(ctx.cfg.heartbeat_seconds))
            wakeup = ctx.wakeups.report
            period = retry_in or ctx.cfg.heartbeat_seconds
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wakeup.wait(), timeout=period * (0.95 + random.random() / 10))
            wakeup.clear()
            await asyncio.sleep(max(0.0, MIN_GAP.get(ctx.me.level, 1.0) - (time.monotonic() - started)))

    async def _send(self, data: bytes) -> tuple[bool, str]:
        ctx = self.ctx
        if self._client is None:
            self._client = ctx.client(ctx.cfg.parent_grpc, ctx.me.parent or "")
        return await self._client.report(data, timeout=ctx.limits.rpc_timeout_seconds)

    async def _close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()

    async def stop(self) -> None:
        await self._close()

    async def take(self, data: bytes, caller: str | None) -> tuple[bool, str]:
        """gRPC Report: a child's report, its descendants' inside."""
        ctx = self.ctx
        now = ctx.clock()
        if self._held is None:
            async with ctx.store.read() as r:
                self._held = await r.reports.digests()
        known = self._held
        try:
            reports, dropped = verify_report(ctx.me, data, now, caller, set(known.values()))
        except (AppraisalError, ValueError, ArithmeticError) as exc:
            code = code_of(exc, "report.unchecked")  # counted per sender, like every refusal (sync/refusals.py)
            await record_alone(ctx.store, ctx.me, [Occurrence(
                ctx.me.code, "reject.report", caller or "", from_grpc(caller or ""), code,
                {"reason": str(exc)[:300], "code": code, "caller": caller or "", "bytes": len(data)})], now)
            return False, str(exc)
        async with ctx.store.tx(quiet=True) as tx:  # read by the sync status, which is never cached
            kept = await tx.reports.put_newer(reports, now)
            held = await tx.bundles.last(reports[0].node)
            if dropped:
                await record(tx, ctx.me, [Occurrence(
                    ctx.me.code, "reject.report", reports[0].node, from_grpc(caller or ""), "report.descendant_dropped",
                    {"reason": "; ".join(dropped)[:500], "code": "report.descendant_dropped", "caller": caller or "",
                     "dropped": len(dropped)})], now)
        for rep in kept:
            known[rep.node] = sha256(rep.message).digest()
        taken = await self._take_publications(reports, now)
        if kept or taken:
            ctx.wakeups.report.set()  # our own report now carries news from below
        if reports[0].bundle_seq > (held.seq if held is not None else 0):
            self.behind(reports[0].node)  # signed, reported, never arrived: pull it
        return True, ""

    async def _take_publications(self, reports: Sequence[Report], now: int) -> int:
        """Keep the final results the reports carried (verified in sync/reports.py) that are not held:
        one read to find them (every report repeats them), a write only for new ones."""
        carried = [(rep, doc, envelope) for rep in reports
                   for doc, envelope in zip(rep.published, rep.publications, strict=True)]
        if not carried:
            return 0
        async with self.ctx.store.read() as r:
            new = [(rep, doc, env) for rep, doc, env in carried if await r.publications.get(doc.digest) is None]
        if not new:
            return 0
        async with self.ctx.store.tx() as tx:
            for rep, doc, envelope in new:
                if await tx.publications.get(doc.digest) is not None:
                    continue
                held = [p for p in await tx.publications.list(node=doc.node, cycle=doc.cycle, period=doc.period,
                                                              unit_class=doc.framework.unit_class)
                        if p.version == doc.version]
                if held:  # two different versions with one number, both signed by that node: kept as evidence
                    await tx.audit.append(self.ctx.me.code, "reject.publication", doc.digest, {
                        "node": doc.node, "cycle": doc.cycle, "class": doc.framework.unit_class,
                        "version": doc.version, "held": held[0].digest, "code": "publication.equivocation",
                        "reason": "同一版本号下有两份不同的终审结果 (two different results under one version number)"},
                        now)
                    continue
                await tx.publications.add(PublicationRecord(
                    doc.digest, doc.node, doc.cycle, doc.period, doc.framework.unit_class, doc.framework.digest,
                    doc.version, doc.state, doc.public, doc.window_opens, doc.window_closes, doc.reason, "received",
                    envelope, b"", now, f"report:{rep.via or rep.node}"))
                await tx.audit.append(self.ctx.me.code, "publication.received", doc.digest, {
                    "node": doc.node, "cycle": doc.cycle, "period": doc.period, "class": doc.framework.unit_class,
                    "version": doc.version, "via": rep.via or rep.node}, now)
        return len(new)

    async def anchor(self, requester: str) -> bytes:
        """gRPC FetchAnchor: the requester's own last report held here (a child asks only for itself)."""
        if requester not in self.ctx.me.children:
            return b""
        async with self.ctx.store.read() as r:
            return await r.reports.message(requester) or b""

    async def reported_seqs(self) -> dict[str, int]:
        """Per child: the last bundle it says it signed for this node."""
        async with self.ctx.store.read() as r:
            return {code: rep.bundle_seq for code, rep in (await r.reports.all()).items() if rep.via == ""}

    async def states(self) -> list[DescendantState]:
        ctx = self.ctx
        async with ctx.store.read() as r:
            issued_rows = await r.frameworks.list(role="issued")
            reports = await r.reports.all()
            lists = await r.division_changes.refs()
        mine = _latest([Ref(f.issuer, f.cycle, f.unit_class, f.version, f.digest,
                            tuple(u.code for u in framework_of(f).units)) for f in issued_rows])
        return cascade_states(ctx.me.code, mine, [c.code for c in ctx.cfg.children], reports, lists)


def _latest(refs: list[Ref]) -> list[Ref]:
    out: dict[tuple[str, str, str], Ref] = {}
    for ref in refs:
        key = (ref.issuer, ref.cycle, ref.unit_class)
        if key not in out or ref.version > out[key].version:
            out[key] = ref
    return sorted(out.values(), key=lambda r: (r.cycle, r.unit_class, r.issuer))


def _detail(detail: str) -> dict[str, object]:
    try:
        parsed = json.loads(detail)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


CARRIED_BYTES = 1024 * 1024  # final results one report carries (the parent keeps what it took before)


def _carried(finals: Sequence[PublicationRecord], me: Me) -> list[bytes]:
    """The newest final results signed under this node's current key, up to CARRIED_BYTES: older ones
    reached the parent in earlier reports, and one signed under a key since rotated would not verify."""
    kid = keyid(me.key.public_key())
    out: list[bytes] = []
    size = 0
    for p in sorted(finals, key=lambda p: p.created_at, reverse=True):
        if kid not in signer_ids(p.envelope) or size + len(p.envelope) > CARRIED_BYTES or len(out) >= 64:
            continue
        out.append(p.envelope)
        size += len(p.envelope)
    return out
