"""绩效报告 (feedback reports, issue 11): one report per unit per cycle, from this node's latest
publication that names the unit (nodes/feedback.py builds it, nodes/feedback_render.py renders it).

``report`` reads; ``generate`` makes the PDFs of every unit of the node's latest publication(s) of a
cycle (rendered in worker processes), stores each in ``feedback_reports`` with its sha256 and the
publication digest it was made from, and audits the batch (who, when, which publications, how many).
``stored_pdf`` answers the stored PDF while it was made from the publication still current, else
renders the current one on demand.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aggregator.errors import NotFound
from aggregator.framework import Framework
from nodes import feedback_render
from nodes.accounts import Principal
from nodes.feedback import BundleInfo, ClassView, Report, build, class_view
from nodes.repositories.feedback import StoredReport
from nodes.repositories.publications import PublicationRecord
from nodes.services.context import NodeContext, check_period, framework_of
from nodes.store import Tx
from sync import publication as pubs

Progress = Callable[[int, int, str], Any]  # (done, total, unit)


@dataclass(frozen=True)
class Generated:
    cycle: str
    period: str
    unit: str
    name: str
    publication: str
    sha256: str
    size: int


@dataclass(frozen=True)
class _Context:
    rec: PublicationRecord
    pub: pubs.Published
    fw: Framework
    history: list[pubs.Published]
    view: ClassView


def default_period(cycle: str, period: str | None) -> str:
    per = period or f"{cycle[:4]}-Y"
    check_period(cycle, per, hint=True)
    return per


_DECODED: dict[str, tuple[pubs.Published, ClassView | None]] = {}  # digest → decoded (immutable under its digest)


def _read(rec: PublicationRecord) -> pubs.Published:
    hit = _DECODED.get(rec.digest)
    if hit is None:
        if len(_DECODED) >= 64:
            _DECODED.clear()
        hit = _DECODED[rec.digest] = (pubs.read(rec.envelope), None)
    return hit[0]


def _view(rec: PublicationRecord, pub: pubs.Published, fw: Framework) -> ClassView:
    hit = _DECODED.get(rec.digest)
    if hit is not None and hit[1] is not None:
        return hit[1]
    view = class_view(pub, fw)
    _DECODED[rec.digest] = (pub, view)
    return view


class FeedbackService:
    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx

    # ------------------------------------------------------------------ reads

    async def publications(self, tx: Tx, cycle: str, period: str | None = None) -> list[PublicationRecord]:
        """The latest version of each of this node's own publications of ``cycle`` (and ``period``)."""
        rows = [p for p in await tx.publications.current(self.ctx.me.code, cycle=cycle) if p.role == "own"]
        return sorted((p for p in rows if period is None or p.period == period), key=lambda p: (p.period, p.unit_class))

    async def units(self, tx: Tx, cycle: str, period: str | None = None) -> list[tuple[PublicationRecord, str, str]]:
        """(publication, unit, name) for every unit of the current publications."""
        out: list[tuple[PublicationRecord, str, str]] = []
        for p in await self.publications(tx, cycle, default_period(cycle, period)):
            out.extend((p, u.unit, u.name) for u in _read(p).units)
        return out

    async def _publication_of(self, tx: Tx, cycle: str, period: str, unit: str) -> PublicationRecord:
        for p in await self.publications(tx, cycle, period):
            if _read(p).unit(unit) is not None:
                return p
        raise NotFound(f"{cycle} 年度 {period} 尚无包含单位 {unit[:16]} 的公布结果，公示或终审后才有绩效报告 "
                       "(no publication names this unit yet: reports follow publication)", code="feedback.no_publication")

    async def report(self, tx: Tx, cycle: str, period: str | None, unit: str) -> Report:
        per = default_period(cycle, period)
        return await self._report(tx, await self._publication_of(tx, cycle, per, unit), unit)

    async def _context(self, tx: Tx, rec: PublicationRecord) -> _Context:
        """What every unit's report of one publication shares, read and decoded once."""
        pub = _read(rec)
        fw_row = await tx.frameworks.get(rec.framework_digest)
        if fw_row is None:  # not reached: a publication is made from a framework held here
            raise NotFound("公布结果所依据的指标体系不在本节点 (the publication's framework is not held)",
                           code="feedback.framework_missing")
        fw = framework_of(fw_row)
        history = [_read(o) for o in await tx.publications.current(self.ctx.me.code)
                   if o.role == "own" and o.cycle < rec.cycle and o.period.endswith(rec.period[4:])]
        return _Context(rec, pub, fw, history, _view(rec, pub, fw))

    async def _report(self, tx: Tx, rec: PublicationRecord, unit: str, shared: _Context | None = None) -> Report:
        c = shared or await self._context(tx, rec)
        fig = c.pub.unit(unit)
        bundles: dict[str, BundleInfo] = {}
        for v in fig.values if fig is not None else ():
            if v.bundle_id and v.bundle_id not in bundles:
                b = await tx.bundles.get(v.bundle_id)
                if b is not None:
                    bundles[v.bundle_id] = BundleInfo(b.id, b.node, b.seq, b.received_at, b.status, b.reviewer,
                                                      b.reviewed_at)
        return build(c.pub, c.fw, unit, history=[h for h in c.history if h.unit(unit) is not None],
                     appeals=await tx.feedback.appeals(rec.cycle, unit, rec.period),
                     rectifications=await tx.feedback.rectifications(unit, rec.cycle), bundles=bundles,
                     node_name=self.ctx.me.name, now=self.ctx.clock(), view=c.view)

    async def stored(self, tx: Tx, cycle: str, period: str | None = None) -> list[StoredReport]:
        return await tx.feedback.list(cycle, default_period(cycle, period))

    async def pdf(self, cycle: str, period: str | None, unit: str) -> tuple[bytes, str]:
        """The PDF and where it came from: ``stored`` (made from the current publication) or ``rendered``."""
        per = default_period(cycle, period)
        async with self.ctx.store.read() as r:
            rec = await self._publication_of(r, cycle, per, unit)
            found = await r.feedback.pdf(cycle, per, unit)
            if found is not None and found[0].publication == rec.digest:
                return found[1], "stored"
            report = await self._report(r, rec, unit)
        return await asyncio.to_thread(feedback_render.pdf, report), "rendered"

    # ------------------------------------------------------------------ changes

    async def generate(self, who: Principal, cycle: str, period: str | None = None, *,
                       units: list[str] | None = None, progress: Progress | None = None,
                       workers: int = 0) -> list[Generated]:
        """Every unit's PDF of the node's current publication(s) of ``cycle`` (and ``period``; default
        the year), stored and audited. ``units``: only these."""
        per = default_period(cycle, period)
        async with self.ctx.store.read() as r:
            recs = await self.publications(r, cycle, per)
            if not recs:
                raise NotFound(f"{cycle} 年度 {per} 尚无公布结果，请先公示 (nothing published yet: publicise first)",
                               code="feedback.nothing_published")
            todo: list[tuple[PublicationRecord, Report]] = []
            for rec in recs:
                shared = await self._context(r, rec)
                for u in shared.pub.units:
                    if units is None or u.unit in units:
                        todo.append((rec, await self._report(r, rec, u.unit, shared)))
        total = len(todo)
        if progress is not None:
            progress(0, total, "")
        loop = asyncio.get_running_loop()

        def tick(done: int, rep: Report) -> None:
            if progress is not None:
                loop.call_soon_threadsafe(progress, done, total, rep.unit)

        pdfs = await asyncio.to_thread(feedback_render.render_many, [rep for _, rep in todo], workers=workers,
                                       progress=tick)
        now = self.ctx.clock()
        out = []
        async with self.ctx.store.tx() as tx:
            for (rec, rep), data in zip(todo, pdfs, strict=True):
                digest = hashlib.sha256(data).hexdigest()
                await tx.feedback.put(cycle=rec.cycle, period=rec.period, unit=rep.unit, publication=rec.digest,
                                      pdf=data, sha256=digest, generated_at=now, generated_by=who.actor)
                out.append(Generated(rec.cycle, rec.period, rep.unit, rep.name, rec.digest, digest, len(data)))
            await tx.audit.append(who.actor, "feedback.generate", f"{cycle}/{per}", {
                "cycle": cycle, "period": per, "publications": sorted({rec.digest for rec, _ in todo}),
                "reports": {g.unit: g.sha256 for g in out}}, now)
        await asyncio.sleep(0)  # let the last progress call run
        return out
