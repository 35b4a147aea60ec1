"""Scoring: score, rank and grade the units of one issued framework, roll their values up, and
report this node's own bundle upwards when the roll-up is complete.

Runs inside the caller's transaction (an ingest batch, a review, an entry), so the values that
triggered it and the scores they produce commit together. Every change of a score, rank or
grade is audited with what caused it.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from decimal import Decimal

from aggregator.inputs import to_inputs
from aggregator.numbers import parse_decimal, to_text
from aggregator.rollup import RollupIncompleteError, roll_up
from aggregator.scoring import appraise
from nodes.services.baseline import GrowthBaseline
from nodes.services.context import NodeContext, framework_of
from nodes.store import Tx
from sync.codec import bundle_from_message
from sync.results_sender import send_bundle

log = logging.getLogger("fedappraisal.scoring")


class ScoringService:
    def __init__(self, ctx: NodeContext, baseline: GrowthBaseline | None = None) -> None:
        self.ctx = ctx
        self.baseline = baseline

    async def recompute(self, tx: Tx, cycle: str, period: str, fw_digest: str, *, cause: str,
                        actor: str = "") -> None:
        ctx = self.ctx
        me = ctx.me
        row = await tx.frameworks.get(fw_digest)
        if row is None:
            return
        fw = framework_of(row)
        now = ctx.clock()
        raw = await tx.results.values(cycle, period, fw_digest, nodes=[u.code for u in fw.units])
        values = {unit: {k: parse_decimal(v, k) for k, v in vals.items()} for unit, vals in raw.items()}
        recorded = await tx.assessments.for_period(cycle, period)
        if self.baseline is not None:  # growth's 上年数值, carried across 区划调整 where the office gave none
            recorded = await self.baseline.refresh(tx, fw, row, period, recorded, now)
        inputs = {u.code: to_inputs(values.get(u.code, {}), recorded.get(u.code)) for u in fw.units}
        try:
            # The period decides the targets (an interim one is scored against its interim targets) and
            # whether grades are given (aggregator/interim.py).
            scored = appraise(fw, inputs, datetime.fromtimestamp(now, UTC), period)
            rolled = roll_up(fw, values)
        except RollupIncompleteError:
            rolled = None
        except (ValueError, ArithmeticError, LookupError) as exc:
            # Nothing written yet: the values that came in stay taken, ingest goes on, and the office
            # sees why this framework cannot be scored.
            await tx.audit.append(actor or me.code, "recompute.failed", fw_digest,
                                  {"cycle": cycle, "period": period, "cause": cause, "reason": str(exc)[:500]}, now)
            log.warning("cannot score %s %s: %s", fw_digest[:12], period, exc)
            return
        before = {r.unit: (r.score, r.rank, str(json.loads(r.explanation).get("grade", "")))
                  for r in await tx.scores.list(cycle, period) if r.framework_digest == fw_digest}
        changes = {}
        for s in scored:
            new = (to_text(s.score), s.rank, str(s.explain().get("grade", "")))
            old = before.get(s.unit)
            if old != new:
                changes[s.unit] = {k: [o, n] for k, o, n in zip(("score", "rank", "grade"), old or ("", 0, ""), new,
                                                                strict=True) if o != n}
        if changes:
            await tx.audit.append(actor or me.code, "score.change", fw_digest,
                                  {"cycle": cycle, "period": period, "cause": cause, "changes": changes}, now)
        await tx.scores.put([
            {"unit": s.unit, "cycle": cycle, "period": period, "framework_digest": fw_digest,
             "score": to_text(s.score), "rank": s.rank,
             "explanation": json.dumps(s.explain(), ensure_ascii=False)} for s in scored])
        if rolled is None:
            return
        own: dict[str, Decimal] = {}
        for r in rolled:
            own[r.parent_indicator] = r.value
            own.update(r.extra)
        target_digest = fw.parent.digest if fw.parent is not None else fw_digest
        internal = row.role == "internal"
        # A roll-up of this node's departments is its own attested value (本级), as an entry is: its
        # parent cannot recompute it (no node below signed the departments' values) and is told so by
        # the bundle, which carries no sources.
        await tx.results.put(node=me.code, cycle=cycle, period=period, framework_digest=target_digest,
                             values={k: to_text(v) for k, v in own.items()}, source="entered" if internal else "rolled_up",
                             bundle_id="", now=now)
        await tx.audit.append(me.code, "rollup", target_digest, {"cycle": cycle, "period": period, "internal": internal,
                                                                  "values": {k: to_text(v) for k, v in own.items()}}, now)
        if me.parent is None or not own:
            return
        units = [u.code for u in fw.units]
        provided = {} if internal else {
            u: {k: parse_decimal(v, k) for k, v in vals.items()}
            for u, vals in (await tx.results.provided(cycle, period, fw_digest, units)).items()}
        last = await tx.bundles.last(me.code)
        if last is not None:
            prev = bundle_from_message(last.message)
            if (prev.cycle, prev.period, prev.framework_digest, prev.values, dict(prev.provided)) == (
                    cycle, period, target_digest, own, provided):
                return
        if internal:  # the node's own attested values: no sources, no framework to recompute by
            await send_bundle(tx, me, cycle=cycle, period=period, framework_digest=target_digest, values=own,
                              child_scores=(), now=now)
            return
        sources = await tx.results.sources(cycle, period, fw_digest, units)
        await send_bundle(tx, me, cycle=cycle, period=period, framework_digest=target_digest, values=own,
                          child_scores=tuple((s.unit, s.score, s.rank) for s in scored), now=now, sources=sources,
                          framework=row.envelope, provided=provided)
