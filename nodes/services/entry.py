"""Value entry at this node: values entered (and approved) for the framework it received, signed
and sent up; assessments (ratings, surveys, milestones, events, last year's values) for one of
its units, then a re-score."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from aggregator.errors import BadInput, Conflict
from aggregator.framework import reportable_keys
from aggregator.numbers import parse_decimal, to_text
from nodes.assessments import merge, normalise
from nodes.services.context import NodeContext, check_period, framework_of
from nodes.services.scoring import ScoringService
from sync.results_sender import send_bundle


class EntryService:
    def __init__(self, ctx: NodeContext, scoring: ScoringService) -> None:
        self.ctx = ctx
        self.scoring = scoring

    async def enter_values(self, cycle: str, period: str, raw: Mapping[str, object], actor: str) -> str:
        """Returns the id of the signed bundle that carries them up."""
        ctx = self.ctx
        check_period(cycle, period, hint=True)
        async with ctx.store.tx() as tx:
            received = await tx.frameworks.list(role="received", cycle=cycle)
            if not received:
                raise Conflict(f"尚未收到 {cycle} 年度的指标体系，无法报送 (no framework received for this cycle)",
                               code="entry.no_framework")
            row = received[-1]
            fw = framework_of(row)
            leaves = reportable_keys(fw)
            values: dict[str, Decimal] = {}
            for code, v in raw.items():
                if code not in leaves:
                    raise BadInput(f"指标 {code} 不在 {fw.issuer} v{fw.version} 指标体系的末级指标中 (unknown indicator)",
                                   code="entry.unknown_indicator")
                values[code] = parse_decimal(v, f"指标 {code}")  # type: ignore[arg-type]  # NumberError: BadInput
            now = ctx.clock()
            texts = {k: to_text(v) for k, v in values.items()}
            await tx.results.put(node=ctx.me.code, cycle=cycle, period=period, framework_digest=row.digest,
                                 values=texts, source="entered", bundle_id="", now=now)
            detail: dict[str, object] = {"cycle": cycle, "period": period, "values": texts}
            # What the person typed, where it differs from what counts (全角 or Arabic-Indic digits, a "+",
            # trailing zeros): the record shows both, so nobody can say the number was changed on the way.
            typed = {k: str(v) for k, v in raw.items() if str(v) != texts[k]}
            if typed:
                detail["as_entered"] = typed
            await tx.audit.append(actor, "enter.values", row.digest, detail, now)
            bundle_id = await send_bundle(tx, ctx.me, cycle=cycle, period=period, framework_digest=row.digest,
                                          values=values, child_scores=(), now=now)
        ctx.wakeups.outbox.set()
        ctx.wakeups.report.set()  # the report names the bundle just signed: one lost on the way is pulled
        return bundle_id

    async def enter_assessment(self, cycle: str, period: str, unit: str, body: Mapping[str, Any], actor: str) -> None:
        ctx = self.ctx
        check_period(cycle, period)
        if unit not in ctx.me.children and unit not in {d.code for d in ctx.cfg.departments}:
            raise BadInput(f"{unit[:24]} 不是本节点的被考评单位 (not a unit of this node)", code="entry.not_a_unit")
        entered = normalise(body)  # an AssessmentError (BadInput) names the field and the fix
        now = ctx.clock()
        async with ctx.store.tx() as tx:
            # the framework this unit is appraised by: a child's issued one, or its departments' (分类考评)
            own = [*await tx.frameworks.list(role="issued", cycle=cycle),
                   *await tx.frameworks.list(role="internal", cycle=cycle)]
            issued = sorted((r for r in own if unit in {u.code for u in framework_of(r).units}),
                            key=lambda r: r.version)
            if not issued:
                raise Conflict(f"本节点尚未发布 {cycle} 年度指标体系 (no framework issued for this cycle)",
                               code="entry.no_issued_framework")
            await tx.assessments.put(unit, cycle, period, merge(await tx.assessments.get(unit, cycle, period), entered),
                                     now)
            await tx.audit.append(actor, "enter.assessment", unit, {"cycle": cycle, "period": period, **entered}, now)
            await self.scoring.recompute(tx, cycle, period, issued[-1].digest,
                                         cause=f"{actor} 录入 {unit} 的评价 (assessment entered)", actor=actor)
        ctx.wakeups.outbox.set()
