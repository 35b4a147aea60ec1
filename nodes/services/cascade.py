"""Frameworks and the cascade: take the parent's signed framework (sync/cascade_receiver.py), derive
and sign this node's own for its children, or publish the one its office wrote; answer a child's
catch-up with the frameworks addressed to it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Protocol

from aggregator.errors import AppraisalError, BadInput, Conflict
from aggregator.framework import Framework, Unit, check_links, derive_child_framework
from aggregator.lineage import Tree
from nodes.framework_file import load_document, load_framework, pin_to_parent
from nodes.services.context import NodeContext, framework_of
from nodes.store import Tx
from sync.cascade_receiver import parse_cascade, receive_cascade
from sync.cascade_sender import issue_framework
from sync.codec import cascade_envelopes
from sync.envelope import EnvelopeError, code_of
from sync.framework_checks import check_issued
from sync.identity import Outcome
from sync.ports import FrameworkRecord
from sync.refusals import sender_of

TrustUpdate = Callable[[], Awaitable[bytes]]


class DivisionLists(Protocol):
    """What the cascade needs of the node's division change lists (nodes/services/divisions.py)."""

    async def load(self) -> None: ...
    async def take(self, envelopes: Sequence[bytes], chain: Sequence[bytes], sender: str) -> list[Outcome]: ...
    def check_units(self, cycle: str, units: Sequence[str]) -> None: ...
    def cycle_tree(self, cycle: str) -> Tree | None: ...
    def envelopes(self) -> list[bytes]: ...
    def message(self, envelopes: Sequence[bytes]) -> bytes: ...


def _class_of(path: Path) -> str:
    """The class a framework file names (to know whose units fill it in); "" when it cannot be read:
    the full load that follows then says what is wrong with the file."""
    try:
        data = load_document(path).data
    except AppraisalError:
        return ""
    return str(data.get("class", "")) if isinstance(data, dict) else ""


class CascadeService:
    def __init__(self, ctx: NodeContext, trust_update: TrustUpdate, divisions: DivisionLists) -> None:
        self.ctx = ctx
        self.trust_update = trust_update
        self.divisions = divisions

    def _units(self) -> tuple[Unit, ...]:
        return tuple(Unit(c.code, c.name, self.ctx.cfg.child_class) for c in self.ctx.cfg.children)

    def _units_of_cycle(self, cycle: str) -> tuple[tuple[Unit, ...], list[str]]:
        """The configured children on the tree in force for ``cycle``, under their names of that time,
        and the configured children it does not hold (a 乡 merged away, a county moved to another city):
        a derived framework names only units that exist when the cycle is judged. Without lists held
        the configured children stand."""
        tree = self.divisions.cycle_tree(cycle)
        if tree is None:
            return self._units(), []
        cls = self.ctx.cfg.child_class
        on = tuple(Unit(c.code, tree.units[c.code].name, cls) for c in self.ctx.cfg.children if c.code in tree.units)
        return on, [c.code for c in self.ctx.cfg.children if c.code not in tree.units]

    def _department_units(self, unit_class: str) -> tuple[Unit, ...]:
        return tuple(Unit(d.code, d.name, d.unit_class) for d in self.ctx.cfg.departments if d.unit_class == unit_class)

    async def on_batch(self, msgs: list[tuple[str, bytes]]) -> list[bool]:
        return [await self.take(subject, data) for subject, data in msgs]

    async def take(self, subject: str | None, data: bytes) -> bool:
        """One cascade message (``subject`` None: it came over gRPC); False: deliver it again later.
        The division change lists it carries are judged first, each on its own: the framework may name
        a unit that only a list it carries puts on the tree. A message of lists alone ends there."""
        me = self.ctx.me
        peer = me.parent or ""  # over gRPC only from the parent called
        await self.divisions.load()
        if subject is None or subject == me.parent_cascade_subject():
            try:
                msg = parse_cascade(data)
            except EnvelopeError:
                msg = None  # receive_cascade says so, and audits it
            if msg is not None and msg.division_changes:
                for outcome in await self.divisions.take(list(msg.division_changes), list(msg.certificate_chain),
                                                         sender_of(subject, peer)):
                    self.ctx.log_outcome("division changes", outcome)
                if not msg.frameworks:
                    return True
        outcome = await receive_cascade(self.ctx.store, me, data, self.ctx.clock(), self._after_framework,
                                        subject, peer=peer, check=self._on_tree)
        self.ctx.log_outcome("framework", outcome)
        return not outcome.retry

    async def follow_tree(self) -> None:
        """After a division change list is kept: every framework this node derived for a cycle whose
        tree the list changed (a unit merged, split, renamed or moved in the middle of the cycle) is
        derived again, as a new version over the new tree, from the newest framework of its parent. An
        office's own decomposition is not replaced: the office is told (``needs.redecomposition``)."""
        ctx = self.ctx
        if not ctx.me.children:
            return
        async with ctx.store.tx() as tx:
            newest: dict[tuple[str, str, str], FrameworkRecord] = {}
            for row in await tx.frameworks.list(role="received"):
                key = (row.issuer, row.cycle, row.unit_class)
                if key not in newest or row.version > newest[key].version:
                    newest[key] = row
            for row in newest.values():
                fw = framework_of(row)
                if ctx.me.code not in {u.code for u in fw.units}:
                    continue
                mine = await tx.frameworks.latest(ctx.me.code, fw.cycle, ctx.cfg.child_class or fw.unit_class)
                if mine is None:
                    continue  # none derived yet: the next framework from the parent derives over the tree
                units, _off = self._units_of_cycle(fw.cycle)
                if [(u.code, u.name) for u in framework_of(mine).units] == [(u.code, u.name) for u in units]:
                    continue
                await self._after_framework(tx, fw, row.digest, list(parse_cascade(row.cascade).frameworks))

    def _on_tree(self, fw: Framework) -> None:
        self.divisions.check_units(fw.cycle, [u.code for u in fw.units])

    async def _after_framework(self, tx: Tx, fw: Framework, fw_digest: str, upstream: list[bytes]) -> None:
        ctx = self.ctx
        if not ctx.me.children or ctx.me.code not in {u.code for u in fw.units}:
            return  # nothing to pass down, or a framework for another class of the parent's units
        child_class = ctx.cfg.child_class or fw.unit_class
        latest = await tx.frameworks.latest(ctx.me.code, fw.cycle, child_class)
        now = ctx.clock()
        if latest is not None and latest.authored:
            # The office decomposed the parent's framework itself: never overwrite that automatically.
            # Say whether it still fits the new parent; the office publishes a new version when ready.
            problems = check_links(fw, fw_digest, pin_to_parent(framework_of(latest), fw, fw_digest), ctx.me.code)
            await tx.audit.append(ctx.me.code, "needs.redecomposition", latest.digest,
                                  {"parent": fw_digest, "parent_version": fw.version, "still_fits": not problems,
                                   "problems": [str(p) for p in problems[:20]]}, now)
            return
        units, off_tree = self._units_of_cycle(fw.cycle)
        if off_tree:  # said where the office sees it: those children get no framework for this cycle
            await tx.audit.append(ctx.me.code, "derive.off_tree", fw_digest,
                                  {"cycle": fw.cycle, "units": off_tree, "version": fw.version}, now)
        if not units:
            return
        try:
            child = derive_child_framework(
                fw, fw_digest, ctx.me.name, ctx.me.code, units, unit_class=child_class,
                issued_at=now, expires_at=fw.expires_at, version=(latest.version + 1) if latest is not None else 1,
            )
            # Exactly the checks the children will make on receiving it: never issue what they refuse.
            check_issued(child, ctx.me.identity(), (fw, fw_digest), now, ctx.limits)
        except (ValueError, ArithmeticError, LookupError) as exc:  # EnvelopeError is a ValueError
            # The parent's framework stands (it verified); the office decomposes it by hand, and the
            # refusal is reported up (sync/reports.py) so that no ancestor thinks the cascade went on.
            await tx.audit.append(ctx.me.code, "derive.failed", fw_digest,
                                  {"reason": str(exc)[:500], "code": code_of(exc, "derive.failed"),
                                   "version": fw.version, "issuer": fw.issuer}, now)
            ctx.wakeups.report.set()
            return
        await issue_framework(tx, ctx.me, child, upstream, now, division_changes=self.divisions.envelopes())

    async def publish_file(self, path: Path, label: str | None = None, actor: str = "admin") -> str:
        """Publish a framework file for this node's children: the province's starting move, or an
        office's own decomposition of its parent's framework (pinned to the one in force, links checked).
        ``label``: the name to show for the file in messages (an upload's own name)."""
        ctx = self.ctx
        shown = label or str(path)
        # Parsing is CPU work that a large file makes long: off the event loop, so the node keeps serving.
        unit_class = await asyncio.to_thread(_class_of, path)
        departments = self._department_units(unit_class)  # 分类考评: a class of this node's own departments
        fw = await asyncio.to_thread(load_framework, path, units=departments or self._units(), now=ctx.clock())
        if fw.issuer != ctx.me.code:
            raise BadInput(f"{shown}: issuer 为 {fw.issuer}，本节点是 {ctx.me.code} (a node publishes only its own frameworks)",
                           code="framework.not_own")
        if not departments:
            await self.divisions.load()
            self.divisions.check_units(fw.cycle, [u.code for u in fw.units])
        allowed = {u.code for u in departments} if departments else set(ctx.me.children)
        unknown = [u.code for u in fw.units if u.code not in allowed]
        if unknown:
            raise BadInput(f"{shown}: 单位 {', '.join(unknown)} 不是本节点的下级 (units outside this node's children)",
                           code="framework.foreign_units")
        async with ctx.store.tx() as tx:
            latest = await tx.frameworks.latest(fw.issuer, fw.cycle, fw.unit_class)
            if latest is not None and latest.version >= fw.version:
                raise Conflict(f"{shown}: 版本 {fw.version} 不高于已发布的 v{latest.version}；请提高 version "
                               "(versions only go forward)", code="framework.version_not_newer")
            upstream: list[bytes] = []
            if ctx.me.parent is not None:
                received = list(await tx.frameworks.list(role="received", cycle=fw.cycle))
                if not received:
                    raise Conflict(f"{shown}: 尚未收到上级 {fw.cycle} 年度指标体系，无法衔接 (no parent framework yet)",
                                   code="framework.no_parent")
                parent_row = received[-1]
                parent_fw = framework_of(parent_row)
                fw = pin_to_parent(fw, parent_fw, parent_row.digest)
                problems = check_links(parent_fw, parent_row.digest, fw, ctx.me.code, cascading=not departments)
                if problems:
                    raise BadInput("\n".join(f"{shown}: {p}" for p in problems), code="framework.links")
                upstream = cascade_envelopes(parent_row.cascade)
                parent: tuple[Framework, str] | None = (parent_fw, parent_row.digest)
            else:
                parent = None
            if departments:
                # Its units are departments, not nodes: nothing to cascade; kept here, signed, to score by.
                digest = await issue_framework(tx, ctx.me, fw, upstream, ctx.clock(), authored=True, internal=True)
            else:
                try:  # exactly the checks the children will make on receiving it
                    check_issued(fw, ctx.me.identity(), parent, ctx.clock(), ctx.limits)
                except EnvelopeError as exc:
                    raise BadInput(f"{shown}: 下级将拒收此指标体系 (the children would refuse it): {exc}",
                                   code="framework.children_would_refuse") from None
                digest = await issue_framework(tx, ctx.me, fw, upstream, ctx.clock(), authored=True,
                                               division_changes=self.divisions.envelopes())
            await tx.audit.append(actor, "framework.publish", digest,
                                  {"cycle": fw.cycle, "class": fw.unit_class, "version": fw.version, "file": shown},
                                  ctx.clock())
        ctx.wakeups.outbox.set()
        return digest

    async def for_child(self, requester: str, cycle: str) -> tuple[list[bytes], bytes]:
        """gRPC FetchFrameworks: the cascade messages addressed to ``requester``, and our trust update."""
        if requester not in self.ctx.me.children:
            return [], b""
        async with self.ctx.store.read() as r:
            rows = await r.frameworks.list(role="issued", cycle=cycle or None)
        messages = [row.cascade for row in rows if requester in {u.code for u in framework_of(row).units}]
        await self.divisions.load()
        held = self.divisions.envelopes()
        if held:  # a child that was away gets every list, before the frameworks that may name their units
            messages.insert(0, self.divisions.message(held))
        return messages, await self.trust_update()
