"""What the gateway shows, read from the store and the services' state: node identity and
counts, the honest sync status, frameworks with their links, rankings, values, warnings,
repeated grades and reviews (the audit log: nodes/services/audit_log.py). Nothing here writes."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aggregator.framework import Framework, FrameworkRef
from aggregator.grading import repeated_grade_flags
from aggregator.numbers import parse_decimal
from aggregator.progress import warn
from nodes.repositories.scores import ScoreRecord
from nodes.services import versions
from nodes.services.context import NodeContext, check_period, framework_of
from nodes.services.reports import RESEND_EVERY, ReportService
from nodes.services.trust import ParentWatch
from nodes.services.versions import Version, label
from sync.ports import BundleHeader, FrameworkRecord, ResultRecord
from sync.reports import Ref

REVIEW_STATUSES = ("pending", "returned", "accepted", "rejected")


class TransportState(Protocol):
    """What the status shows of the NATS connection."""

    @property
    def last_error(self) -> str: ...
    @property
    def connected(self) -> bool: ...


@dataclass(frozen=True)
class RankedUnit:
    """One unit's stored score with its derivation parsed once; ``assessed`` False: reported nothing."""

    record: ScoreRecord
    explanation: dict[str, Any]
    version: Version  # the framework version it was scored under

    @property
    def assessed(self) -> bool:
        return bool(self.explanation.get("assessed", True))

    @property
    def complete(self) -> bool:
        return bool(self.explanation.get("complete", True))

    @property
    def grade(self) -> str:
        return str(self.explanation.get("grade") or "")

    # Scores stored before interim periods were known carry neither flag: they were all scored against
    # the annual targets and graded (recomputing gives them their interim targets and labels).
    @property
    def interim(self) -> bool:
        return bool(self.explanation.get("interim", False))

    @property
    def graded(self) -> bool:
        return bool(self.explanation.get("graded", True))


@dataclass(frozen=True)
class FrameworkView:
    record: FrameworkRecord
    framework: Framework


READ_TTL = 10.0  # seconds: what this node holds is valid until its next write in any case


class ReadModels:
    def __init__(self, ctx: NodeContext, watch: ParentWatch | None, transport_state: TransportState | None,
                 reports: ReportService | None = None) -> None:
        self.ctx = ctx
        self.watch = watch
        self.transport = transport_state
        self.reports = reports

    def node_info(self) -> dict[str, Any]:
        me = self.ctx.me
        return {"code": me.code, "name": me.name, "level": me.level, "parent": me.parent, "path": list(me.path),
                "children": [{"code": c.code, "name": c.name} for c in self.ctx.cfg.children]}

    async def status(self) -> dict[str, Any]:
        async with self.ctx.store.read() as r:
            counts = await r.counts()
            fws = await r.frameworks.list()
        transport_error = self.transport.last_error if self.transport is not None else ""
        return {
            **self.node_info(), "counts": counts,
            "frameworks": [{"digest": f.digest, "issuer": f.issuer, "cycle": f.cycle, "class": f.unit_class,
                            "version": f.version, "role": f.role} for f in fws],
            "sync": {"outbox_pending": counts["outbox_pending"],
                     "last_error": self.ctx.health.last_error or transport_error},
            "read_cache": {"generation": self.ctx.store.generation, "hits": self.ctx.cache.hits,
                           "misses": self.ctx.cache.misses},
        }

    async def frameworks(self, cycle: str | None = None) -> list[FrameworkView]:
        async with self.ctx.store.read() as r:
            rows = await r.frameworks.list(cycle=cycle)
        return [FrameworkView(row, framework_of(row)) for row in rows]

    async def versions(self, cycle: str, framework: str | None = None, version: int | None = None) -> list[Version]:
        """The framework versions a read shows: the ones in force, or the one asked for (versions.py)."""
        async def compute() -> list[Version]:
            async with self.ctx.store.read() as r:
                return await versions.versions(self.ctx, r, cycle, framework, version)

        # Cached under the store's generation, one computation per burst (nodes/read_cache.py); callers
        # never change what they are given.
        return await self.ctx.cache.get(("versions", cycle, framework, version), compute, READ_TTL)

    async def held(self, cycle: str) -> list[Version]:
        """Every version of this node's own frameworks of ``cycle``, oldest first."""
        async with self.ctx.store.read() as r:
            rows = await r.frameworks.list(role="issued" if self.ctx.me.children else "received", cycle=cycle)
        return sorted((versions.decoded(self.ctx, row) for row in rows),
                      key=lambda v: (v.record.unit_class, v.record.version))

    async def scores(self, cycle: str, period: str | None = None) -> list[ScoreRecord]:
        async with self.ctx.store.read() as r:
            return await r.scores.list(cycle, period)

    async def rankings(self, cycle: str, period: str | None = None,
                       shown: Sequence[Version] | None = None) -> list[RankedUnit]:
        """Scores under the versions ``shown`` (default: in force), in ranking order per version and
        period; the units not assessed come last."""
        shown = await self.versions(cycle) if shown is None else shown
        order = {v.digest: n for n, v in enumerate(shown)}

        async def compute() -> list[RankedUnit]:
            ranked = [RankedUnit(s, json.loads(s.explanation), shown[order[s.framework_digest]])
                      for s in await self.scores(cycle, period) if s.framework_digest in order]
            return sorted(ranked, key=lambda r: (order[r.record.framework_digest], r.record.period, not r.assessed,
                                                 r.record.rank, r.record.unit))

        return await self.ctx.cache.get(("rankings", cycle, period, tuple(order)), compute, READ_TTL)

    async def values(self, node: str, cycle: str,
                     shown: Sequence[Version] | None = None) -> list[tuple[ResultRecord, FrameworkRef]]:
        """``node``'s values under the versions ``shown`` (default: in force), each with the framework
        it answers: this node's own values answer the framework each version pins, its children's the
        version itself."""
        shown = await self.versions(cycle) if shown is None else shown
        own = node == self.ctx.me.code
        answers = {ref.digest: ref for ref in ((v.own if own else v.ref) for v in shown)}

        async def compute() -> list[tuple[ResultRecord, FrameworkRef]]:
            async with self.ctx.store.read() as r:
                rows = await r.results.of_node(node, cycle)
            return [(row, answers[row.framework_digest]) for row in rows if row.framework_digest in answers]

        return await self.ctx.cache.get(("values", node, cycle, tuple(answers)), compute, READ_TTL)

    async def reviews(self, status: str, limit: int) -> list[BundleHeader]:
        async with self.ctx.store.read() as r:
            return await r.bundles.by_status(status, limit=limit)

    async def sync_status(self) -> dict[str, Any]:
        """What was sent, what JetStream acknowledged, what waits, and the last error — per direction.

        "acknowledged" means the stream stored it (durable), not that the receiver accepted it; the
        receiver's verdict is in its own audit log and in its status, per child."""
        ctx = self.ctx
        me = ctx.me
        async with ctx.store.read() as r:
            out_rows = await r.outbox.summary()
            children = await r.bundles.summary()

        def direction(subject: str) -> dict[str, Any]:
            counts = out_rows.get(subject, {"acknowledged": 0, "pending": 0, "last_sent_at": 0})
            when, error = ctx.health.send_errors.get(subject, (0, ""))
            return {"subject": subject, **counts, "last_error": error, "last_error_at": when}

        up = None if me.parent is None else {"parent": me.parent, **direction(me.results_subject())}
        down = None if not me.children else direction(me.cascade_subject())
        reported = await self.reports.reported_seqs() if self.reports is not None else {}
        kids = []
        for c in ctx.cfg.children:
            held = children.get(c.code, {"bundles": 0, "last_seq": 0, "last_at": 0, "rejected": 0})
            said = reported.get(c.code, 0)
            kids.append({"code": c.code, "name": c.name, **held, "reported_seq": said,
                         "missing": max(0, said - held["last_seq"])})
        transport = self.transport.last_error if self.transport is not None else ""
        connected = bool(self.transport is not None and self.transport.connected)
        return {"results_to_parent": up, "cascade_to_children": down, "from_children": kids,
                "nats_connected": connected, "transport_last_error": transport, "grpc_tls": ctx.cfg.tls is not None,
                "parent_heartbeat": await self.heartbeat_status(),
                "revocation_lists": {code: crl.version for code, crl in sorted(me.trust.lists.items())},
                "gave_up": list(ctx.health.gave_up),
                "report_to_parent": None if me.parent is None or self.reports is None else {
                    "last_sent_at": self.reports.last_sent_at, "last_error": self.reports.last_error},
                "descendants": await self.descendants()}

    async def descendants(self) -> list[dict[str, Any]]:
        """Per descendant, from the signed reports held: is its cascade current, lagging, refused or
        unreported, and what it holds against what its parent issued to it (sync/reports.py)."""
        if self.reports is None or not self.ctx.me.children:
            return []
        now = self.ctx.clock()
        stale_after = 3 * RESEND_EVERY * self.ctx.cfg.heartbeat_seconds
        return [{"node": d.node, "parent": d.parent, "state": d.state, "reported_at": d.reported_at,
                 "fresh": bool(d.reported_at and now - d.reported_at <= stale_after), "audit_seq": d.audit_seq,
                 "expected": [_ref(r) for r in d.expected], "held": [_ref(r) for r in d.held],
                 "refusals": [{"framework_digest": f.framework_digest, "code": f.code, "reason": f.reason,
                               "refused_at": f.refused_at} for f in d.refusals],
                 "division_lists_behind": [{"issuer": b.issuer, "expected_seq": b.expected, "held_seq": b.held}
                                           for b in d.lists_behind]}
                for d in await self.reports.states()]

    async def heartbeat_status(self) -> dict[str, Any] | None:
        """Whether the parent's signed heartbeat is current: if not, this node may be frozen on old data."""
        if self.ctx.me.parent is None or self.watch is None:
            return None
        p = self.watch.pulse
        return {"parent": self.ctx.me.parent, "issued_at": p.issued_at if p else 0,
                "expires_at": p.expires_at if p else 0, "fresh": bool(p and p.fresh(self.ctx.clock())),
                "missing_frameworks": await self.watch.missing_frameworks(), "last_error": self.watch.pulse_error,
                "returned": [{"bundle_id": b, "seq": seq, "reason": reason, "returned_at": at}
                             for b, seq, reason, at in (p.returned if p else ())]}

    async def warnings(self, cycle: str, period: str, shown: Sequence[Version] | None = None) -> list[dict[str, Any]]:
        """预警: each unit's reported (cumulative) value for ``period`` against what the period expects
        (aggregator/progress.py), under the versions ``shown`` (default: in force; only those this node issued count, their
        units being its children), each labelled with its version (``framework``)."""
        check_period(cycle, period)
        shown = await self.versions(cycle) if shown is None else shown
        out = []
        for v in shown:
            if v.record.role != "issued":
                continue
            fw = v.framework
            async with self.ctx.store.read() as r:
                raw = await r.results.values(cycle, period, v.digest)
            for unit in fw.units:
                for ind in fw.leaves():
                    value = raw.get(unit.code, {}).get(ind.code)
                    if value is None or ind.target_for(unit.code, unit.unit_class) is None:
                        continue
                    w = warn(ind, unit.code, parse_decimal(value, ind.code), period)
                    if w is None:  # not appraised in this period
                        continue
                    out.append({**w.explain(), "name": self.ctx.me.children.get(unit.code, unit.code),
                                "framework": label(v.ref)})
        return out

    async def repeated_grades(self, grade: str, years: int) -> list[str]:
        async with self.ctx.store.read() as r:
            rows = await r.scores.annual()
        history: dict[str, list[str]] = {}
        for row in rows:
            history.setdefault(row.unit, []).append(str(json.loads(row.explanation).get("grade", "")))
        return repeated_grade_flags(history, grade, years)


def _ref(r: Ref) -> dict[str, Any]:
    return {"issuer": r.issuer, "cycle": r.cycle, "class": r.unit_class, "version": r.version, "digest": r.digest}
