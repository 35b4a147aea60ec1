"""区划调整 on a node: take the signed change lists of its ancestors, issue its own, keep them, pass
them down, and say which tree is in force on a day (docs/parts/changes.md, "What is wired").

Each list is judged on its own (a bad one never stops the framework or the other lists that came
with it) and every outcome is audited with who handed the list over:

* the list's issuer must be on this node's path (an ancestor, or this node itself): a sibling or a
  child has no say over the units this node sees, so its list is refused with ``division.not_ancestor``
  even when its signature holds;
* the signature and certificate chain to the pinned province key (sync/trust.py, with revocation),
  and the list's own rules (sync/division_changes.py ``verify_change_list``);
* the order against the lists held (``ChangeLog.offer``): a second, different list under one number is
  an equivocation, refused and audited with **both** envelopes as signed, so the proof outlives it.

Accepted lists are kept exactly as signed, in acceptance order, and replayed in that order at start:
a restart judges them as they were judged when they came. The lineage is built only once a list is
held, so the thousands of nodes that never see one never load a division table.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from datetime import date
from typing import Protocol

from aggregator.errors import AppraisalError
from aggregator.lineage import DivisionChange, DivisionChangeError, Lineage, Story, Tree, cycle_bounds
from nodes.repositories.division_changes import DivisionChangeRecord
from nodes.repositories.publications import PublicationRecord
from proto.appraisal.v1 import appraisal_pb2 as pb
from sync.division_changes import (
    PAYLOAD_DIVISION_CHANGES,
    ChangeList,
    ChangeLog,
    DivisionListError,
    Equivocation,
    decode,
    read,
    sign_change_list,
    verify_change_list,
)
from sync.envelope import EnvelopeError, code_of, open_envelope
from sync.envelope import digest as sha
from sync.identity import Me, Outcome
from sync.message_ids import message_id
from sync.ports import AuditRepo, Occurrence, OutboxRepo

SELF = "self"  # the sender of a list this node issued
log = logging.getLogger("fedappraisal.divisions")


class DivisionChangeRepo(Protocol):
    async def put(self, *, issuer: str, seq: int, digest: str, envelope: bytes, sender: str, now: int,
                  base: str) -> int: ...
    async def all(self) -> list[DivisionChangeRecord]: ...


class PublicationRepo(Protocol):
    async def current(self, node: str, *, cycle: str | None = None) -> list[PublicationRecord]: ...


class DivisionTx(Protocol):
    """What a transaction offers this service: nothing else of the store."""

    @property
    def publications(self) -> PublicationRepo: ...
    @property
    def division_changes(self) -> DivisionChangeRepo: ...
    @property
    def audit(self) -> AuditRepo: ...
    @property
    def outbox(self) -> OutboxRepo: ...


class DivisionStore(Protocol):
    def tx(self) -> AbstractAsyncContextManager[DivisionTx]: ...
    def read(self) -> AbstractAsyncContextManager[DivisionTx]: ...


@dataclass(frozen=True)
class DivisionBase:
    """The tree the lineage starts from: (code, name) of every unit in force on ``since``; ``label``
    names it (``nbs-2023``), stored with every list so that a restart replays from the same tree."""

    rows: tuple[tuple[str, str], ...]
    since: date
    label: str


# base(label): the base named ``label``, or (None) the one to start from when no list is held yet.
BaseSource = Callable[[str | None], DivisionBase]


@dataclass(frozen=True)
class HeldList:
    """A list this node holds, as accepted."""

    position: int
    sender: str
    accepted_at: int
    changes: ChangeList


def table_base(me: Me, units: Sequence[tuple[str, str]]) -> BaseSource:
    """The default base: the province's units in a division table (nodes/divisions.py), from the first
    day of its year, and the units this node's configuration names (``units``) where the table lacks
    them. The first list held takes the newest table on hand; later the year the lists were judged on."""

    def base(label: str | None) -> DivisionBase:
        from nodes.divisions import load  # only when a list is first held: most nodes never pay for the table

        if label is not None and not re.fullmatch(r"nbs-[0-9]{4}", label):
            raise DivisionListError(f"已存清单所依据的区划 {label[:32]!r} 不是区划表年份 (the stored lists were judged "
                                    "on a base tree this node cannot load)", code="division.base_unknown")
        table = load(None if label is None else int(label[4:]))
        rows = {d.code: d.name for d in table.subtree(me.path[0])} if me.path[0] in table else {}
        for code, name in units:
            rows.setdefault(code, name)
        return DivisionBase(tuple(sorted(rows.items())), date(table.year, 1, 1), f"nbs-{table.year}")

    return base


class DivisionChangeService:
    def __init__(self, store: DivisionStore, me: Me, clock: Callable[[], int],
                 base: BaseSource) -> None:
        """``base``: called once, when the first list is held or the stored ones are replayed (it may
        load a division table)."""
        self.store = store
        self.me = me
        self.clock = clock
        self.base = base
        self._lock = asyncio.Lock()  # lists are judged one at a time: the log is the order
        self._log: ChangeLog | None = None
        self._held: list[HeldList] | None = None
        self._base = ""  # the label of the base the log was built on
        self._closed: date | None = None  # the last day of the last cycle this node published final
        # Called after a list is kept (taken or issued), outside the lock: the cascade re-derives the
        # frameworks whose cycle's tree it changed (nodes/services/cascade.CascadeService.follow_tree).
        self.on_change: list[Callable[[], Awaitable[None]]] = []

    # ------------------------------------------------------------------ the log

    async def load(self) -> None:
        """Replay the stored lists in acceptance order (once; again after a failed write)."""
        if self._held is not None:
            return
        async with self._lock:  # not beside a list being kept: the replay would miss it
            await self._load()

    async def _load(self) -> None:
        if self._held is not None:
            return
        async with self.store.read() as r:
            rows = await r.division_changes.all()
            finals = [p.cycle for p in await r.publications.current(self.me.code) if p.state == "final"]
        held = [HeldList(row.position, row.sender, row.accepted_at, read(row.envelope)) for row in rows]
        for cycle in finals:
            self._close_day(cycle_bounds(cycle)[1])
        log = None
        if held:
            log = self._new_log(rows[0].base)
            for h in held:
                log.offer(h.changes)  # verified when it came; replayed to rebuild the lineage
            self._closed_log(log)  # after the replay: lists taken before a cycle closed stand
        self._log, self._held = log, held

    def _close_day(self, day: date) -> None:
        if self._closed is None or day > self._closed:
            self._closed = day

    def _closed_log(self, log: ChangeLog) -> ChangeLog:
        if self._closed is not None:
            log.close(self._closed)
        return log

    async def on_published(self, _tx: object, _who: object, rec: PublicationRecord) -> None:
        """A publication hook (nodes/services/publication.py): once this node's results of a cycle are
        final, no list may change that cycle's tree (``division.backdated_closed``): not a list it
        issues, and not one a certified ancestor sends to rewrite a year already judged."""
        if rec.state != "final" or rec.node != self.me.code:
            return
        self._close_day(cycle_bounds(rec.cycle)[1])
        if self._log is not None:
            self._closed_log(self._log)

    def _new_log(self, label: str | None = None) -> ChangeLog:
        base = self.base(label)
        self._base = base.label
        return ChangeLog(base.rows, base.since)

    @property
    def holds_lists(self) -> bool:
        return bool(self._held)

    def held(self) -> list[HeldList]:
        """Every list held, in acceptance order (``load`` first)."""
        return list(self._held or [])

    def envelopes(self) -> list[bytes]:
        return [h.changes.envelope for h in self.held()]

    def lineage(self) -> Lineage | None:
        return self._log.lineage() if self._log is not None else None

    def tree_at(self, day: date) -> Tree | None:
        """The tree in force on ``day``; None while no list is held (the configured tree stands)."""
        lineage = self.lineage()
        return lineage.tree_at(day) if lineage is not None else None

    def story(self, code: str, cycle: str) -> Story | None:
        """沿革 of the unit that held ``code`` at the end of ``cycle``, when a list held changed it
        (renamed, recoded, moved, merged, split or created); None otherwise."""
        lineage = self.lineage()
        if lineage is None:
            return None
        try:
            told = lineage.story(code, cycle_bounds(cycle)[1])
        except DivisionChangeError:
            return None  # before the base tree, or a code the lineage never held
        if len(told.entries) < 2 and told.ended is None and not told.came_from and not told.became:
            return None
        return told

    def cycle_tree(self, cycle: str) -> Tree | None:
        """The tree ``cycle`` is appraised over (its last day's); None while no list is held, or for a
        cycle before the lineage's base (it cannot say: the configured tree stands)."""
        lineage = self.lineage()
        if lineage is None:
            return None
        start, end = cycle_bounds(cycle)
        try:
            return lineage.tree_for_cycle(start, end)
        except DivisionChangeError:
            return None

    def check_units(self, cycle: str, units: Sequence[str]) -> None:
        """Every unit a framework for ``cycle`` names must be on the tree in force for that cycle (the
        tree on its last day, docs/parts/changes.md "The cycle rule"). Without lists held the
        configured tree is the tree, and the cascade's own checks hold it."""
        lineage = self.lineage()
        if lineage is None:
            return
        start, end = cycle_bounds(cycle)
        tree = lineage.tree_for_cycle(start, end)
        for code in units:
            if code not in tree.units:
                raise EnvelopeError(f"单位 {code[:16]} 不在 {cycle} 年度适用的区划（{end.isoformat()}）中，"
                                    f"指标体系不能列入它 (unit {code[:16]} is not on the division tree in force on "
                                    f"{end.isoformat()}, the end of cycle {cycle})", code="cascade.unit_not_on_tree")

    # ------------------------------------------------------------------ receiving

    async def take(self, envelopes: Sequence[bytes], chain: Sequence[bytes], sender: str) -> list[Outcome]:
        """Lists handed down by the parent (``chain``: the certificates the message carried, the
        sender's own chain). One outcome per list; a refusal is audited and changes nothing else."""
        out = []
        async with self._lock:
            await self._load()
            for env in envelopes:
                out.append(await self._take_one(bytes(env), chain, sender))
        if any(o.accepted and not o.duplicate for o in out):
            await self._changed()
        return out

    async def _changed(self) -> None:
        for hook in self.on_change:
            try:
                await hook()
            except Exception:  # the list is kept either way; the next list or parent framework derives again
                log.exception("after a division change list")

    async def _take_one(self, env: bytes, chain: Sequence[bytes], sender: str) -> Outcome:
        now = self.clock()
        issuer, seq, claimed = "", 0, sha(env)
        try:
            header = decode(open_envelope(env, PAYLOAD_DIVISION_CHANGES).payload)
            issuer, seq, claimed = header.issuer, header.seq, header.digest
            if issuer not in self.me.path:
                raise DivisionListError(f"区划变更清单由 {issuer[:12]} 发布，它不是本节点 {self.me.code} 或其上级 "
                                        f"(the issuer is neither this node nor one of its ancestors {'/'.join(self.me.path)})",
                                        code="division.not_ancestor")
            depth = self.me.path.index(issuer)  # the province has no certificate; a city one …
            given = list(chain)
            cl = verify_change_list(env, given[:depth] if len(given) >= depth else list(self.me.chain[:depth]),
                                    self.me.root, now, self.me.trust)
            log = self._log if self._log is not None else self._closed_log(self._new_log())
            if not log.offer(cl):
                return Outcome(True, True, "重复的区划变更清单 (duplicate)", issuer, cl.digest)
        except Equivocation as exc:
            await self._refused(exc, issuer, seq, claimed, sender, now, env, {
                "first": base64.b64encode(exc.first).decode(), "second": base64.b64encode(exc.second).decode()})
            return Outcome(False, False, str(exc), issuer, claimed, code=exc.code)
        except (AppraisalError, ArithmeticError) as exc:  # EnvelopeError, and a base tree that cannot be built
            await self._refused(exc, issuer, seq, claimed, sender, now, env, {})
            return Outcome(False, False, str(exc), issuer, claimed, code=code_of(exc, "division.refused"))
        await self._keep(log, cl, sender, now, "accept.division_changes")
        return Outcome(True, False, "", issuer, cl.digest)

    async def _refused(self, exc: Exception, issuer: str, seq: int, claimed: str, sender: str, now: int, env: bytes,
                       extra: dict[str, str]) -> None:
        code = code_of(exc, "division.refused")
        detail = {"reason": str(exc)[:500], "code": code, "issuer": issuer[:12], "seq": seq, "bytes": len(env), **extra}
        async with self.store.tx() as tx:
            # Counted per (sender, action, code) like every refusal (sync/refusals.py): a flood stays bounded.
            await tx.audit.record([Occurrence(self.me.code, "reject.division_changes", claimed, sender, code, detail)],
                                  now, self.me.limits.audit_repeat_seconds)

    async def _keep(self, log: ChangeLog, cl: ChangeList, sender: str, now: int, action: str, actor: str = "") -> None:
        """Store the list the log just took, audit it and queue it for the children, in one
        transaction; if that fails, the log is rebuilt from the store (the list was not taken)."""
        try:
            async with self.store.tx() as tx:
                position = await tx.division_changes.put(issuer=cl.issuer, seq=cl.seq, digest=cl.digest,
                                                         envelope=cl.envelope, sender=sender, now=now,
                                                         base=self._base)
                await tx.audit.append(actor or self.me.code, action, cl.digest,
                                      {"issuer": cl.issuer, "seq": cl.seq, "sender": sender, "changes": len(cl.changes),
                                       "kinds": sorted({c.kind for c in cl.changes})}, now)
                if self.me.children:
                    await tx.outbox.enqueue(self.me.cascade_subject(), message_id(cl.digest), self.message([cl.envelope]),
                                            now)
        except BaseException:
            self._log, self._held = None, None
            raise
        self._log = log
        assert self._held is not None
        self._held.append(HeldList(position, sender, now, cl))

    def message(self, envelopes: Sequence[bytes]) -> bytes:
        """A list-only cascade message (no framework): what goes down when a list is new, and what a
        child catching up is handed."""
        return pb.CascadeMessage(division_changes=list(envelopes), certificate_chain=list(self.me.chain)).SerializeToString()

    # ------------------------------------------------------------------ issuing

    async def issue(self, changes: Sequence[DivisionChange], actor: str) -> ChangeList:
        """Sign and keep this node's next list (for units below it) and pass it down. It is checked
        exactly as the children will check it first, so nothing is sent that they would refuse."""
        async with self._lock:
            await self._load()
            own = [h.changes for h in self.held() if h.changes.issuer == self.me.code]
            seq = len(own) + 1
            previous = own[-1].digest if own else ""
            now = self.clock()
            events = [replace(c, issuer=self.me.code) for c in changes]
            env = sign_change_list(self.me.key, self.me.code, seq, previous, now, events)
            cl = verify_change_list(env, self.me.chain, self.me.root, now, self.me.trust)
            log = self._log if self._log is not None else self._closed_log(self._new_log())
            log.offer(cl)
            await self._keep(log, cl, SELF, now, "issue.division_changes", actor)
        await self._changed()
        return cl
