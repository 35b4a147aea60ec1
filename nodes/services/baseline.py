"""Growth's base (纵向比较) at this node: the previous cycle's values, carried onto this cycle's tree
and written into the units' assessment documents.

When a framework with growth indicators is scored and the office has not entered a unit's 上年数值
for one of them, this service takes the values the node holds for the same period a year earlier.
They are the values of its own framework of the previous cycle (same role and class, newest
version). It carries them over the division changes between the two cycles' last days
(aggregator/baseline.py) and records each one in the unit's assessment document: ``previous`` gets
the value, ``carried`` gets its period and source units. The document is what a publication signs as
the unit's evidence, so anyone recomputing a published score gets the same base and sees where it came
from (``aggregator.inputs.to_inputs``).

What the office enters itself always wins, and entering ``previous`` clears ``carried``
(nodes/assessments.merge). A carried value that no longer holds (last year's value corrected or
withdrawn, a change list arriving) is updated or removed on the next scoring. Every write is audited
(``assessment.carried``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from decimal import Decimal
from typing import Any, Protocol

from aggregator.baseline import Carried, growth_baseline, growth_indicators
from aggregator.framework import Framework
from aggregator.lineage import DivisionChangeError, Lineage
from aggregator.numbers import parse_decimal, to_text
from nodes.intake import same_period_last_year
from nodes.services.context import framework_of
from sync.ports import AuditRepo, FrameworkRecord

log = logging.getLogger("fedappraisal.baseline")


class Lineages(Protocol):
    """What the baseline needs of the division change lists (nodes/services/divisions.py)."""

    async def load(self) -> None: ...
    def lineage(self) -> Lineage | None: ...


class _Frameworks(Protocol):
    async def list(self, role: str | None = None, cycle: str | None = None) -> list[FrameworkRecord]: ...


class _Results(Protocol):
    async def values(self, cycle: str, period: str, framework_digest: str,
                     nodes: Iterable[str] | None = None) -> dict[str, dict[str, str]]: ...


class _Assessments(Protocol):
    async def put(self, unit: str, cycle: str, period: str, document: str, now: int) -> None: ...


class BaselineTx(Protocol):
    @property
    def frameworks(self) -> _Frameworks: ...
    @property
    def results(self) -> _Results: ...
    @property
    def assessments(self) -> _Assessments: ...
    @property
    def audit(self) -> AuditRepo: ...


class GrowthBaseline:
    def __init__(self, me_code: str, divisions: Lineages) -> None:
        self.me_code = me_code
        self.divisions = divisions

    async def refresh(self, tx: BaselineTx, fw: Framework, row: FrameworkRecord, period: str,
                      recorded: dict[str, str], now: int) -> dict[str, str]:
        """``recorded`` (unit → assessment document) with the carried bases brought up to date; the
        documents that changed are stored and audited in ``tx``."""
        wanted = growth_indicators(fw)
        if not wanted:
            return recorded
        carried, names = await self._carried(tx, fw, row, period)
        out = dict(recorded)
        for unit in fw.units:
            doc: dict[str, Any] = json.loads(recorded.get(unit.code) or "{}")
            before = json.dumps(doc, ensure_ascii=False, sort_keys=True)
            old_previous: dict[str, str] = doc.get("previous", {})
            old_marks: dict[str, Any] = doc.get("carried", {})
            previous, marks = dict(old_previous), dict(old_marks)
            changed: dict[str, Any] = {}
            dropped = []
            for ind in wanted:
                if ind in previous and ind not in marks:
                    continue  # the office entered it
                c = carried.get(unit.code, {}).get(ind)
                if c is None:
                    if ind in marks:
                        previous.pop(ind, None)
                        marks.pop(ind)
                        dropped.append(ind)
                    continue
                mark = {"period": c.period, "from": [{"code": s, "name": names.get(s, "")} for s in c.sources]}
                previous[ind] = to_text(c.value)
                marks[ind] = mark
                if old_previous.get(ind) != previous[ind] or old_marks.get(ind) != mark:
                    changed[ind] = {"value": previous[ind], **mark}
            for key, part in (("previous", previous), ("carried", marks)):
                if part:
                    doc[key] = part
                else:
                    doc.pop(key, None)
            after = json.dumps(doc, ensure_ascii=False, sort_keys=True)
            if after == before:
                continue
            await tx.assessments.put(unit.code, fw.cycle, period, after, now)
            await tx.audit.append(self.me_code, "assessment.carried", unit.code,
                                  {"cycle": fw.cycle, "period": period, "carried": changed, "dropped": dropped}, now)
            out[unit.code] = after
        return out

    async def _carried(self, tx: BaselineTx, fw: Framework, row: FrameworkRecord,
                       period: str) -> tuple[dict[str, dict[str, Carried]], dict[str, str]]:
        """The carried bases, and the previous cycle's unit names (the names of that time)."""
        last_year = str(int(fw.cycle) - 1)
        earlier = [r for r in await tx.frameworks.list(role=row.role, cycle=last_year) if r.unit_class == row.unit_class]
        if not earlier:
            return {}, {}
        prev_row = max(earlier, key=lambda r: r.version)
        prev_fw = framework_of(prev_row)
        names = {u.code: u.name for u in prev_fw.units}
        then = same_period_last_year(period)
        raw = await tx.results.values(last_year, then, prev_row.digest, nodes=list(names))
        values: dict[str, dict[str, Decimal]] = {
            u: {k: parse_decimal(v, k) for k, v in vals.items()} for u, vals in raw.items()}
        await self.divisions.load()
        try:
            return growth_baseline(fw, then, values, self.divisions.lineage()), names
        except DivisionChangeError as exc:
            # The lineage cannot say (a previous cycle before its base tree): nothing is carried, and
            # the office enters 上年数值 itself, as before the lists.
            log.warning("cannot carry %s values onto %s: %s", then, fw.cycle, exc)
            return {}, names
