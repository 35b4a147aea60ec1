"""Appeals (申诉/复核, issue 11) on a real county node: filing only in the publicity window, one open
appeal per figure, reviewers who are neither of the appealing unit nor of the value's provider, only
the assigned reviewer decides and only before the deadline (unless the office extends it), finalising
waits for every appeal, a rejected appeal changes nothing, and an upheld appeal against a value goes
through the normal entry and approval path: the provider re-enters, a reviewer approves, the scores
are recomputed, and the next publication fills the appeal's ``after`` with an audit entry of before
and after. SQLite throughout; the repository also on PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from aggregator.errors import AppraisalError
from nodes.accounts import SYSTEM, Principal
from nodes.intake import CellInput
from nodes.launcher import Federation
from nodes.runtime import NodeServices as Node
from nodes.services.appeals import Upload
from nodes.store import Store
from sync import publication as pubs
from tests.support.closing import DAY, OFFICE, TOWNS, county_with_results, finalise, publicise, unit_class
from tests.support.nodes import make_county

ACCOUNTS = (("wang", ["office"], {}), ("li", ["reviewer"], {}), ("zhao", ["reviewer"], {}),
            ("tjj", ["provider"], {"org": "区统计局"}), ("tjjrev", ["reviewer"], {"org": "区统计局"}),
            ("t17rev", ["reviewer"], {"units": [TOWNS[0]]}), ("t17", ["unit"], {"units": [TOWNS[0]]}),
            ("t18", ["unit"], {"units": [TOWNS[1]]}))


def person(login: str) -> Principal:
    roles, kw = next((set(r), k) for n, r, k in ACCOUNTS if n == login)
    return Principal(login=login, name=login.upper(), roles=frozenset(roles), via="password",
                     org=str(kw.get("org", "")), units=frozenset(kw.get("units", [])))  # type: ignore[arg-type]


T17, T18, LI, ZHAO, TJJ = person("t17"), person("t18"), person("li"), person("zhao"), person("tjj")


async def prepare(node: Node) -> None:
    for login, roles, kw in ACCOUNTS:
        await node.accounts.add(login, login.upper(), roles, SYSTEM, password=f"{login}-password-1", **kw)  # type: ignore[arg-type]
    await node.intake.generate("2026", OFFICE)
    await node.intake.edit_tasks("2026", "A1", [], OFFICE, provider="区统计局", frequency="Y", confirm=False,
                                 minimum="0", maximum="")


@pytest.fixture
async def county(tmp_path: Path) -> AsyncIterator[tuple[Node, Federation]]:
    node, fed = await county_with_results(tmp_path)
    await prepare(node)
    yield node, fed
    await node.context.store.close()


def later(node: Node, seconds: int) -> None:
    now = node.context.clock() + seconds
    node.context.clock = lambda: now  # type: ignore[method-assign]


async def refused(code: str, call: object) -> None:
    with pytest.raises(AppraisalError) as e:
        await call  # type: ignore[misc]
    assert e.value.code == code, (e.value.code, str(e.value))


async def actions(node: Node, prefix: str = "appeal.") -> list[tuple[str, str, dict[str, object]]]:
    async with node.context.store.read() as r:
        return [(e.actor, e.action, json.loads(e.detail)) for e in await r.audit.entries() if e.action.startswith(prefix)]


def file_a1(node: Node, who: Principal = T17, **kw: object) -> object:
    args: dict[str, object] = {"cycle": "2026", "period": "2026-Y", "unit": TOWNS[0], "target": "value",
                               "indicator": "A1", "reason": "A1 应为 800 亿元，见统计年鉴"} | kw
    return node.appeals.file(who, **args)  # type: ignore[arg-type]


async def test_filing_only_in_the_window_once_per_figure_and_for_ones_own_unit(county: tuple[Node, Federation]) -> None:
    node, _ = county
    await refused("appeals.not_published", file_a1(node))  # nothing published yet
    pub = await publicise(node)
    await refused("appeals.not_your_unit", file_a1(node, T18))
    await refused("appeals.reason_required", file_a1(node, reason="  "))
    await refused("appeals.reason_length", file_a1(node, reason="理" * 2001))
    await refused("appeals.indicator", file_a1(node, indicator="Z9"))
    await refused("appeals.target", file_a1(node, target="rank"))
    await refused("appeals.evidence_missing", file_a1(node, evidence=["0" * 64]))
    a = await file_a1(node)  # type: ignore[misc]
    assert (a.status, a.publication, a.before["value"], a.before["rank"]) == ("filed", pub.digest, "500", 2)
    assert a.decide_by == pub.closes_at + 10 * DAY
    await refused("appeals.duplicate", file_a1(node))
    score = await file_a1(node, target="score", indicator="", reason="B3 打分口径有误")  # type: ignore[misc]
    assert score.indicator == "" and "value" not in score.before
    later(node, 8 * DAY)  # the window has closed
    await refused("appeals.window_closed", file_a1(node, T18, unit=TOWNS[1]))
    assert [(who, act) for who, act, _ in await actions(node)] == [("t17", "appeal.file"), ("t17", "appeal.file")]


async def test_reviewer_eligibility_and_only_the_assigned_reviewer_decides(county: tuple[Node, Federation]) -> None:
    node, _ = county
    await publicise(node)
    a = await file_a1(node)  # type: ignore[misc]
    await refused("appeals.reviewer_role", node.appeals.assign(OFFICE, a.id, "wang"))
    await refused("appeals.reviewer_same_unit", node.appeals.assign(OFFICE, a.id, "t17rev"))
    await refused("appeals.reviewer_provider", node.appeals.assign(OFFICE, a.id, "tjjrev"))
    await refused("appeals.no_account", node.appeals.assign(OFFICE, a.id, "nobody"))
    assert await node.appeals.eligible(a.id) == ["li", "zhao"]
    await refused("appeals.not_assigned", node.appeals.decide(LI, a.id, "upheld", "属实"))
    assigned = await node.appeals.assign(OFFICE, a.id, "li")
    assert (assigned.status, assigned.reviewer, assigned.assigned_by) == ("assigned", "li", "wang")
    await refused("appeals.not_assigned", node.appeals.decide(ZHAO, a.id, "upheld", "属实"))
    await refused("appeals.decision", node.appeals.decide(LI, a.id, "maybe", "属实"))
    await refused("appeals.reason_required", node.appeals.decide(LI, a.id, "rejected", ""))
    # a score appeal: every provider of the unit's values must stand aside
    s = await file_a1(node, target="score", indicator="", reason="得分计算有误")  # type: ignore[misc]
    await refused("appeals.reviewer_provider", node.appeals.assign(OFFICE, s.id, "tjjrev"))
    # the unit sees its own appeals; the other township does not; the reviewer sees those assigned to it
    assert [x.id for x in await node.appeals.visible(T17)] == [a.id, s.id]
    assert await node.appeals.visible(T18) == []
    assert [x.id for x in await node.appeals.visible(LI)] == [a.id]
    assert [x.id for x in await node.appeals.todo(OFFICE)] == [s.id]  # waiting for a reviewer
    assert [x.id for x in await node.appeals.todo(LI)] == [a.id]  # waiting for li's decision


async def test_deadline_enforced_unless_the_office_extends_it_and_finalise_waits(county: tuple[Node, Federation]) -> None:
    node, _ = county
    pub = await publicise(node)
    a = await file_a1(node, target="grade", indicator="", reason="等次应为良好")  # type: ignore[misc]
    await node.appeals.assign(OFFICE, a.id, "li")
    later(node, 8 * DAY)
    async with node.context.store.tx() as tx:  # finalising waits for the appeal
        await refused("publication.appeals_open", node.publication.finalise(
            tx, OFFICE, cycle="2026", period="2026-Y", unit_class=await unit_class(node)))
    node.context.clock = lambda: pub.closes_at + 10 * DAY  # type: ignore[method-assign]
    await refused("appeals.deadline_passed", node.appeals.decide(LI, a.id, "rejected", "依据充分"))
    await refused("appeals.reason_required", node.appeals.extend(OFFICE, a.id, pub.closes_at + 12 * DAY, ""))
    await refused("appeals.extend_until", node.appeals.extend(OFFICE, a.id, pub.closes_at + 5 * DAY, "复核人出差"))
    extended = await node.appeals.extend(OFFICE, a.id, pub.closes_at + 12 * DAY, "复核人出差")
    assert extended.decide_by == pub.closes_at + 12 * DAY
    rejected = await node.appeals.decide(LI, a.id, "rejected", "等次依据得分，计算无误")
    assert (rejected.status, rejected.decision, rejected.decided_by) == ("rejected", "等次依据得分，计算无误", "li")
    await refused("appeals.closed", node.appeals.decide(LI, a.id, "upheld", "再议"))
    await refused("appeals.withdraw_closed", node.appeals.withdraw(T17, a.id))
    final = await finalise(node)  # decided: final now
    doc = pubs.read(final.envelope)
    fig = doc.unit(TOWNS[0])
    assert fig is not None and str(fig.score) == a.before["score"]  # a rejected appeal changes nothing
    assert (await node.appeals.get(T17, a.id)).after == {}
    steps = [(who, act) for who, act, _ in await actions(node)]
    assert steps == [("t17", "appeal.file"), ("wang", "appeal.assign"), ("wang", "appeal.extend"),
                     ("li", "appeal.decide")]
    # the appellant sees the decision in its task list
    assert [(x.id, x.status) for x in await node.appeals.todo(T17)] == [(a.id, "rejected")]


async def test_evidence_files_and_a_grade_appeal_corrected_by_the_next_publication(
        county: tuple[Node, Federation]) -> None:
    node, _ = county
    await publicise(node)
    pdf = b"%PDF-1.4 the township's own evidence"
    await refused("appeals.evidence_type", file_a1(node, uploads=[Upload("x.exe", b"MZ")]))
    await refused("appeals.evidence_empty", file_a1(node, uploads=[Upload("x.pdf", b"")]))
    await refused("appeals.evidence_format", file_a1(node, evidence=["not-a-hash"]))
    a = await file_a1(node, target="grade", indicator="", reason="等次有误", uploads=[Upload("../证明.pdf", pdf)])  # type: ignore[misc]
    assert len(a.evidence) == 1
    assert await node.appeals.evidence(T17, a.id, a.evidence[0]) == ("证明.pdf", "application/pdf", pdf)
    with pytest.raises(AppraisalError):  # the other township may not see the appeal or its files
        await node.appeals.evidence(T18, a.id, a.evidence[0])
    # another township cannot cite the first one's file by its hash
    await refused("appeals.evidence_not_yours", file_a1(node, T18, unit=TOWNS[1], target="score", indicator="",
                                                        evidence=list(a.evidence)))
    await node.appeals.assign(OFFICE, a.id, "zhao")
    await node.appeals.decide(ZHAO, a.id, "partly", "评估意见已由绩效办复核")
    again = await publicise(node, reason="复核后重新公示", opens_at=node.context.clock() - 60,
                            closes_at=node.context.clock() + 7 * DAY)
    done = await node.appeals.get(OFFICE, a.id)
    assert done.after["publication"] == again.digest and done.after["grade"] == a.before["grade"]


async def test_withdrawn_appeal_no_longer_holds_the_publication(county: tuple[Node, Federation]) -> None:
    node, _ = county
    await publicise(node)
    a = await file_a1(node)  # type: ignore[misc]
    await refused("appeals.not_your_appeal", node.appeals.withdraw(T18, a.id))
    assert (await node.appeals.withdraw(T17, a.id)).status == "withdrawn"
    await refused("appeals.assign_closed", node.appeals.assign(OFFICE, a.id, "li"))
    assert (await finalise(node)).state == "final"


async def test_upheld_value_appeal_corrected_through_entry_and_review(county: tuple[Node, Federation]) -> None:
    node, _ = county
    first = await publicise(node)
    before = pubs.read(first.envelope).unit(TOWNS[0])
    assert before is not None and before.rank == 2
    a = await file_a1(node)  # type: ignore[misc]
    await node.appeals.assign(OFFICE, a.id, "li")
    later(node, 8 * DAY)  # the window has closed; the deadline has not
    upheld = await node.appeals.decide(LI, a.id, "upheld", "年鉴数据为 1200 亿元，原报送有误")
    assert upheld.status == "upheld"
    # the cell is back with its provider, with the appeal as the reason, and the period unlocked for it
    async with node.context.store.read() as r:
        entry = (await r.intake.entries_at("2026", "2026-Y", [(TOWNS[0], "A1")]))[(TOWNS[0], "A1")]
        unlocks = await r.intake.unlocks("2026", "2026-Y")
    assert (entry.status, entry.provider, entry.value) == ("returned", "区统计局", "500")
    assert f"申诉 #{a.id}" in entry.reason and "年鉴数据" in entry.reason
    assert [(u.provider, u.until > node.context.clock()) for u in unlocks] == [("区统计局", True)]
    assert [(e.unit, e.key) for e in (await node.intake.todo("2026", T17)).returned] == [(TOWNS[0], "A1")]
    # a new publication before the correction is approved leaves the appeal waiting
    await publicise(node, reason="公示期延长", opens_at=node.context.clock() - 60,
                    closes_at=node.context.clock() + 7 * DAY)
    assert (await node.appeals.get(T17, a.id)).after == {}
    # the provider re-enters, a reviewer approves: the provided value counts and the scores are recomputed
    await node.intake.save("2026", "2026-Y", [CellInput(TOWNS[0], "A1", "1200", "按申诉复核更正")], TJJ, submit=True)
    await node.intake.decide("2026", "2026-Y", [(TOWNS[0], "A1")], "approve", LI)
    async with node.context.store.read() as r:
        digest = (await r.frameworks.list(role="issued"))[-1].digest
        held = await r.results.values("2026", "2026-Y", digest)
    assert held[TOWNS[0]]["A1"] == "1200"
    # the office publishes again: the appeal's after comes from it, audited with before and after
    third = await publicise(node, reason="申诉更正后重新公示", opens_at=node.context.clock() - 60,
                            closes_at=node.context.clock() + 7 * DAY)
    fig = pubs.read(third.envelope).unit(TOWNS[0])
    assert fig is not None and fig.rank == 1 and fig.score > before.score
    assert {v.indicator: (v.value, v.source) for v in fig.values}["A1"] == (Decimal(1200), "provided")
    done = await node.appeals.get(T17, a.id)
    assert (done.after["value"], done.after["rank"], done.after["publication"]) == ("1200", 1, third.digest)
    assert done.before["value"] == "500" and done.before["rank"] == 2
    corrected = [d for _, act, d in await actions(node) if act == "appeal.corrected"]
    assert len(corrected) == 1 and corrected[0]["appeal"] == a.id
    assert corrected[0]["before"]["value"] == "500" and corrected[0]["after"]["value"] == "1200"  # type: ignore[index]
    decided = next(d for _, act, d in await actions(node) if act == "appeal.decide")
    assert decided["reopened"]["cell"] == f"{TOWNS[0]}/A1"  # type: ignore[index]
    # nothing is corrected twice
    later(node, 8 * DAY)
    await finalise(node)
    assert len([1 for _, act, _ in await actions(node) if act == "appeal.corrected"]) == 1


async def test_appeal_repository_on_every_store(tmp_path: Path, store: Store) -> None:
    node, _ = await make_county(tmp_path, store=store)
    async with store.tx() as tx:
        first = await tx.appeals.add(cycle="2026", period="2026-Y", unit=TOWNS[0], publication="p" * 64,
                                     target="value", indicator="A1", reason="理由", evidence=["a" * 64], status="filed",
                                     filed_by="t17", filed_at=1, decide_by=9, before={"value": "500", "rank": 2})
        second = await tx.appeals.add(cycle="2026", period="2026-Y", unit=TOWNS[1], publication="p" * 64,
                                      target="grade", indicator="", reason="理由", evidence=[], status="filed",
                                      filed_by="t18", filed_at=2, decide_by=9, before={})
        await tx.appeals.change(second, status="assigned", reviewer="li", after={"rank": 1})
        assert await tx.publications.open_appeals(["p" * 64]) == 2
    async with store.read() as r:
        got = await r.appeals.get(first)
        assert got is not None and got.evidence == ("a" * 64,) and got.before == {"value": "500", "rank": 2}
        assert [a.id for a in await r.appeals.list(reviewer="li")] == [second]
        assert [a.after for a in await r.appeals.list(units=[TOWNS[1]], statuses=["assigned"])] == [{"rank": 1}]
    del node
