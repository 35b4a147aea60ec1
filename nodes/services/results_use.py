"""Results use (结果运用): the office produces, from a cycle's FINAL publications, the signed lists its
rules make (nodes/results_use.py) for the bodies that use them. Each list is a :class:`sync.use_lists.UseList`
signed by the node and kept in ``use_lists``, one row per version: producing again after a revision
of the results makes a new version (the old stays, for auditors); producing again with nothing
changed makes none. Every new version is audited with who produced it."""

from __future__ import annotations

from aggregator.errors import BadInput, Conflict, NotFound
from aggregator.framework import valid_cycle
from nodes.accounts import Principal
from nodes.repositories.publications import UseListRecord
from nodes.results_use import DEFAULT_RULES, Rule, cycles_back, evaluate, finals_of, history_needed, used
from nodes.services.context import NodeContext
from nodes.store import Tx
from sync import publication as pubs
from sync import use_lists
from sync.use_lists import UseEntry, UseList

Held = tuple[UseListRecord, UseList]


class ResultsUseService:
    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx

    @property
    def rules(self) -> tuple[Rule, ...]:
        configured = self.ctx.cfg.results_use
        return DEFAULT_RULES if configured is None else configured

    @property
    def configured(self) -> bool:
        return self.ctx.cfg.results_use is not None

    # ------------------------------------------------------------------ reads

    async def finals(self, tx: Tx, cycle: str) -> list[pubs.Published]:
        """This node's final annual publications of ``cycle`` and the cycles the rules look back on
        (the latest final version per class)."""
        out: list[pubs.Published] = []
        for c in cycles_back(cycle, history_needed(self.rules)):
            held = [pubs.read(p.envelope) for p in await tx.publications.list(node=self.ctx.me.code, cycle=c,
                                                                                period=f"{c}-Y", role="own")
                    if p.state == pubs.FINAL]
            out.extend(finals_of(held, c))
        return out

    async def finals_now(self, cycle: str) -> list[pubs.Published]:
        async with self.ctx.store.read() as tx:
            return await self.finals(tx, cycle)

    async def lists(self, cycle: str | None = None, *, every_version: bool = False) -> list[Held]:
        """The lists held, by cycle and list code; the latest version of each unless ``every_version``."""
        async with self.ctx.store.read() as tx:
            return await self.lists_in(tx, cycle, every_version=every_version)

    async def lists_in(self, tx: Tx, cycle: str | None = None, *, every_version: bool = False) -> list[Held]:
        rows = await tx.use_lists.list(cycle)
        if not every_version:
            latest: dict[tuple[str, str], UseListRecord] = {}
            for r in rows:
                latest[(r.cycle, r.list)] = r
            rows = list(latest.values())
        order = {code: i for i, code in enumerate(dict.fromkeys(r.list for r in self.rules))}
        rows.sort(key=lambda r: (r.cycle, order.get(r.list, len(order)), r.list, r.version))
        return [(r, use_lists.read(r.envelope)) for r in rows]

    async def get(self, digest: str) -> Held:
        async with self.ctx.store.read() as tx:
            r = await tx.use_lists.get(digest)
        if r is None:
            raise NotFound("没有这份结果运用清单 (no such use list)", code="use.not_found")
        return r, use_lists.read(r.envelope)

    # ------------------------------------------------------------------ changes

    async def produce(self, who: Principal, cycle: str) -> list[tuple[Held, bool]]:
        """Every list of the rules for ``cycle``, signed; (held, new) for each: ``new`` is False when the
        latest version already says the same."""
        async with self.ctx.store.tx() as tx:
            return await self.produce_in(tx, who, cycle)

    async def produce_in(self, tx: Tx, who: Principal, cycle: str) -> list[tuple[Held, bool]]:
        cycle = cycle.strip()
        if not valid_cycle(cycle):
            raise BadInput(f"年度 {cycle[:16]!r} 无效，应为四位年份，如 2026 (cycle: a year, e.g. 2026)", code="use.cycle")
        now = self.ctx.clock()
        me = self.ctx.me
        held = await self.finals(tx, cycle)
        if not [p for p in held if p.cycle == cycle]:
            raise Conflict(f"{cycle} 年度尚无终审公布的结果，不能生成结果运用清单；请先公示并终审 "
                           "(no final publication of this cycle: publicise and finalise first)", code="use.no_final")
        rests_on = tuple(used(self.rules, cycle, held))
        latest = {h[0].list: h for h in await self.lists_in(tx, cycle)}
        out: list[tuple[Held, bool]] = []
        for d in evaluate(self.rules, cycle, held):
            last = latest.get(d.list)
            doc = UseList(me.code, cycle, d.list, d.title, d.body, rests_on,
                          tuple(UseEntry(e.unit, e.name, e.rule, e.because) for e in d.entries), now,
                          1 if last is None else last[1].version + 1)
            if last is not None and last[1].same_content(doc):
                out.append((last, False))
                continue
            envelope, signed = use_lists.sign_use_list(me, doc)
            rec = UseListRecord(signed.digest, cycle, d.list, signed.version, envelope, now, who.actor)
            await tx.use_lists.add(rec)
            await tx.audit.append(who.actor, "use.produce", signed.digest, {
                "cycle": cycle, "list": d.list, "title": d.title, "body": d.body, "version": signed.version,
                "previous": "" if last is None else last[0].digest, "publications": list(rests_on),
                "units": [e.unit for e in d.entries], "rules": sorted({e.rule for e in d.entries})}, now)
            out.append(((rec, signed), True))
        return out
