"""Rectification (整改) and public comments (公众评议): the items a unit must put right, from its weak
indicators in a publication, from a decided appeal, from a public comment or by the office's hand;
the unit's measures and closure evidence, the office's acceptance, overdue flags, and carrying open
items into next year's task book; comments from the public routed to the unit they are about, each
to be answered (对号入座、对题作答), hidden by the office when abusive, or turned into an item.

The rules (states, weak indicators, checks, the public form's token) are the pure
``nodes/rectification.py``. Who may do what is decided by the gateway's guards; this service lists
only what a person's scope covers and records every change in the audit log under their login.
Publications are read through ``tx.publications`` and ``sync.publication.read`` only.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

from aggregator.errors import BadInput, Conflict, NotFound, Refused
from nodes import rectification as rules
from nodes.accounts import Principal
from nodes.intake import evidence_file
from nodes.repositories.rectification import CommentRecord, RectificationRecord
from nodes.services.context import NodeContext, framework_of
from nodes.store import Tx
from sync import publication as pubs
from sync.ports import AuditEntry, Occurrence

CST = 8 * 3600
PER_SENDER_HOUR = 5  # public comments one address may send in an hour
PER_UNIT_DAY = 200  # public comments one unit may receive in a day (a flood beyond waits for tomorrow)
PUBLIC = "public"  # the audit actor of what the public does


class RateLimited(Refused):
    """Too many public comments from one address, or about one unit (the gateway answers 429)."""

    default_code = "comments.rate_limited"


@dataclass(frozen=True)
class Item:
    """An item as pages and the API show it."""

    record: RectificationRecord
    unit_name: str
    overdue: bool


@dataclass(frozen=True)
class Todo:
    """What /home lists for the person: comments waiting for an answer, open and overdue items."""

    unanswered: int
    open: int
    overdue: int
    review: int  # closure requested, waiting for the office


def _created(who: Principal, r: RectificationRecord) -> AuditEntry:
    return (who.actor, "rectification.create", str(r.id),
            {"cycle": r.cycle, "unit": r.unit, "source": r.source, "ref": r.ref, "title": r.title, "owner": r.owner,
             "deadline": r.deadline, "carried_from": r.carried_from})


def current_cycle(now: int) -> str:
    return datetime.fromtimestamp(now + CST, UTC).strftime("%Y")


class RectificationService:
    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx
        raw = ctx.cfg.key.private_bytes_raw()
        self._key = hashlib.sha256(b"fedappraisal public comments\0" + raw).digest()

    # ------------------------------------------------------------------ units

    def units(self) -> dict[str, str]:
        """The units of this node the office appraises (its children and departments): code → name."""
        cfg = self.ctx.cfg
        return {**{c.code: c.name for c in cfg.children}, **{d.code: d.name for d in cfg.departments}}

    def unit_name(self, code: str) -> str:
        return self.units().get(code, code)

    def _unit(self, code: str) -> str:
        if code not in self.units():
            raise NotFound(f"单位 {code[:32]} 不是本节点的被考评单位 (not a unit of this node)", code="rectification.unit")
        return code

    # ------------------------------------------------------------------ reads

    def _view(self, r: RectificationRecord, now: int) -> Item:
        return Item(r, self.unit_name(r.unit), rules.overdue(r.status, r.deadline, now))

    async def items(self, who: Principal, *, cycle: str | None = None, unit: str | None = None,
                    status: str | None = None) -> list[Item]:
        now = self.ctx.clock()
        async with self.ctx.store.read() as r:
            rows = await r.rectification.items(cycle=cycle, units=[unit] if unit else None,
                                               statuses=[status] if status else None)
        return [self._view(x, now) for x in rows if who.covers_unit(x.unit)]

    async def item(self, item: int) -> Item:
        """One item, whoever asks (the gateway checks the asker's scope against its unit)."""
        async with self.ctx.store.read() as r:
            found = await r.rectification.get(item)
        if found is None:
            raise NotFound(f"没有整改事项 {item} (no such rectification item)", code="rectification.not_found")
        return self._view(found, self.ctx.clock())

    async def tasks_of(self, cycle: str, who: Principal) -> list[Item]:
        """The rectification tasks of a year's task book: the items carried into ``cycle``."""
        now = self.ctx.clock()
        async with self.ctx.store.read() as r:
            rows = await r.rectification.items(cycle=cycle, carried_only=True)
        return [self._view(x, now) for x in rows if who.covers_unit(x.unit)]

    async def todo(self, who: Principal) -> Todo:
        now = self.ctx.clock()
        async with self.ctx.store.read() as r:
            waiting = [c for c in await r.rectification.comments(statuses=["new"]) if who.covers_unit(c.unit)]
            live = [x for x in await r.rectification.items(statuses=[rules.OPEN, rules.REVIEW])
                    if who.covers_unit(x.unit)]
        return Todo(unanswered=len(waiting), open=sum(1 for x in live if x.status == rules.OPEN),
                    overdue=sum(1 for x in live if rules.overdue(x.status, x.deadline, now)),
                    review=sum(1 for x in live if x.status == rules.REVIEW))

    async def evidence_file(self, item: int, sha256: str) -> tuple[str, str, bytes]:
        """(name, content type, bytes) of one closure evidence file of the item (the gateway checks scope)."""
        found = (await self.item(item)).record
        async with self.ctx.store.read() as r:
            held = await r.intake.attachment(sha256) if sha256 in found.evidence else None
        if held is None:
            raise NotFound("该整改事项没有这个佐证材料 (no such evidence file on this item)", code="rectification.no_evidence")
        meta, data = held
        return meta.name, meta.content_type, data

    async def weak(self, cycle: str) -> list[tuple[rules.Weak, str]]:
        """The weak indicators of the current publication of every class in ``cycle``, with each
        indicator's name: what the office may turn into items in one go."""
        async with self.ctx.store.read() as r:
            return await self._weak(r, cycle)

    async def _weak(self, tx: Tx, cycle: str) -> list[tuple[rules.Weak, str]]:
        current = [p for p in await tx.publications.current(self.ctx.me.code, cycle=cycle) if p.role == "own"]
        annual = {p.unit_class: p for p in current if p.period == f"{cycle}-Y"}
        chosen = list(annual.values()) or current
        if not chosen:
            raise NotFound(f"{cycle} 年度尚无公布结果（公示或终审），无法找出薄弱指标 "
                           "(nothing published for this cycle yet: no weak indicators to find)",
                           code="rectification.no_publication")
        out: list[tuple[rules.Weak, str]] = []
        for p in sorted(chosen, key=lambda p: (p.unit_class, p.period)):
            fw_row = await tx.frameworks.get(p.framework_digest)
            fw = framework_of(fw_row) if fw_row is not None else None
            for w in rules.weak_indicators(pubs.read(p.envelope)):
                ind = fw.indicator(w.indicator) if fw is not None else None
                out.append((w, ind.name if ind is not None else ""))
        return out

    # ------------------------------------------------------------------ creating items

    async def _add(self, tx: Tx, who: Principal, *, cycle: str, unit: str, source: str, ref: str, title: str,
                   owner: str, deadline: int, measure: str = "", carried_from: int = 0) -> RectificationRecord:
        now = self.ctx.clock()
        item = await tx.rectification.add(RectificationRecord(
            id=0, cycle=cycle, unit=unit, source=source, ref=ref, title=title, measure=measure, owner=owner or unit,
            deadline=deadline, status=rules.OPEN, evidence=(), closure="", created_by=who.actor, created_at=now,
            closed_by="", closed_at=0, carried_from=carried_from))
        await tx.audit.append_many([_created(who, item)], now)
        return item

    async def create(self, who: Principal, *, cycle: str, unit: str, title: str, deadline: int,
                     owner: str = "") -> RectificationRecord:
        """An item the office sets by hand (source ``office``)."""
        self._unit(unit)
        title = rules.text(title, "整改事项", rules.MAX_TITLE)
        owner = rules.text(owner, "责任人", 64, required=False)
        rules.deadline(deadline, self.ctx.clock())
        async with self.ctx.store.tx() as tx:
            return await self._add(tx, who, cycle=cycle, unit=unit, source="office", ref="", title=title,
                                   owner=owner, deadline=deadline)

    async def from_weak(self, who: Principal, *, cycle: str, deadline: int) -> list[RectificationRecord]:
        """One item per weak indicator of the current publication (``weak``) of a unit in ``who``'s
        scope, except those already made."""
        rules.deadline(deadline, self.ctx.clock())
        now = self.ctx.clock()
        async with self.ctx.store.tx() as tx:
            held = {(x.unit, x.ref) for x in await tx.rectification.items(cycle=cycle, source="weak")}
            made = await tx.rectification.add_many([RectificationRecord(
                id=0, cycle=cycle, unit=w.unit, source="weak", ref=w.indicator, title=w.title(name), measure="",
                owner=w.unit, deadline=deadline, status=rules.OPEN, evidence=(), closure="", created_by=who.actor,
                created_at=now, closed_by="", closed_at=0, carried_from=0)
                for w, name in await self._weak(tx, cycle)
                if who.covers_unit(w.unit) and (w.unit, w.indicator) not in held])
            await tx.audit.append_many([_created(who, r) for r in made], now)
        return made

    async def from_appeal(self, who: Principal, *, appeal: int, deadline: int, title: str = "") -> RectificationRecord:
        """An item answering a decided appeal (source ``appeal``, ref its id)."""
        rules.deadline(deadline, self.ctx.clock())
        async with self.ctx.store.tx() as tx:
            a = await tx.rectification.appeal(appeal)
            if a is None:
                raise NotFound(f"没有申诉 {appeal} (no such appeal)", code="rectification.no_appeal")
            if a.status not in rules.DECIDED_APPEALS:
                raise Conflict(f"申诉 {appeal} 尚未作出复核决定，不能据此整改 (the appeal is not decided yet)",
                               code="rectification.appeal_open")
            if await tx.rectification.find(a.cycle, a.unit, "appeal", str(appeal)) is not None:
                raise Conflict(f"申诉 {appeal} 已建整改事项 (an item for this appeal exists)", code="rectification.duplicate")
            what = f"{a.target} {a.indicator}".strip()
            text = rules.text(title, "整改事项", rules.MAX_TITLE, required=False) or (
                f"申诉复核（{what}）：{a.decision}"[:rules.MAX_TITLE])
            return await self._add(tx, who, cycle=a.cycle, unit=a.unit, source="appeal", ref=str(appeal), title=text,
                                   owner=a.unit, deadline=deadline)

    async def appeal_unit(self, appeal: int) -> str:
        """The unit an appeal is from (the gateway checks the asker's scope before making an item of it)."""
        async with self.ctx.store.read() as r:
            a = await r.rectification.appeal(appeal)
        if a is None:
            raise NotFound(f"没有申诉 {appeal} (no such appeal)", code="rectification.no_appeal")
        return a.unit

    async def from_comment(self, who: Principal, *, comment: int, deadline: int, title: str = "") -> RectificationRecord:
        """An item from a public comment (source ``comment``); the comment names the item it became."""
        rules.deadline(deadline, self.ctx.clock())
        async with self.ctx.store.tx() as tx:
            c = await tx.rectification.comment(comment)
            if c is None:
                raise NotFound(f"没有评议意见 {comment} (no such comment)", code="comments.not_found")
            if c.rectification:
                raise Conflict(f"评议意见 {comment} 已转为整改事项 {c.rectification} (already an item)",
                               code="comments.already_item")
            text = rules.text(title, "整改事项", rules.MAX_TITLE, required=False) or (
                f"公众评议：{c.body}"[:rules.MAX_TITLE])
            item = await self._add(tx, who, cycle=c.cycle, unit=c.unit, source="comment", ref=str(comment), title=text,
                                   owner=c.unit, deadline=deadline)
            await tx.rectification.set_comment(comment, rectification=item.id)
        return item

    async def carry(self, who: Principal, *, cycle: str, deadline: int) -> list[RectificationRecord]:
        """Every open item of ``cycle`` (and every one waiting for acceptance) becomes an item of the
        next cycle naming it (``carried_from``), to appear in that year's task book; the old one is
        ``carried``."""
        rules.deadline(deadline, self.ctx.clock())
        nxt = rules.next_cycle(cycle)
        now = self.ctx.clock()
        async with self.ctx.store.tx() as tx:
            olds = [old for old in await tx.rectification.items(cycle=cycle, statuses=[rules.OPEN, rules.REVIEW])
                    if who.covers_unit(old.unit)]
            for old in olds:
                rules.check_move(old.status, rules.CARRIED, old.id)
            made = await tx.rectification.add_many([RectificationRecord(
                id=0, cycle=nxt, unit=old.unit, source="carried", ref=str(old.id), title=old.title, measure=old.measure,
                owner=old.owner, deadline=deadline, status=rules.OPEN, evidence=(), closure="", created_by=who.actor,
                created_at=now, closed_by="", closed_at=0, carried_from=old.id) for old in olds])
            await tx.rectification.set_many([old.id for old in olds], status=rules.CARRIED, closed_by=who.actor,
                                            closed_at=now)
            entries: list[AuditEntry] = []
            for new in made:
                entries += [_created(who, new), (who.actor, "rectification.carry", str(new.carried_from),
                                                 {"cycle": cycle, "into": nxt, "item": new.id})]
            await tx.audit.append_many(entries, now)
        return made

    # ------------------------------------------------------------------ the unit's work, the office's acceptance

    async def _change(self, tx: Tx, item: int) -> RectificationRecord:
        found = await tx.rectification.get(item)
        if found is None:
            raise NotFound(f"没有整改事项 {item} (no such rectification item)", code="rectification.not_found")
        return found

    async def set_measure(self, who: Principal, item: int, measure: str) -> None:
        """The unit's 整改措施 and progress (while the item is open)."""
        measure = rules.text(measure, "整改措施")
        async with self.ctx.store.tx() as tx:
            old = await self._change(tx, item)
            if old.status != rules.OPEN:
                raise Conflict(f"整改事项 {item} 当前为「{rules.STATUS_ZH[old.status]}」，不能修改措施 "
                               "(only an open item's measure may change)", code="rectification.not_open")
            await tx.rectification.set(item, measure=measure)
            await tx.audit.append(who.actor, "rectification.measure", str(item),
                                  {"unit": old.unit, "before": old.measure, "after": measure}, self.ctx.clock())

    async def attach(self, who: Principal, item: int, filename: str, data: bytes) -> str:
        """A closure evidence file, kept in the attachment store under its SHA-256 (as intake's 台账)."""
        f = evidence_file(filename, data)
        name, sha = f.name, f.sha256
        now = self.ctx.clock()
        async with self.ctx.store.tx() as tx:
            old = await self._change(tx, item)
            if old.status != rules.OPEN:
                raise Conflict(f"整改事项 {item} 当前为「{rules.STATUS_ZH[old.status]}」，不能再上传佐证材料 "
                               "(evidence is added while the item is open)", code="rectification.evidence_closed")
            shas = rules.evidence([*old.evidence, sha])
            await tx.intake.put_attachment(sha, name, f.content_type, data, who.actor, now)
            await tx.rectification.set(item, evidence=shas)
            await tx.audit.append(who.actor, "rectification.evidence", str(item),
                                  {"unit": old.unit, "sha256": sha, "name": name, "size": len(data)}, now)
        return sha

    async def request_closure(self, who: Principal, item: int, closure: str, evidence: list[str] | None = None) -> None:
        """The unit says the item is put right: how (``closure``), with evidence on the item (files
        uploaded through :meth:`attach`, or sha256s of files the node holds); the office accepts it."""
        closure = rules.text(closure, "整改情况说明")
        now = self.ctx.clock()
        async with self.ctx.store.tx() as tx:
            old = await self._change(tx, item)
            rules.check_move(old.status, rules.REVIEW, item)
            shas = rules.evidence([*old.evidence, *(evidence or ())])
            for sha in shas:
                if await tx.intake.attachment(sha) is None:
                    raise BadInput(f"佐证材料 {sha[:12]}… 不在本节点，请先上传 (evidence file not held: upload it first)",
                                   code="rectification.evidence_unknown")
            if not shas:
                raise BadInput("申请销号须附整改佐证材料 (closure needs at least one evidence file)",
                               code="rectification.evidence_missing")
            if not old.measure:
                raise BadInput("申请销号前请先填写整改措施 (write the measure before asking for closure)",
                               code="rectification.measure_missing")
            await tx.rectification.set(item, status=rules.REVIEW, closure=closure, evidence=shas)
            await tx.audit.append(who.actor, "rectification.request", str(item),
                                  {"unit": old.unit, "closure": closure, "evidence": shas}, now)

    async def accept(self, who: Principal, item: int) -> None:
        """The office accepts the closure (销号)."""
        now = self.ctx.clock()
        async with self.ctx.store.tx() as tx:
            old = await self._change(tx, item)
            rules.check_move(old.status, rules.DONE, item)
            await tx.rectification.set(item, status=rules.DONE, closed_by=who.actor, closed_at=now)
            await tx.audit.append(who.actor, "rectification.accept", str(item),
                                  {"unit": old.unit, "closure": old.closure, "evidence": list(old.evidence)}, now)

    async def reopen(self, who: Principal, item: int, reason: str) -> None:
        """The office does not accept the closure: the item is open again, with the reason."""
        reason = rules.text(reason, "退回理由", 500)
        async with self.ctx.store.tx() as tx:
            old = await self._change(tx, item)
            rules.check_move(old.status, rules.OPEN, item)
            await tx.rectification.set(item, status=rules.OPEN, closure=f"退回：{reason}")
            await tx.audit.append(who.actor, "rectification.reopen", str(item),
                                  {"unit": old.unit, "reason": reason, "closure": old.closure}, self.ctx.clock())

    # ------------------------------------------------------------------ public comments

    def form_token(self, unit: str) -> str:
        return rules.form_token(self._key, unit, self.ctx.clock())

    async def submit_comment(self, *, unit: str, body: str, contact: str, address: str, token: str,
                             trap: str = "") -> CommentRecord:
        """A comment from the public (no account). Refusals are committed (as audit counters) before
        they are raised; so is each accepted comment's count, not an entry each."""
        now = self.ctx.clock()
        self._unit(unit)
        sender = rules.sender_of(self._key, address)
        refusal: Exception | None = None
        code = "ok"
        try:
            if trap:
                raise BadInput("提交未被接受 (not accepted)", code="comments.trap")
            rules.check_form_token(self._key, unit, token, now)
            body, contact = rules.comment_body(body), rules.contact(contact)
        except BadInput as exc:
            refusal, code = exc, exc.code.split(".", 1)[1]
        async with self.ctx.store.tx() as tx:
            if refusal is None:
                if await tx.rectification.count_comments(since=now - 3600, sender=sender) >= PER_SENDER_HOUR:
                    code = "rate_sender"
                    refusal = RateLimited(f"提交过于频繁：每个地址每小时至多 {PER_SENDER_HOUR} 条，请稍后再试 "
                                          f"(at most {PER_SENDER_HOUR} comments an hour from one address)",
                                          code="comments.rate_sender")
                elif await tx.rectification.count_comments(since=now - 86400, unit=unit) >= PER_UNIT_DAY:
                    code = "rate_unit"
                    refusal = RateLimited(f"该单位今日收到的意见已达上限 {PER_UNIT_DAY} 条，请明日再提交 "
                                          f"(the unit has had {PER_UNIT_DAY} comments today; try tomorrow)",
                                          code="comments.rate_unit")
            action = "comments.received" if refusal is None else "comments.refused"
            await tx.audit.record([Occurrence(actor=PUBLIC, action=action, subject=unit, sender=f"public:{sender[:16]}",
                                              code=code, detail={"unit": unit, "reason": code})],
                                  now, self.ctx.limits.audit_repeat_seconds)
            if refusal is None:
                return await tx.rectification.add_comment(CommentRecord(
                    id=0, cycle=current_cycle(now), unit=unit, body=body, contact=contact, sender=sender,
                    created_at=now, status="new", answer="", answered_by="", answered_at=0, rectification=0))
        raise refusal

    async def comments(self, who: Principal, *, cycle: str | None = None, status: str | None = None,
                       limit: int = 500) -> list[CommentRecord]:
        async with self.ctx.store.read() as r:
            rows = await r.rectification.comments(cycle=cycle, statuses=[status] if status else None)
        return [c for c in rows if who.covers_unit(c.unit)][:limit]

    async def comment(self, comment: int) -> CommentRecord:
        """One comment, whoever asks (the gateway checks the asker's scope against its unit)."""
        async with self.ctx.store.read() as r:
            found = await r.rectification.comment(comment)
        if found is None:
            raise NotFound(f"没有评议意见 {comment} (no such comment)", code="comments.not_found")
        return found

    async def answer(self, who: Principal, comment: int, answer: str) -> None:
        """The unit's answer (对题作答); a later answer replaces it, both audited."""
        answer = rules.text(answer, "答复")
        now = self.ctx.clock()
        async with self.ctx.store.tx() as tx:
            c = await tx.rectification.comment(comment)
            if c is None:
                raise NotFound(f"没有评议意见 {comment} (no such comment)", code="comments.not_found")
            if c.status == "hidden":
                raise Conflict(f"评议意见 {comment} 已被屏蔽，无需答复 (the comment is hidden)", code="comments.hidden")
            await tx.rectification.set_comment(comment, status="answered", answer=answer, answered_by=who.actor,
                                               answered_at=now)
            await tx.audit.append(who.actor, "comments.answer", str(comment),
                                  {"unit": c.unit, "before": c.answer, "after": answer}, now)

    async def hide(self, who: Principal, comment: int, reason: str) -> None:
        """The office hides an abusive comment (it is kept, audited, never shown or counted as unanswered)."""
        reason = rules.text(reason, "屏蔽理由", 500)
        async with self.ctx.store.tx() as tx:
            c = await tx.rectification.comment(comment)
            if c is None:
                raise NotFound(f"没有评议意见 {comment} (no such comment)", code="comments.not_found")
            await tx.rectification.set_comment(comment, status="hidden")
            await tx.audit.append(who.actor, "comments.hide", str(comment),
                                  {"unit": c.unit, "reason": reason, "was": c.status}, self.ctx.clock())

    async def answered(self, cycle: str, unit: str) -> list[CommentRecord]:
        """For the public site: the unit's answered comments of ``cycle`` (question and answer; the
        contact and sender are not for showing), newest first."""
        async with self.ctx.store.read() as r:
            rows = await r.rectification.comments(cycle=cycle, units=[unit], statuses=["answered"])
        return [CommentRecord(id=c.id, cycle=c.cycle, unit=c.unit, body=c.body, contact="", sender="",
                              created_at=c.created_at, status=c.status, answer=c.answer, answered_by="",
                              answered_at=c.answered_at, rectification=c.rectification) for c in rows]
