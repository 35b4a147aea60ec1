"""Appeals (申诉/复核, docs/parts/appeals.md): an evaluated unit appeals one figure of a publication
during its publicity window; the office assigns an eligible reviewer; the reviewer decides before the
deadline. The rules are the pure ``nodes/appeals.py``.

An upheld (or partly upheld) appeal against a VALUE is corrected through the normal entry and
approval path, not here: the decision returns that cell to its provider (the ``entries`` row set to
``returned`` with the appeal as the reason) and unlocks the provider's period, so the closed entry
window does not block the re-entry; the provider re-enters at /entry, a reviewer approves at /review
(nodes/services/intake.py), and the scores are recomputed as for any approval. When the office next
publishes the results (a new publicity version, or a revision), :meth:`AppealService.on_published`
fills each corrected appeal's ``after`` from that publication and audits ``appeal.corrected`` with
before, after and the appeal. Every step is audited under the person's login.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from aggregator.errors import BadInput, Conflict, NotFound
from nodes.accounts import Principal
from nodes.appeals import (
    CORRECTING,
    DECISIONS,
    OPEN,
    TARGET_ZH,
    Account,
    after_of,
    before_of,
    check_evidence,
    check_reason,
    check_target,
    decide_by,
    ineligible,
    may_decide,
)
from nodes.intake import evidence_file
from nodes.repositories.appeals import AppealRecord
from nodes.repositories.intake import EntryRecord, UnlockRecord
from nodes.repositories.publications import PublicationRecord
from nodes.repositories.users import UserRecord
from nodes.services.context import NodeContext, check_period
from nodes.store import Tx
from sync import publication as pubs

DAY = 86400


@dataclass(frozen=True)
class Upload:
    """An evidence file sent with the appeal form."""

    name: str
    data: bytes


@dataclass(frozen=True)
class Open:
    """A publication a unit may appeal now, with its figure."""

    publication: PublicationRecord
    figure: pubs.Figure


def _account(u: UserRecord) -> Account:
    return Account(u.login, u.roles, u.org, u.units, u.disabled)


def _sees_all(who: Principal) -> bool:
    return who.can("appeals.assign") or who.can("audit.read")


class AppealService:
    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx

    @property
    def decide_days(self) -> int:
        return self.ctx.limits.appeal_decide_days

    # ------------------------------------------------------------------ reads

    async def visible(self, who: Principal, *, cycle: str | None = None) -> list[AppealRecord]:
        """The appeals ``who`` may see: the office and auditors all; a reviewer those assigned to it; a
        unit those of its units."""
        async with self.ctx.store.read() as r:
            rows = await r.appeals.list(cycle=cycle)
        return [a for a in rows if self.may_see(who, a)]

    def may_see(self, who: Principal, a: AppealRecord) -> bool:
        if _sees_all(who):
            return True
        if who.can("appeals.decide") and a.reviewer == who.login:
            return True
        return who.can("appeals.file") and bool(who.units) and a.unit in who.units

    async def get(self, who: Principal, appeal_id: int) -> AppealRecord:
        async with self.ctx.store.read() as r:
            a = await r.appeals.get(appeal_id)
        if a is None or not self.may_see(who, a):
            raise NotFound(f"没有申诉 #{appeal_id}，或您无权查看 (no such appeal, or not yours to see)",
                           code="appeals.not_found")
        return a

    async def open_for(self, who: Principal) -> list[Open]:
        """The publications in their publicity window that publish one of ``who``'s units."""
        now = self.ctx.clock()
        out = []
        async with self.ctx.store.read() as r:
            for p in await r.publications.current(self.ctx.me.code):
                if p.role != "own" or not p.open_at(now):
                    continue
                doc = pubs.read(p.envelope)
                out += [Open(p, f) for f in doc.units if f.unit in who.units]
        return out

    async def eligible(self, appeal_id: int) -> list[str]:
        """The logins the office may assign to this appeal."""
        async with self.ctx.store.read() as r:
            a = await r.appeals.get(appeal_id)
            if a is None:
                return []
            providers = await self._providers(r, a)
            return [u.login for u in await r.users.all()
                    if ineligible(_account(u), a.unit, str(a.before.get("name", "")), providers) is None]

    async def evidence(self, who: Principal, appeal_id: int, sha256: str) -> tuple[str, str, bytes]:
        """One evidence file of an appeal, for whoever may see the appeal."""
        a = await self.get(who, appeal_id)
        async with self.ctx.store.read() as r:
            found = await r.intake.attachment(sha256) if sha256 in a.evidence else None
        if found is None:
            raise NotFound("该申诉没有这个附件 (no such evidence file of this appeal)", code="appeals.no_evidence")
        return found[0].name, found[0].content_type, found[1]

    async def todo(self, who: Principal) -> list[AppealRecord]:
        """What the home page lists: for a unit its appeals (open, and decided with the decision), for a
        reviewer those waiting for its decision, for the office those waiting for a reviewer."""
        out = []
        for a in await self.visible(who):
            mine = who.can("appeals.file") and a.unit in who.units
            if (mine and a.status != "withdrawn") or (a.status == "assigned" and a.reviewer == who.login) \
                    or (a.status == "filed" and who.can("appeals.assign")):
                out.append(a)
        return out

    # ------------------------------------------------------------------ changes

    async def file(self, who: Principal, *, cycle: str, period: str, unit: str, target: str, indicator: str,
                   reason: str, evidence: Sequence[str] = (), uploads: Sequence[Upload] = ()) -> AppealRecord:
        """The unit appeals one figure of its current publicity publication of (cycle, period)."""
        check_period(cycle, period)
        if not who.system and (not who.units or unit not in who.units):
            raise NotFound(f"单位 {unit[:16]} 不是您的被考评单位，不能代为申诉 (not your unit)", code="appeals.not_your_unit")
        text = check_reason(reason)
        shas = list(check_evidence(evidence))
        now = self.ctx.clock()
        async with self.ctx.store.tx() as tx:
            pub, fig = await self._published(tx, cycle, period, unit)
            if not pub.open_at(now):
                raise Conflict(f"{cycle} 年度 {period} 的结果不在公示期内（公示期至 {_day(pub.closes_at)}），不能申诉 "
                               "(appeals are filed only while the publicity window is open)", code="appeals.window_closed")
            key = check_target(target, indicator, fig)
            sent = [await self._store_upload(tx, who, up, now) for up in uploads]
            shas = list(check_evidence([*shas, *sent]))
            await self._check_files(tx, who, unit, shas, sent)
            if any(a.target == target and a.indicator == key
                   for a in await tx.appeals.list(cycle=cycle, period=period, units=[unit], statuses=OPEN)):
                raise Conflict(f"{unit} 对{TARGET_ZH[target]} {key} 已有未决定的申诉 (an appeal of this is already open)",
                               code="appeals.duplicate")
            before = {"name": fig.name, **before_of(fig, target, key)}
            deadline = decide_by(pub.closes_at, self.decide_days)
            new_id = await tx.appeals.add(cycle=cycle, period=period, unit=unit, publication=pub.digest, target=target,
                                          indicator=key, reason=text, evidence=shas, status="filed",
                                          filed_by=who.actor, filed_at=now, decide_by=deadline, before=before)
            await tx.audit.append(who.actor, "appeal.file", f"appeal:{new_id}", {
                "cycle": cycle, "period": period, "unit": unit, "publication": pub.digest, "target": target,
                "indicator": key, "reason": text, "evidence": shas, "before": before, "decide_by": deadline}, now)
            a = await tx.appeals.get(new_id)
        assert a is not None
        return a

    async def assign(self, who: Principal, appeal_id: int, reviewer: str) -> AppealRecord:
        now = self.ctx.clock()
        async with self.ctx.store.tx() as tx:
            a = await self._get(tx, appeal_id)
            if a.status not in OPEN:
                raise Conflict(f"申诉 #{a.id} 已决定或撤回，不能分配复核人 (decided or withdrawn: cannot assign)",
                               code="appeals.assign_closed")
            account = await tx.users.get(reviewer.strip())
            if account is None:
                raise NotFound(f"reviewer：没有账户 {reviewer[:32]!r} (no such account)", code="appeals.no_account")
            why = ineligible(_account(account), a.unit, str(a.before.get("name", "")), await self._providers(tx, a))
            if why is not None:
                raise Conflict(f"reviewer：{why[1]}", code=why[0])
            await tx.appeals.change(a.id, status="assigned", reviewer=account.login, assigned_by=who.actor,
                                    assigned_at=now)
            await tx.audit.append(who.actor, "appeal.assign", f"appeal:{a.id}",
                                  {"reviewer": account.login, "previous": a.reviewer, "decide_by": a.decide_by}, now)
            return await self._get(tx, a.id)

    async def extend(self, who: Principal, appeal_id: int, until: int, reason: str) -> AppealRecord:
        """The office moves an open appeal's deadline for a decision later."""
        text = check_reason(reason)
        now = self.ctx.clock()
        async with self.ctx.store.tx() as tx:
            a = await self._get(tx, appeal_id)
            if a.status not in OPEN:
                raise Conflict(f"申诉 #{a.id} 已决定或撤回，无需延期 (decided or withdrawn: nothing to extend)",
                               code="appeals.extend_closed")
            if until <= max(now, a.decide_by) or until > max(now, a.decide_by) + 90 * DAY:
                raise BadInput("until：新的期限须晚于现有期限和现在，且延长不超过 90 天 "
                               "(the new deadline must be later than the current one and now, by at most 90 days)",
                               code="appeals.extend_until")
            await tx.appeals.change(a.id, decide_by=until)
            await tx.audit.append(who.actor, "appeal.extend", f"appeal:{a.id}",
                                  {"from": a.decide_by, "to": until, "reason": text}, now)
            return await self._get(tx, a.id)

    async def decide(self, who: Principal, appeal_id: int, decision: str, reason: str) -> AppealRecord:
        """The assigned reviewer's decision; an upheld or partly upheld appeal of a value re-opens that
        cell for its provider (see the module docstring)."""
        if decision not in DECISIONS:
            raise BadInput(f"decision：{decision[:16]!r} 无效，应为 upheld（成立）、partly（部分成立）或 rejected（不成立） "
                           "(decision: upheld, partly or rejected)", code="appeals.decision")
        text = check_reason(reason)
        now = self.ctx.clock()
        async with self.ctx.store.tx() as tx:
            a = await self._get(tx, appeal_id)
            if a.reviewer != who.login or who.system:
                raise Conflict(f"申诉 #{a.id} 未分配给您，只有绩效办指定的复核人可以决定 "
                               "(only the reviewer the office assigned decides)", code="appeals.not_assigned")
            why = may_decide(a.status, now, a.decide_by)
            if why is not None:
                raise Conflict(why[1], code=why[0])
            account = await tx.users.get(who.login)  # still eligible: the account may have changed since
            unfit = None if account is None else ineligible(
                _account(account), a.unit, str(a.before.get("name", "")), await self._providers(tx, a))
            if account is None or unfit is not None:
                raise Conflict(f"您已不符合复核人条件，请绩效办重新分配 ({unfit[1] if unfit else 'no account'})",
                               code="appeals.reviewer_no_longer_eligible")
            reopened: dict[str, object] = {}
            if decision in CORRECTING and a.target == "value":
                reopened = await self._reopen(tx, who, a, decision, text, now)
            await tx.appeals.change(a.id, status=decision, decision=text, decided_by=who.actor, decided_at=now)
            await tx.audit.append(who.actor, "appeal.decide", f"appeal:{a.id}", {
                "decision": decision, "reason": text, "unit": a.unit, "target": a.target, "indicator": a.indicator,
                "before": a.before, "reopened": reopened}, now)
            return await self._get(tx, a.id)

    async def withdraw(self, who: Principal, appeal_id: int, note: str = "") -> AppealRecord:
        now = self.ctx.clock()
        async with self.ctx.store.tx() as tx:
            a = await self._get(tx, appeal_id)
            if not who.system and (not who.units or a.unit not in who.units):
                raise NotFound(f"申诉 #{a.id} 不是您单位的 (not your unit's appeal)", code="appeals.not_your_appeal")
            if a.status not in OPEN:
                raise Conflict(f"申诉 #{a.id} 已决定或撤回 (already decided or withdrawn)", code="appeals.withdraw_closed")
            await tx.appeals.change(a.id, status="withdrawn", decided_by=who.actor, decided_at=now)
            await tx.audit.append(who.actor, "appeal.withdraw", f"appeal:{a.id}",
                                  {"unit": a.unit, "note": note.strip()[:500]}, now)
            return await self._get(tx, a.id)

    async def on_published(self, tx: Tx, who: Principal, rec: PublicationRecord) -> None:
        """A new version of a publication: each appeal against an earlier version whose decision
        corrects a figure, and whose correction has gone through (a value: re-entered and approved),
        gets its ``after`` from this version, audited as ``appeal.corrected``."""
        earlier = [p.digest for p in await tx.publications.list(node=rec.node, cycle=rec.cycle, period=rec.period,
                                                                 unit_class=rec.unit_class) if p.digest != rec.digest]
        waiting = [a for a in await tx.appeals.list(publications=earlier, statuses=CORRECTING) if not a.after]
        if not waiting:
            return
        doc = pubs.read(rec.envelope)
        now = self.ctx.clock()
        for a in waiting:
            fig = doc.unit(a.unit)
            if fig is None:
                continue
            if a.target == "value":
                e = (await tx.intake.entries_at(a.cycle, a.period, [(a.unit, a.indicator)])).get((a.unit, a.indicator))
                if e is None or e.status != "approved" or e.decided_at < a.decided_at:
                    continue  # not yet re-entered and approved: the next version will say
            after = {"publication": rec.digest, "version": rec.version, **after_of(fig, a.target, a.indicator)}
            await tx.appeals.change(a.id, after=after)
            await tx.audit.append(who.actor, "appeal.corrected", f"appeal:{a.id}", {
                "appeal": a.id, "unit": a.unit, "target": a.target, "indicator": a.indicator, "decision": a.status,
                "before": a.before, "after": after, "publication": rec.digest, "previous": a.publication}, now)

    # ------------------------------------------------------------------ inside

    async def _get(self, tx: Tx, appeal_id: int) -> AppealRecord:
        a = await tx.appeals.get(appeal_id)
        if a is None:
            raise NotFound(f"没有申诉 #{appeal_id} (no such appeal)", code="appeals.no_such")
        return a

    async def _published(self, tx: Tx, cycle: str, period: str, unit: str) -> tuple[PublicationRecord, pubs.Figure]:
        for p in await tx.publications.current(self.ctx.me.code, cycle=cycle):
            if p.period != period or p.role != "own":
                continue
            fig = pubs.read(p.envelope).unit(unit)
            if fig is not None:
                return p, fig
        raise NotFound(f"本节点尚未公示 {unit[:16]} 的 {cycle} 年度 {period} 结果，无可申诉 (no publication of this unit)",
                       code="appeals.not_published")

    async def _providers(self, tx: Tx, a: AppealRecord) -> set[str]:
        """Who gave the value appealed (for a score or grade: any value of the unit): the task book's
        provider and the entry's."""
        tasks = await tx.intake.tasks(a.cycle, units=[a.unit])
        entries = await tx.intake.entries(a.cycle, a.period, units=[a.unit])
        if a.target == "value":
            root = a.indicator.split(".")[0]
            tasks = [t for t in tasks if t.indicator == root]
            entries = [e for e in entries if e.key == a.indicator]
        return {t.provider for t in tasks} | {e.provider for e in entries}

    async def _reopen(self, tx: Tx, who: Principal, a: AppealRecord, decision: str, text: str,
                      now: int) -> dict[str, object]:
        root = a.indicator.split(".")[0]
        task = next((t for t in await tx.intake.tasks(a.cycle, units=[a.unit]) if t.indicator == root), None)
        if task is None:
            raise Conflict(f"{a.unit} 的指标 {root} 不在 {a.cycle} 年度任务书中，无法退回重报；请绩效办先生成任务书 "
                           "(the value has no task to re-enter it through: generate the task book first)",
                           code="appeals.no_task")
        note = f"申诉 #{a.id} 复核{'成立' if decision == 'upheld' else '部分成立'}，请更正后重新报送：{text}"[:500]
        held = (await tx.intake.entries_at(a.cycle, a.period, [(a.unit, a.indicator)])).get((a.unit, a.indicator))
        value = held.value if held else str(a.before.get("value", ""))
        await tx.intake.put_entries([EntryRecord(
            cycle=a.cycle, period=a.period, unit=a.unit, key=a.indicator, value=value,
            comment=held.comment if held else "", status="returned", provider=task.provider,
            entered_by=held.entered_by if held else "", entered_at=held.entered_at if held else now,
            submitted_at=held.submitted_at if held else 0, late=held.late if held else False, decided_by=who.actor,
            decided_at=now, reason=note, approved_value=held.approved_value if held else "")])
        await tx.intake.add_history([{"cycle": a.cycle, "period": a.period, "unit": a.unit, "key": a.indicator,
                                      "at": now, "actor": who.actor, "action": "return",
                                      "before": held.approved_value if held else "", "value": value, "note": note}])
        until = max(now, a.decide_by) + self.decide_days * DAY
        held_unlock = next((u for u in await tx.intake.unlocks(a.cycle, a.period) if u.provider == task.provider), None)
        if held_unlock is None or held_unlock.until < until:
            await tx.intake.put_unlock(UnlockRecord(a.cycle, a.period, task.provider, until, who.actor,
                                                    f"申诉 #{a.id} 更正 (appeal correction)"))
        return {"cell": f"{a.unit}/{a.indicator}", "provider": task.provider, "value": value, "unlocked_until": until}

    async def _store_upload(self, tx: Tx, who: Principal, up: Upload, now: int) -> str:
        f = evidence_file(up.name, up.data, code="appeals.evidence")  # the intake's one check of an upload
        name, sha = f.name, f.sha256
        await tx.intake.put_attachment(sha, name, f.content_type, up.data, who.actor, now)
        await tx.audit.append(who.actor, "appeal.attach", sha, {"name": name, "size": len(up.data)}, now)
        return sha

    async def _check_files(self, tx: Tx, who: Principal, unit: str, shas: Sequence[str], sent: Sequence[str]) -> None:
        """Each file is held, and is the person's (uploaded by them, now or before) or supports a cell of the unit."""
        held = await tx.appeals.files(shas)
        for sha in shas:
            if sha not in held:
                raise NotFound(f"evidence：没有附件 {sha[:12]}…，请先上传 (no such file: upload it first)",
                               code="appeals.evidence_missing")
            if sha not in sent and held[sha][1] != who.actor and unit not in await tx.appeals.file_units(sha):
                raise NotFound(f"evidence：附件 {sha[:12]}… 既非您上传，也不属于本单位的数据 "
                               "(not a file of yours or of your unit)", code="appeals.evidence_not_yours")


def _day(ts: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(ts + 8 * 3600))
