"""A county node records assessments about its townships and scores with them: real node code,
real SQLite store, real signed cascade (no NATS needed: the receiving path is called directly)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from aggregator.errors import AppraisalError
from nodes.runtime import NodeServices as Node
from tests.support.nodes import make_county


@pytest.fixture
async def county(tmp_path: Path) -> AsyncIterator[Node]:
    node, _ = await make_county(tmp_path)
    yield node
    await node.context.store.close()


async def test_assessments_feed_the_scores(county: Node) -> None:
    async with county.context.store.read() as r:
        issued = await r.frameworks.list(role="issued")
    assert len(issued) == 1  # the county derived its townships' framework from the signed chain
    async with county.context.store.tx() as tx:  # both report A1 as 0: assessed, and A1 earns nothing
        for town in ("510104017", "510104018"):
            await tx.results.put(node=town, cycle="2026", period="2026-Y", framework_digest=issued[0].digest,
                                 values={"A1": "0"}, source="reported", bundle_id="b", now=1)
    await county.entry.enter_assessment("2026", "2026-Y", "510104017",
                                  {"ratings": {"B3": [60, 80, 85, 90, 100]}, "events": [{"item": "J1", "points": 3}]},
                                  "市统计局")
    await county.entry.enter_assessment("2026", "2026-Y", "510104018", {"ratings": {"B3": [70, 70, 70]},
                                                                 "events": [{"item": "V1", "note": "12·3 事故"}]},
                                  "区应急局")
    async with county.context.store.read() as r:
        scores = {s.unit: json.loads(s.explanation) for s in await r.scores.list("2026", "2026-Y")}
        audit = await r.audit.entries(action="enter.assessment")
    town = scores["510104017"]
    b3 = next(p for p in town["parts"] if p["indicator"] == "B3")
    assert b3["share"] == "0.85" and Decimal(b3["score"]) == Decimal(34)  # 40 × mean(80, 85, 90)/100
    assert Decimal(town["bonus"]) == 2  # J1 capped at 2 per item
    assert Decimal(town["score"]) == 36  # A1 reported as 0: 0 + 34 + 2
    other = scores["510104018"]
    assert Decimal(other["score"]) == 28 and other["grade"] == "差"  # 40 × 0.7; the veto is recorded too
    assert {"item": "V1", "kind": "veto", "points": "0", "note": "12·3 事故"} in other["adjustments"]
    assert [e.actor for e in audit] == ["市统计局", "区应急局"]
    async with county.context.store.read() as r:
        changes = [(e.actor, json.loads(e.detail)) for e in await r.audit.entries(action="score.change")]
    # Every change of a score, rank or grade is audited: who, what triggered it, old and new.
    actor, last = changes[-1]
    assert actor == "区应急局" and "510104018" in last["cause"] and "assessment" in last["cause"]
    assert last["changes"]["510104018"]["score"][1] == "28"
    assert "grade" not in last["changes"]["510104018"]  # 差 before (nothing reported) and after: only changes
    assert "510104017" not in last["changes"]  # unchanged units are not repeated


async def test_assessments_are_checked(county: Node) -> None:
    with pytest.raises(AppraisalError) as refused:
        await county.entry.enter_assessment("2026", "2026-Y", "510104017", {"ratings": {"B3": [120]}}, "x")
    assert refused.value.code == "assessment.score_range", refused.value
    with pytest.raises(AppraisalError) as refused:
        await county.entry.enter_assessment("2026", "2026-Y", "510703001", {"ratings": {"B3": [80]}}, "x")
    assert refused.value.code == "entry.not_a_unit", refused.value
    with pytest.raises(AppraisalError) as refused:
        await county.entry.enter_assessment("2026", "2026-Y", "510104017", {"gossip": {}}, "x")
    assert refused.value.code == "assessment.unknown_fields", refused.value
    with pytest.raises(AppraisalError) as refused:
        await county.entry.enter_assessment("2026", "2026-Y", "510104017",
                                      {"milestones": {"B3": [{"code": "m1", "due": "soon"}]}}, "x")
    assert refused.value.code == "assessment.bad_date", refused.value
    async with county.context.store.read() as r:
        assert await r.audit.entries(action="enter.assessment") == []


async def test_progress_warnings_and_repeated_grades(county: Node) -> None:
    async with county.context.store.tx() as tx:
        digest_ = (await tx.frameworks.list(role="issued"))[0].digest
        for town, value in (("510104017", "120"), ("510104018", "80")):
            await tx.results.put(node=town, cycle="2026", period="2026-M03", framework_digest=digest_,
                                values={"A1": value}, source="reported", bundle_id="b", now=1)
        for cycle, grades in (("2025", ("一般", "良好")), ("2026", ("一般", "一般"))):
            await tx.scores.put([{"unit": u, "cycle": cycle, "period": f"{cycle}-Y", "framework_digest": "d",
                                  "score": "70", "rank": 1, "explanation": json.dumps({"grade": g})}
                                 for u, g in zip(("510104017", "510104018"), grades, strict=True)])
    found = {w["unit"]: w for w in await county.read.warnings("2026", "2026-M03")}
    # township target 500 (2000 split by the city, then by the county); a quarter of it is expected by March
    assert found["510104017"]["expected"] == "125" and found["510104017"]["level"] == "green"
    assert found["510104018"]["level"] == "red" and found["510104018"]["name"] == "东湖街道"
    assert await county.read.repeated_grades("一般", 2) == ["510104017"]
    with pytest.raises(AppraisalError) as refused:
        await county.read.warnings("2026", "2026-M13")
    assert refused.value.code == "input.period", refused.value
