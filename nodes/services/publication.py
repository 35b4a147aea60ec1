"""Publication (公示 → 终审): what the office publishes of a cycle's results, and when (docs/design.md §3.9).

Computed scores are internal. The office opens a publicity window (公示) for one of its frameworks
and a period: the node scores every unit afresh from the values it holds, signs the result as a
:class:`sync.publication.Published` of state ``publicity`` and keeps it with its proof. The
evaluated units see it (and the public, if the office says so) and may appeal while the window is
open. A correction during the window is published as a new publicity version naming the old one.
After the window closes and every appeal is decided, the office finalises: a new version of state
``final``, scored afresh again, frozen and sent up with the node's next report. A later change is a
revision: another final version, with a reason; every version stays held and visible to auditors.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from aggregator.errors import BadInput, Conflict, NotFound
from aggregator.framework import FrameworkRef
from aggregator.numbers import parse_decimal
from nodes.accounts import Principal
from nodes.repositories.publications import PublicationRecord
from nodes.services.context import NodeContext, check_period, framework_of
from nodes.store import Tx
from sync import publication as pubs
from sync.approvals import Source, attach
from sync.codec import bundle_from_message
from sync.envelope import EnvelopeError
from sync.ports import FrameworkRecord

MAX_WINDOW = 90 * 86400  # a publicity window longer than a quarter is a typing error
MAX_REASON = 1000
# Called in the publishing transaction with each new version (the appeals service fills corrected appeals).
OnPublish = Callable[[Tx, Principal, PublicationRecord], Awaitable[None]]


class PublicationService:
    def __init__(self, ctx: NodeContext, on_publish: Sequence[OnPublish] = ()) -> None:
        self.ctx = ctx
        self.on_publish = tuple(on_publish)

    # ------------------------------------------------------------------ reads

    async def frameworks(self, tx: Tx, cycle: str) -> list[FrameworkRecord]:
        """This node's frameworks it can publish results of: those it issued and its departments'."""
        rows = [*await tx.frameworks.list(role="issued", cycle=cycle), *await tx.frameworks.list(role="internal", cycle=cycle)]
        latest: dict[str, FrameworkRecord] = {}
        for r in rows:
            if r.unit_class not in latest or r.version > latest[r.unit_class].version:
                latest[r.unit_class] = r
        return [latest[k] for k in sorted(latest)]

    async def history(self, tx: Tx, cycle: str, period: str, unit_class: str) -> list[PublicationRecord]:
        return await tx.publications.list(node=self.ctx.me.code, cycle=cycle, period=period, unit_class=unit_class)

    async def visible(self, tx: Tx, who: Principal | None, *, cycle: str | None = None) -> list[PublicationRecord]:
        """What ``who`` may see of this node's publications: per (cycle, period, class) the latest version,
        if ``who`` may see it. The public sees final versions and publicity the office made public; a
        signed-in person with publication.view also sees publicity; interim results never."""
        # Only ever the latest version: a publicity version made public and then corrected by one the office
        # kept internal is not shown to the public any more (it would be a superseded ranking).
        return [rows[-1] for rows in _grouped(await tx.publications.list(node=self.ctx.me.code, cycle=cycle, role="own"))
                if _may_see(who, rows[-1])]

    async def get_visible(self, tx: Tx, who: Principal | None, digest: str) -> PublicationRecord:
        """One version by digest: the latest visible ones to everyone allowed, earlier ones to auditors."""
        p = await tx.publications.get(digest)
        if p is None or p.role != "own" or not _may_see(who, p):
            raise NotFound("没有这份公布结果 (no such publication)", code="publication.not_found")
        if who is None or not who.can("audit.read"):
            latest = [v for v in await self.visible(tx, who, cycle=p.cycle)
                      if (v.period, v.unit_class) == (p.period, p.unit_class)]
            if not latest or latest[0].digest != p.digest:
                raise NotFound("这份公布结果已被新版本取代，仅审计人员可见 (superseded: visible to auditors only)",
                               code="publication.superseded")
        return p

    # ------------------------------------------------------------------ changes

    async def publicise(self, tx: Tx, who: Principal, *, cycle: str, period: str, unit_class: str, opens_at: int,
                        closes_at: int, public: bool, reason: str = "") -> PublicationRecord:
        """Open (or re-open with corrected figures) the publicity window of one framework's results."""
        now = self.ctx.clock()
        check_period(cycle, period)
        if not 0 < closes_at - opens_at <= MAX_WINDOW or closes_at <= now:
            raise BadInput("公示期须在未来结束，且长度在 90 天以内 (the window must end in the future and last at most 90 days)",
                           code="publication.window")
        row = await self._framework(tx, cycle, unit_class)
        last = await tx.publications.latest(self.ctx.me.code, cycle, period, unit_class)
        if last is not None and last.state == pubs.FINAL:
            raise Conflict("结果已终审公布；如需更改，请发布修订版本 (final already: publish a revision)",
                           code="publication.already_final")
        if last is not None and not reason.strip():
            raise BadInput("重新公示须说明原因 (a new publicity version needs a reason)", code="publication.reason")
        return await self._publish(tx, who, row, period, pubs.PUBLICITY, last, reason, opens_at, closes_at, public, now)

    async def finalise(self, tx: Tx, who: Principal, *, cycle: str, period: str, unit_class: str,
                       reason: str = "") -> PublicationRecord:
        now = self.ctx.clock()
        last = await tx.publications.latest(self.ctx.me.code, cycle, period, unit_class)
        if last is None:
            raise Conflict("尚未公示，不能终审 (publicise before finalising)", code="publication.not_publicised")
        if last.state == pubs.FINAL:
            raise Conflict("已终审；如需更改，请发布修订版本 (final already: publish a revision)",
                           code="publication.already_final")
        if now < last.closes_at:
            raise Conflict("公示期尚未结束，不能终审 (the publicity window is still open)", code="publication.window_open")
        history = [p.digest for p in await self.history(tx, cycle, period, unit_class)]
        undecided = await tx.publications.open_appeals(history)
        if undecided:
            raise Conflict(f"尚有 {undecided} 件申诉未决定 (appeals still open)", code="publication.appeals_open")
        row = await self._framework(tx, cycle, unit_class)
        return await self._publish(tx, who, row, period, pubs.FINAL, last, reason or "终审 (final)", last.opens_at,
                                   last.closes_at, True, now)

    async def revise(self, tx: Tx, who: Principal, *, cycle: str, period: str, unit_class: str,
                     reason: str) -> PublicationRecord:
        now = self.ctx.clock()
        last = await tx.publications.latest(self.ctx.me.code, cycle, period, unit_class)
        if last is None or last.state != pubs.FINAL:
            raise Conflict("只有终审结果才能修订 (only final results are revised)", code="publication.not_final")
        if not reason.strip():
            raise BadInput("修订须说明原因 (a revision needs a reason)", code="publication.revision_reason")
        row = await self._framework(tx, cycle, unit_class)
        return await self._publish(tx, who, row, period, pubs.FINAL, last, reason, last.opens_at, last.closes_at, True,
                                   now)

    # ------------------------------------------------------------------ inside

    async def _framework(self, tx: Tx, cycle: str, unit_class: str) -> FrameworkRecord:
        found = [r for r in await self.frameworks(tx, cycle) if r.unit_class == unit_class]
        if not found:
            raise NotFound(f"本节点没有 {cycle} 年度“{unit_class[:40]}”类的指标体系可公布 (no framework of this class)",
                           code="publication.no_framework")
        return found[0]

    async def _publish(self, tx: Tx, who: Principal, row: FrameworkRecord, period: str, state: str,
                       last: PublicationRecord | None, reason: str, opens_at: int, closes_at: int, public: bool,
                       now: int) -> PublicationRecord:
        me = self.ctx.me
        if len(reason) > MAX_REASON:
            raise BadInput(f"原因不能超过 {MAX_REASON} 字 (reason too long)", code="publication.reason_length")
        fw = framework_of(row)
        units = [u.code for u in fw.units]
        values: dict[str, list[pubs.Value]] = {}
        cited: dict[str, str] = {}  # bundle id → unit
        for r in await tx.results.rows(row.cycle, period, row.digest, units):
            source = "reported" if r.source == "reported" else "provided" if r.source == "provided" else "entered"
            bundle_id = r.bundle_id if source == "reported" else ""
            values.setdefault(r.node, []).append(pubs.Value(r.indicator, parse_decimal(r.value, r.indicator), source,
                                                            bundle_id))
            if bundle_id:
                cited[bundle_id] = r.node
        if not any(values.values()):
            raise Conflict(f"{row.cycle} 年度 {period} 尚无任何数值，无法公布 (no values to publish)",
                           code="publication.no_values")
        assessments = await tx.assessments.for_period(row.cycle, period)
        figures = pubs.figures(fw, {k: tuple(v) for k, v in values.items()},
                               {u: assessments[u] for u in units if u in assessments}, now, period)
        doc = pubs.Published(me.code, row.cycle, period, framework_ref(row), state,
                             1 if last is None else last.version + 1, "" if last is None else last.digest,
                             reason.strip(), now, now, opens_at, closes_at, public, figures)
        envelope, signed = pubs.sign_publication(me, doc)
        sources = []
        for bundle_id in sorted(cited):
            b = await tx.bundles.get(bundle_id)
            if b is None:  # a value that cites no bundle held: publishing it would not verify
                raise Conflict(f"{cited[bundle_id]} 的数值所依据的结果包 {bundle_id[:12]}… 不在本节点 "
                               "(the bundle a value rests on is not held)", code="publication.bundle_missing")
            # approved when it was taken (or reviewed), not now: the township's certificate is checked as of then
            sources.append(Source(b.node, b.id, bundle_from_message(b.message).seq, b.message, b.reviewer,
                                  b.reviewed_at or b.received_at))
        # the evidence exactly as received: its own evidence still carries the frameworks the level below
        # rolled up by, which the check needs two levels down (attach trims those for a parent)
        approvals, _ = attach(me, sources, now)
        evidence = [src.message for src in sources]
        previous = [p.envelope for p in reversed(await self.history(tx, row.cycle, period, row.unit_class))]
        proof = pubs.make_proof(envelope, me.chain, row.envelope, evidence, approvals, previous)
        try:  # never publish what anyone checking it would refuse
            pubs.verify_proof(proof, me.root)
        except EnvelopeError as exc:
            raise Conflict(f"公布结果的证明未通过核验，未公布：{exc} (the proof would not verify; nothing published)",
                           code="publication.proof_invalid") from None
        rec = PublicationRecord(signed.digest, me.code, row.cycle, period, row.unit_class, row.digest, doc.version,
                                state, public, opens_at, closes_at, doc.reason, "own", envelope, proof, now, who.actor)
        await tx.publications.add(rec)
        await tx.audit.append(who.actor, f"publication.{state}", signed.digest, {
            "cycle": row.cycle, "period": period, "class": row.unit_class, "framework": row.digest,
            "version": doc.version, "previous": doc.previous, "reason": doc.reason, "public": public,
            "window": [opens_at, closes_at], "units": len(figures)}, now)
        for hook in self.on_publish:
            await hook(tx, who, rec)
        self.ctx.wakeups.report.set()  # a final version rides up in the next report
        return rec


def framework_ref(row: FrameworkRecord) -> FrameworkRef:
    return FrameworkRef(row.issuer, row.cycle, row.unit_class, row.version, row.digest)


def _may_see(who: Principal | None, p: PublicationRecord) -> bool:
    if p.state == pubs.FINAL or p.public:
        return True
    return who is not None and who.can("publication.view")


def _grouped(rows: list[PublicationRecord]) -> list[list[PublicationRecord]]:
    groups: dict[tuple[str, str, str], list[PublicationRecord]] = {}
    for p in rows:
        groups.setdefault((p.cycle, p.period, p.unit_class), []).append(p)
    return list(groups.values())
