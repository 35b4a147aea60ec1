"""Data intake as people do it (issue 10): the task book (任务书), entry windows with deadlines and
the office's unlocks, providers' grids, drafts and submissions, the evaluated unit's confirmation,
the reviewer's approval or return, evidence files (台账), and every step in the entry's history and
the audit log under the person's login.

What an approval does depends on whose value it is:
- the node's own (本级): every approved value of the period is signed into a result bundle and sent
  up, exactly as ``EntryService.enter_values`` does (it is handed in as ``sign_own``);
- a child government's or department's: it is held as that unit's value (``source = provided``) and
  the unit's framework is re-scored; it counts over anything the unit reports for the same key.

Checks of each cell (in the task, editable, a number in bounds, outliers explained) are the pure
``nodes/intake.py``; a batch with any problem is taken in no part.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal

from aggregator.errors import BadInput, Conflict, NotFound
from aggregator.framework import Framework
from aggregator.numbers import parse_decimal
from nodes.accounts import Principal
from nodes.intake import (
    STATUS_ZH,
    CellInput,
    CellState,
    Checked,
    Grid,
    IntakeRefused,
    Problem,
    Row,
    check,
    evidence_file,
    periods_of,
    previous_period,
    same_period_last_year,
    value_columns,
    window_of,
)
from nodes.repositories.intake import (
    AttachmentRecord,
    EntryRecord,
    HistoryRecord,
    PeriodRecord,
    TaskRecord,
    UnlockRecord,
)
from nodes.services.context import NodeContext, check_period, framework_of
from nodes.services.scoring import ScoringService
from nodes.store import Tx
from sync.ports import FrameworkRecord

SignOwn = Callable[[str, str, Mapping[str, object], str], Awaitable[str]]
SELF = "本级"  # how the node itself is named among its units


@dataclass(frozen=True)
class Scope:
    """The frameworks in force this cycle, per unit this node appraises or reports for."""

    by_unit: Mapping[str, tuple[str, Framework]]  # unit → (framework digest, framework)
    names: Mapping[str, str]


@dataclass(frozen=True)
class Saved:
    saved: int
    submitted: int
    late: int
    warnings: tuple[str, ...]


@dataclass(frozen=True)
class Decided:
    approved: int
    returned: int
    bundles: tuple[str, ...]  # bundles signed for this node's own values


@dataclass(frozen=True)
class Todo:
    periods: list[dict[str, object]]  # open periods with work left: period, cells, done, due_at, overdue
    returned: list[EntryRecord]  # entries returned or objected to, waiting for whoever entered them


@dataclass(frozen=True)
class ReviewRow:
    entry: EntryRecord
    unit_name: str
    indicator_name: str
    measure_unit: str
    history: tuple[HistoryRecord, ...]
    attachments: tuple[str, ...]


def _task_visible(who: Principal, t: TaskRecord) -> bool:
    if not (who.covers_unit(t.unit) and who.covers_indicator(t.indicator)):
        return False
    if who.can("tasks.manage"):
        return True
    if "provider" in who.roles and t.provider and t.provider == who.org:
        return True
    return "unit" in who.roles and not t.provider and bool(who.units) and t.unit in who.units


SNAPSHOT_TTL = 10.0  # seconds; any committed write makes a new one sooner (nodes/read_cache.py)


class _HeldIntake:
    """What the pages read of intake for one cycle, loaded in one go and kept under the store's
    generation: the task book, windows, unlocks, entries (and last year's approved ones), evidence
    links. It answers the read methods of IntakeRepository the page paths use, from memory."""

    def __init__(self, tasks: list[TaskRecord], periods: list[PeriodRecord], unlocks: list[UnlockRecord],
                 entries: list[EntryRecord], files: dict[tuple[str, str, str], list[AttachmentRecord]]) -> None:
        self._tasks, self._periods, self._unlocks, self._entries, self._files = tasks, periods, unlocks, entries, files

    async def tasks(self, cycle: str, provider: str | None = None,
                    units: Iterable[str] | None = None) -> list[TaskRecord]:
        wanted = None if units is None else set(units)
        return [t for t in self._tasks if t.cycle == cycle and (provider is None or t.provider == provider)
                and (wanted is None or t.unit in wanted)]

    async def periods(self, cycle: str) -> list[PeriodRecord]:
        return [p for p in self._periods if p.cycle == cycle]

    async def unlocks(self, cycle: str, period: str | None = None) -> list[UnlockRecord]:
        return [u for u in self._unlocks if u.cycle == cycle and (period is None or u.period == period)]

    async def entries(self, cycle: str, period: str | None = None, *, units: Iterable[str] | None = None,
                      statuses: Iterable[str] | None = None, provider: str | None = None,
                      limit: int | None = None) -> list[EntryRecord]:
        wanted = None if units is None else set(units)
        states = None if statuses is None else set(statuses)
        out = [e for e in self._entries if e.cycle == cycle and (period is None or e.period == period)
               and (wanted is None or e.unit in wanted) and (states is None or e.status in states)
               and (provider is None or e.provider == provider)]
        return out if limit is None else out[:limit]

    async def approved(self, cycles: Iterable[str], periods: Iterable[str],
                       units: Iterable[str]) -> dict[tuple[str, str, str], str]:
        cs, ps, us = set(cycles), set(periods), set(units)
        return {(e.period, e.unit, e.key): e.approved_value for e in self._entries
                if e.cycle in cs and e.period in ps and e.unit in us and e.approved_value}

    async def attachments_of(self, cycle: str, period: str,
                             units: Iterable[str]) -> dict[tuple[str, str], list[AttachmentRecord]]:
        us = set(units)
        return {(u, k): f for (p, u, k), f in self._files.items() if p == period and u in us}


class _HeldFrameworks:
    def __init__(self, rows: list[FrameworkRecord]) -> None:
        self._rows = rows

    async def list(self, role: str | None = None, cycle: str | None = None) -> list[FrameworkRecord]:
        return [r for r in self._rows if (role is None or r.role == role) and (cycle is None or r.cycle == cycle)]


@dataclass(frozen=True)
class _Held:
    """Quacks like the Tx the read paths are written against (``intake``, ``frameworks``)."""

    intake: _HeldIntake
    frameworks: _HeldFrameworks


class IntakeService:
    def __init__(self, ctx: NodeContext, scoring: ScoringService, sign_own: SignOwn) -> None:
        self.ctx = ctx
        self.scoring = scoring
        self.sign_own = sign_own

    async def _held(self, cycle: str) -> _Held:
        async def load() -> _Held:
            async with self.ctx.store.read() as r:
                last = str(int(cycle) - 1)
                entries = [*await r.intake.entries(cycle),
                           *[e for e in await r.intake.entries(last) if e.approved_value]]
                return _Held(
                    _HeldIntake(await r.intake.tasks(cycle), await r.intake.periods(cycle), await r.intake.unlocks(cycle),
                                entries, await r.intake.attachments_in(cycle)),
                    _HeldFrameworks([row for role in ("received", "issued", "internal")
                                     for row in await r.frameworks.list(role=role, cycle=cycle)]))
        return await self.ctx.cache.get(("intake", cycle), load, SNAPSHOT_TTL)

    async def scope_of(self, cycle: str) -> Scope:
        """``scope`` as the pages read it: from the cycle's held snapshot."""
        return await self.scope(await self._held(cycle), cycle)

    # --- what applies to whom
    async def scope(self, tx: Tx | _Held, cycle: str) -> Scope:
        me = self.ctx.me
        by_unit: dict[str, tuple[str, Framework]] = {}
        names = {me.code: f"{me.name}（{SELF}）", **self.ctx.child_names,
                 **{d.code: d.name for d in self.ctx.cfg.departments}}
        received = await tx.frameworks.list(role="received", cycle=cycle)
        if received:
            by_unit[me.code] = (received[-1].digest, framework_of(received[-1]))
        own = [*await tx.frameworks.list(role="issued", cycle=cycle), *await tx.frameworks.list(role="internal", cycle=cycle)]
        for row in sorted(own, key=lambda r: r.version):
            fw = framework_of(row)
            for u in fw.units:
                by_unit[u.code] = (row.digest, fw)  # the highest version naming the unit wins
                names.setdefault(u.code, u.name)
        return Scope(by_unit, names)

    # --- the task book
    async def generate(self, cycle: str, who: Principal) -> int:
        """Fill the task book from the frameworks in force: each value leaf for each unit it applies
        to, with the framework's provider and frequency; rows the office has edited are kept."""
        check_period(cycle, f"{cycle}-Y")
        now = self.ctx.clock()
        async with self.ctx.store.tx() as tx:
            scope = await self.scope(tx, cycle)
            if not scope.by_unit:
                raise Conflict(f"本节点尚无 {cycle} 年度的指标体系，无法生成任务书 (no framework for this cycle)",
                               code="tasks.no_framework")
            held = {(t.unit, t.indicator) for t in await tx.intake.tasks(cycle)}
            # The node's own value of an indicator its children's frameworks link to is their roll-up,
            # not an entry: only the rest are tasks for 本级.
            rolled = {link.parent_indicator for u, (_, fw) in scope.by_unit.items() if u != self.ctx.me.code
                      for ind in fw.leaves() for link in ind.links}
            rows: list[TaskRecord] = []
            for unit, (_, fw) in sorted(scope.by_unit.items()):
                for ind in fw.leaves():
                    if unit == self.ctx.me.code and ind.code in rolled:
                        continue
                    if not any(c.indicator == ind.code for c in value_columns(fw, only=[ind.code])):
                        continue
                    if (unit, ind.code) not in held:
                        rows.append(TaskRecord(cycle, unit, ind.code, ind.provider, ind.frequency or "Y", False, "", "",
                                               now, who.actor))
            await tx.intake.put_tasks(rows)
            have = {p.period for p in await tx.intake.periods(cycle)}
            freqs = {t.frequency for t in [*rows, *await tx.intake.tasks(cycle)]}
            new_periods = sorted({p for f in freqs for p in periods_of(cycle, f)} - have)
            await tx.intake.put_periods([PeriodRecord(cycle, p, *window_of(p)) for p in new_periods])
            await tx.audit.append(who.actor, "tasks.generate", cycle, {"tasks": len(rows), "periods": new_periods}, now)
        return len(rows)

    async def tasks(self, cycle: str, who: Principal) -> list[TaskRecord]:
        r = await self._held(cycle)
        return [t for t in await r.intake.tasks(cycle) if _task_visible(who, t)]

    async def edit_tasks(self, cycle: str, indicator: str, units: Sequence[str], who: Principal, *, provider: str,
                         frequency: str, confirm: bool, minimum: str, maximum: str) -> int:
        """The office sets who provides ``indicator`` for ``units`` (all of its units when empty)."""
        if frequency not in ("M", "Q", "H", "Y"):
            raise BadInput("报送频次应为 M（月）、Q（季）、H（半年）或 Y（年） (frequency: M, Q, H or Y)", code="tasks.frequency")
        for label, bound in (("下限", minimum), ("上限", maximum)):
            if bound.strip():
                parse_decimal(bound.strip(), f"{indicator} {label}")
        if minimum.strip() and maximum.strip() and Decimal(parse_decimal(minimum.strip(), "")) > parse_decimal(
                maximum.strip(), ""):
            raise BadInput("下限不能大于上限 (minimum above maximum)", code="tasks.bounds")
        now = self.ctx.clock()
        async with self.ctx.store.tx() as tx:
            scope = await self.scope(tx, cycle)

            def under(t: TaskRecord) -> bool:
                """``indicator`` is the task's leaf, or a group above it (a review chain set per group)."""
                if t.indicator == indicator:
                    return True
                fw = scope.by_unit.get(t.unit, ("", None))[1]
                ind = fw.indicator(t.indicator) if fw is not None else None
                while ind is not None and ind.parent_code:
                    if ind.parent_code == indicator:
                        return True
                    ind = fw.indicator(ind.parent_code) if fw is not None else None
                return False

            held = [t for t in await tx.intake.tasks(cycle) if under(t) and (not units or t.unit in units)]
            if not held:
                raise NotFound(f"任务书中没有指标 {indicator[:32]} 的任务 (no such task)", code="tasks.not_found")
            rows = [replace(t, provider=provider.strip()[:64], frequency=frequency, confirm=confirm,
                            minimum=minimum.strip(), maximum=maximum.strip(), updated_at=now, updated_by=who.actor)
                    for t in held]
            await tx.intake.put_tasks(rows)
            have = {p.period for p in await tx.intake.periods(cycle)}
            await tx.intake.put_periods([PeriodRecord(cycle, p, *window_of(p))
                                         for p in periods_of(cycle, frequency) if p not in have])
            await tx.audit.append(who.actor, "tasks.edit", indicator,
                                  {"cycle": cycle, "units": [t.unit for t in rows], "provider": provider.strip()[:64],
                                   "frequency": frequency, "confirm": confirm, "minimum": minimum.strip(),
                                   "maximum": maximum.strip()}, now)
        return len(rows)

    async def periods(self, cycle: str) -> list[PeriodRecord]:
        async with self.ctx.store.read() as r:
            return await r.intake.periods(cycle)

    async def set_window(self, cycle: str, period: str, opens_at: int, due_at: int, who: Principal) -> None:
        check_period(cycle, period)
        if due_at <= opens_at:
            raise BadInput("截止时间须晚于开始时间 (the deadline must come after the opening)", code="tasks.window")
        now = self.ctx.clock()
        async with self.ctx.store.tx() as tx:
            await tx.intake.put_periods([PeriodRecord(cycle, period, opens_at, due_at)])
            await tx.audit.append(who.actor, "tasks.window", period, {"opens_at": opens_at, "due_at": due_at}, now)

    async def unlock(self, cycle: str, period: str, provider: str, until: int, reason: str, who: Principal) -> None:
        check_period(cycle, period)
        if not reason.strip():
            raise BadInput("解锁须说明理由 (an unlock needs a reason)", code="tasks.unlock_reason")
        now = self.ctx.clock()
        if until <= now:
            raise BadInput("解锁期限须晚于现在 (the unlock must end in the future)", code="tasks.unlock_until")
        async with self.ctx.store.tx() as tx:
            await tx.intake.put_unlock(UnlockRecord(cycle, period, provider.strip()[:64], until, who.actor,
                                                    reason.strip()[:500]))
            await tx.audit.append(who.actor, "tasks.unlock", period,
                                  {"cycle": cycle, "provider": provider.strip()[:64], "until": until,
                                   "reason": reason.strip()[:500]}, now)

    # --- grids
    async def grids(self, cycle: str, period: str, who: Principal) -> list[Grid]:
        """The person's grids for the period: one per framework, units × keys of their tasks."""
        check_period(cycle, period)
        return await self._grids(await self._held(cycle), cycle, period, who)

    async def _grids(self, r: Tx | _Held, cycle: str, period: str, who: Principal) -> list[Grid]:
        now = self.ctx.clock()
        scope = await self.scope(r, cycle)
        mine = [t for t in await r.intake.tasks(cycle) if _task_visible(who, t) and period in periods_of(cycle, t.frequency)
                and t.unit in scope.by_unit]
        if not mine:
            return []
        window = next((p for p in await r.intake.periods(cycle) if p.period == period), None)
        opens, due = (window.opens_at, window.due_at) if window else window_of(period)
        unlocked = {u.provider for u in await r.intake.unlocks(cycle, period) if u.until > now}
        by_fw: dict[str, list[TaskRecord]] = {}
        for t in mine:
            by_fw.setdefault(scope.by_unit[t.unit][0], []).append(t)
        units = sorted({t.unit for t in mine})
        held = await r.intake.entries(cycle, period, units=units)
        history = await r.intake.approved([cycle, str(int(cycle) - 1)],
                                          [previous_period(period), same_period_last_year(period)], units)
        files = await r.intake.attachments_of(cycle, period, units)
        state = {(e.unit, e.key): e for e in held}
        grids = []
        for ts in by_fw.values():
            fw = scope.by_unit[ts[0].unit][1]
            bounds = {t.indicator: (parse_decimal(t.minimum, "") if t.minimum else None,
                                    parse_decimal(t.maximum, "") if t.maximum else None) for t in ts}
            columns = value_columns(fw, bounds, only={t.indicator for t in ts})
            assigned = {(t.unit, t.indicator) for t in ts}
            rows = tuple(Row(u, scope.names.get(u, u)) for u in sorted({t.unit for t in ts}))
            cells: dict[tuple[str, str], CellState] = {}
            for row in rows:
                for col in columns:
                    if (row.unit, col.indicator) not in assigned:
                        continue
                    e = state.get((row.unit, col.key))
                    cells[(row.unit, col.key)] = CellState(
                        value=e.value if e else "", comment=e.comment if e else "", status=e.status if e else "",
                        previous=history.get((previous_period(period), row.unit, col.key), ""),
                        last_year=history.get((same_period_last_year(period), row.unit, col.key), ""),
                        reason=e.reason if e else "",
                        attachments=tuple(a.name for a in files.get((row.unit, col.key), [])))
            providers = {t.provider for t in ts}
            is_open = opens <= now < due or bool(providers & unlocked) or who.system
            grids.append(Grid(cycle, period, "、".join(sorted(p or SELF for p in providers)), rows, columns, cells,
                              opens, due, is_open))
        return grids

    # --- entering
    async def save(self, cycle: str, period: str, inputs: Sequence[CellInput], who: Principal, *, submit: bool,
                   source: str = "page", dry_run: bool = False) -> Saved:
        """Take a batch of cells as drafts, or submit them for review; all of it or none. ``dry_run``:
        check only (an import of several periods checks them all before taking any)."""
        if not who.can("values.enter"):
            raise BadInput("您的角色不能填报数据 (your roles cannot enter values)", code="intake.enter_role")
        now = self.ctx.clock()
        async with self.ctx.store.tx() as tx:
            grids = await self._grids(tx, cycle, period, who)
            where = {(row.unit, col.key): g for g in grids for row in g.rows for col in g.columns
                     if (row.unit, col.key) in g.cells}
            problems: list[Problem] = []
            taken: list[tuple[Grid, Checked]] = []
            batches: dict[int, list[CellInput]] = {}
            for c in inputs:
                g = where.get((c.unit, c.key))
                if g is None:
                    problems.append(Problem(c.where or f"{c.unit}/{c.key}",
                                            f"单位 {c.unit[:16]} 的 {c.key[:32]} 不在您 {period} 的填报任务中 "
                                            "(not one of your tasks for this period)", "intake.not_assigned"))
                    continue
                batches.setdefault(id(g), []).append(c)
            for g in grids:
                ok, bad = check(g, batches.get(id(g), []), submitting=submit)
                problems += bad
                taken += [(g, c) for c in ok]
            if problems:
                raise IntakeRefused(problems, source)
            if not taken:
                raise BadInput("没有要保存的数据 (nothing to save)", code="intake.nothing")
            if dry_run:
                return Saved(saved=len(taken), submitted=len(taken) if submit else 0, late=0, warnings=())
            tasks = {(t.unit, t.indicator): t for t in await tx.intake.tasks(cycle)}
            held = await tx.intake.entries_at(cycle, period, [(c.unit, c.key) for _, c in taken])
            rows, hist, late = [], [], 0
            for g, ok_cell in taken:
                col = g.column(ok_cell.key)
                assert col is not None
                task = tasks[(ok_cell.unit, col.indicator)]
                before = held.get((ok_cell.unit, ok_cell.key))
                is_late = submit and g.due_at > 0 and now >= g.due_at
                late += is_late
                rows.append(EntryRecord(
                    cycle=cycle, period=period, unit=ok_cell.unit, key=ok_cell.key, value=ok_cell.value,
                    comment=ok_cell.comment, status="submitted" if submit else "draft", provider=task.provider,
                    entered_by=who.actor, entered_at=now, submitted_at=now if submit else 0, late=is_late,
                    decided_by="", decided_at=0, reason="", approved_value=before.approved_value if before else ""))
                hist.append({"cycle": cycle, "period": period, "unit": ok_cell.unit, "key": ok_cell.key, "at": now,
                             "actor": who.actor, "action": "submit" if submit else "save",
                             "before": before.value if before else "", "value": ok_cell.value,
                             "note": ok_cell.comment or ok_cell.warning})
            await tx.intake.put_entries(rows)
            await tx.intake.add_history(hist)
            detail: dict[str, object] = {"cycle": cycle, "period": period, "source": source,
                                         "cells": {f"{k.unit}/{k.key}": k.value for _, k in taken}}
            typed = {f"{k.unit}/{k.key}": k.as_entered for _, k in taken if k.as_entered and k.as_entered != k.value}
            if typed:
                detail["as_entered"] = typed
            if late:
                detail["late"] = late
            await tx.audit.append(who.actor, "intake.submit" if submit else "intake.save", period, detail, now)
        return Saved(saved=len(taken), submitted=len(taken) if submit else 0, late=late,
                     warnings=tuple(f"{k.unit}/{k.key}: {k.warning}" for _, k in taken if k.warning))

    async def attach(self, cycle: str, period: str, unit: str, key: str, filename: str, data: bytes,
                     who: Principal) -> str:
        """Evidence for one cell (台账): kept under its SHA-256, at most ``MAX_ATTACHMENT`` bytes."""
        f = evidence_file(filename, data)
        name, sha = f.name, f.sha256
        now = self.ctx.clock()
        async with self.ctx.store.tx() as tx:
            grids = await self._grids(tx, cycle, period, who)
            if not any((unit, key) in g.cells for g in grids):
                raise BadInput(f"单位 {unit[:16]} 的 {key[:32]} 不在您 {period} 的填报任务中 (not one of your tasks)",
                               code="intake.not_assigned")
            await tx.intake.put_attachment(sha, name, f.content_type, data, who.actor, now)
            await tx.intake.link_attachment(sha, cycle, period, unit, key)
            await tx.intake.add_history([{"cycle": cycle, "period": period, "unit": unit, "key": key, "at": now,
                                          "actor": who.actor, "action": "attach", "before": "", "value": "",
                                          "note": f"{name} sha256:{sha}"}])
            await tx.audit.append(who.actor, "intake.attach", sha,
                                  {"cycle": cycle, "period": period, "unit": unit, "key": key, "name": name,
                                   "size": len(data)}, now)
        return sha

    async def attachment(self, sha256: str, who: Principal) -> tuple[str, str, bytes]:
        """(name, content type, bytes), for someone who may see one of the cells it supports."""
        async with self.ctx.store.read() as r:
            found = await r.intake.attachment(sha256)
            cells = await r.intake.attachment_cells(sha256)
        if found is None or not any(who.covers_unit(u) and who.covers_indicator(k.split(".")[0]) for _, _, u, k in cells):
            raise NotFound("没有该附件，或您无权查看 (no such attachment, or not yours to see)", code="intake.no_attachment")
        meta, data = found
        return meta.name, meta.content_type, data

    # --- confirming (the evaluated unit) and reviewing (the office's reviewer)
    async def confirm(self, cycle: str, period: str, cells: Sequence[tuple[str, str]], who: Principal, *,
                      objection: str = "") -> int:
        """被考评单位确认 (or objects, with a reason: the entry goes back to its provider)."""
        if not who.can("values.confirm"):
            raise BadInput("只有被考评单位可以确认 (only the evaluated unit confirms)", code="intake.confirm_role")
        now = self.ctx.clock()
        async with self.ctx.store.tx() as tx:
            held = await tx.intake.entries_at(cycle, period, cells)
            tasks = {(t.unit, t.indicator): t for t in await tx.intake.tasks(cycle)}
            for u, k in cells:
                e = held.get((u, k))
                t = tasks.get((u, k.split(".")[0]))
                if e is None or not who.units or u not in who.units:
                    raise NotFound(f"{u[:16]}/{k[:32]} 不是您单位待确认的数据 (not yours to confirm)",
                                   code="intake.not_yours")
                if e.status != "submitted" or t is None or not t.confirm:
                    raise Conflict(f"{u}/{k} 状态为「{STATUS_ZH.get(e.status, e.status)}」，无需确认 (not awaiting confirmation)",
                                   code="intake.not_awaiting_confirmation")
            if objection.strip():
                await tx.intake.set_status(cycle, period, cells, status="objected", reason=objection.strip()[:500],
                                           decided_by=who.actor, decided_at=now)
            else:
                await tx.intake.set_status(cycle, period, cells, status="confirmed", decided_by=who.actor, decided_at=now)
            await tx.intake.add_history([{"cycle": cycle, "period": period, "unit": u, "key": k, "at": now,
                                          "actor": who.actor, "action": "object" if objection.strip() else "confirm",
                                          "before": held[(u, k)].value, "value": held[(u, k)].value,
                                          "note": objection.strip()[:500]} for u, k in cells])
            await tx.audit.append(who.actor, "intake.object" if objection.strip() else "intake.confirm", period,
                                  {"cycle": cycle, "cells": [f"{u}/{k}" for u, k in cells],
                                   "reason": objection.strip()[:500]}, now)
        return len(cells)

    async def _waiting(self, r: Tx | _Held, cycle: str, who: Principal, period: str | None) -> list[EntryRecord]:
        tasks = {(t.unit, t.indicator): t for t in await r.intake.tasks(cycle)}
        out = []
        for e in await r.intake.entries(cycle, period, statuses=["submitted", "confirmed"]):
            t = tasks.get((e.unit, e.key.split(".")[0]))
            if (e.status == "submitted" and t is not None and t.confirm) or not who.covers_unit(e.unit) \
                    or not who.covers_indicator(e.key):
                continue  # awaiting the unit's confirmation first, or outside the reviewer's scope
            out.append(e)
        return out

    async def waiting(self, cycle: str, who: Principal) -> int:
        """How many entries wait for this reviewer (the home page's count)."""
        return len(await self._waiting(await self._held(cycle), cycle, who, None))

    async def queue(self, cycle: str, who: Principal, period: str | None = None, *, unit: str = "",
                    key: str = "", limit: int = 200) -> tuple[list[ReviewRow], int]:
        """What waits for the reviewer — submitted entries (those needing the unit's confirmation once
        confirmed) — filtered by unit or key prefix; the first ``limit`` of them with their history and
        evidence, and how many there are in all."""
        held = await self._held(cycle)
        async with self.ctx.store.read() as r:
            scope = await self.scope(held, cycle)
            waiting = [e for e in await self._waiting(held, cycle, who, period)
                       if (not unit or e.unit == unit) and (not key or e.key.startswith(key))]
            shown = waiting[:limit]
            rows = []
            for p in sorted({e.period for e in shown}):
                es = [e for e in shown if e.period == p]
                hist: dict[tuple[str, str], list[HistoryRecord]] = {}
                for h in await r.intake.history(cycle, p, [(e.unit, e.key) for e in es]):
                    hist.setdefault((h.unit, h.key), []).append(h)
                files = await held.intake.attachments_of(cycle, p, {e.unit for e in es})
                for e in es:
                    fw = scope.by_unit.get(e.unit, ("", None))[1]
                    ind = fw.indicator(e.key.split(".")[0]) if fw is not None else None
                    rows.append(ReviewRow(e, scope.names.get(e.unit, e.unit), ind.name if ind else e.key,
                                          ind.measure_unit if ind else "", tuple(hist.get((e.unit, e.key), ())),
                                          tuple(a.name for a in files.get((e.unit, e.key), []))))
        return rows, len(waiting)

    async def decide(self, cycle: str, period: str, cells: Sequence[tuple[str, str]], decision: str, who: Principal,
                     reason: str = "") -> Decided:
        """Approve the cells (their values count: see the module docstring) or return them with a reason."""
        if decision not in ("approve", "return"):
            raise BadInput("decision 应为 approve（通过）或 return（退回） (decision must be approve or return)",
                           code="review.decision")
        if decision == "return" and not reason.strip():
            raise BadInput("退回须说明理由 (a return needs a reason)", code="review.reason_required")
        if not cells:
            raise BadInput("请选择要审核的数据 (choose what to review)", code="review.nothing")
        me = self.ctx.me
        now = self.ctx.clock()
        own: dict[str, str] = {}
        async with self.ctx.store.tx() as tx:
            held = await tx.intake.entries_at(cycle, period, cells)
            tasks = {(t.unit, t.indicator): t for t in await tx.intake.tasks(cycle)}
            for u, k in cells:
                e = held.get((u, k))
                if e is None or not who.covers_unit(u) or not who.covers_indicator(k):
                    raise NotFound(f"{u[:16]}/{k[:32]} 不在您的审核范围内 (not in your review scope)", code="review.not_found")
                t = tasks.get((u, k.split(".")[0]))
                ready = e.status == "confirmed" or (e.status == "submitted" and not (t is not None and t.confirm))
                if not ready:
                    raise Conflict(f"{u}/{k} 状态为「{STATUS_ZH.get(e.status, e.status)}」，不在待审核中 (not awaiting review)",
                                   code="review.entry_not_pending")
                if e.entered_by == who.actor and not who.system:
                    raise Conflict(f"{u}/{k} 由您本人填报，须由他人审核 (you entered it: someone else must review it)",
                                   code="review.own_entry")
            hist = [{"cycle": cycle, "period": period, "unit": u, "key": k, "at": now, "actor": who.actor,
                     "action": decision, "before": held[(u, k)].approved_value, "value": held[(u, k)].value,
                     "note": reason.strip()[:500]} for u, k in cells]
            if decision == "return":
                await tx.intake.set_status(cycle, period, cells, status="returned", reason=reason.strip()[:500],
                                           decided_by=who.actor, decided_at=now)
            else:
                for u, k in cells:
                    await tx.intake.set_status(cycle, period, [(u, k)], status="approved", reason="",
                                               decided_by=who.actor, decided_at=now, approved_value=held[(u, k)].value)
            await tx.intake.add_history(hist)
            await tx.audit.append(who.actor, f"intake.{decision}", period,
                                  {"cycle": cycle, "reviewer": who.label,
                                   "cells": {f"{u}/{k}": held[(u, k)].value for u, k in cells},
                                   "before": {f"{u}/{k}": held[(u, k)].approved_value for u, k in cells
                                              if held[(u, k)].approved_value},
                                   "reason": reason.strip()[:500]}, now)
            bundles: list[str] = []
            if decision == "approve":
                scope = await self.scope(tx, cycle)
                touched = {u for u, _ in cells}
                approved = list(await tx.intake.entries(cycle, period, units=touched, statuses=["approved"]))
                if any(e.status for e in approved if e.unit == me.code) and me.code in touched:
                    own = {e.key: e.approved_value for e in approved if e.unit == me.code}
                for u in sorted(touched - {me.code}):
                    digest = scope.by_unit[u][0]
                    await tx.results.put(node=u, cycle=cycle, period=period, framework_digest=digest,
                                         values={e.key: e.approved_value for e in approved if e.unit == u},
                                         source="provided", bundle_id="", now=now)
                for digest in sorted({scope.by_unit[u][0] for u in touched - {me.code}}):
                    await self.scoring.recompute(tx, cycle, period, digest,
                                                 cause=f"{who.label} 审核通过数据提供单位报送的数据 (provided values approved)",
                                                 actor=who.actor)
        if own:
            # The node's own values go up signed, through the same path as the office's direct entry.
            bundles.append(await self.sign_own(cycle, period, own, who.actor))
        self.ctx.wakeups.outbox.set()
        return Decided(approved=len(cells) if decision == "approve" else 0,
                       returned=len(cells) if decision == "return" else 0, bundles=tuple(bundles))

    # --- what a person's home page lists
    async def todo(self, cycle: str, who: Principal) -> Todo:
        """Counts and deadlines for the home page: open tasks per period, returns, items to review."""
        now = self.ctx.clock()
        r = await self._held(cycle)
        mine = [t for t in await r.intake.tasks(cycle) if _task_visible(who, t)]
        windows = {p.period: p for p in await r.intake.periods(cycle)}
        entries = await r.intake.entries(cycle, units={t.unit for t in mine}) if mine else []
        assigned = {(t.unit, t.indicator) for t in mine}
        periods: dict[str, dict[str, int]] = {}
        for t in mine:
            for p in periods_of(cycle, t.frequency):
                periods.setdefault(p, {"cells": 0, "done": 0})["cells"] += 1
        returned = []
        if "unit" in who.roles and who.units:  # an evaluated unit sees what was returned about it, whoever entered it
            returned += await self._returned_about(cycle, who)
        listed = {(e.period, e.unit, e.key) for e in returned}
        for e in entries:
            if (e.unit, e.key.split(".")[0]) not in assigned or (e.period, e.unit, e.key) in listed:
                continue
            if e.status in ("submitted", "confirmed", "approved") and e.key.split(".")[0] == e.key:
                periods.setdefault(e.period, {"cells": 0, "done": 0})["done"] += 1
            if e.status in ("returned", "objected") and (e.entered_by == who.actor or who.can("tasks.manage")):
                returned.append(e)
        open_periods = []
        for p, n in sorted(periods.items()):
            w = windows.get(p)
            opens, due = (w.opens_at, w.due_at) if w else window_of(p)
            if opens <= now and n["done"] < n["cells"]:
                open_periods.append({"period": p, "cells": n["cells"], "done": n["done"], "due_at": due,
                                     "overdue": now >= due})
        return Todo(open_periods, returned)

    async def _returned_about(self, cycle: str, who: Principal) -> list[EntryRecord]:
        r = await self._held(cycle)
        return [e for e in await r.intake.entries(cycle, units=sorted(who.units), statuses=["returned", "objected"])
                if who.covers_indicator(e.key)]


def cells_of(pairs: Iterable[str]) -> list[tuple[str, str]]:
    """"unit/key" strings (as pages post them) as (unit, key) pairs."""
    out = []
    for p in pairs:
        unit, sep, key = p.partition("/")
        if not sep or not unit or not key:
            raise BadInput(f"{p[:40]!r} 不是 单位/指标 (expected unit/key)", code="review.cell")
        out.append((unit, key))
    return out
