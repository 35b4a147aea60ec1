"""Data intake at a node (issue 10): the task book from the frameworks, a data provider's grid, a
batch with one bad cell taken in no part, outliers that need a comment, drafts and submission,
lateness and the office's unlock, the evaluated unit's confirmation or objection, the reviewer's
return and approval (with the person in the history and the audit log), evidence files, and the
approved values of a provider counting at this node and signed up the federation, where the parent
recomputes the roll-up with them. A real county node on a real SQLite store (and on PostgreSQL in
test_intake_on_every_store)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from aggregator.errors import AppraisalError
from nodes.accounts import SYSTEM, Principal
from nodes.clock import FixedClock
from nodes.intake import CellInput, IntakeRefused, window_of
from nodes.launcher import Federation
from nodes.runtime import NodeServices as Node
from nodes.runtime import build_services
from nodes.services.context import framework_of
from nodes.store import Store
from proto.appraisal.v1 import appraisal_pb2 as pb
from sync.approvals import verify_attestations
from sync.codec import bundle_from_message
from sync.rollup_check import RollupMismatch
from sync.trust import verify_chain
from tests.support.nodes import make_county

TOWNS = ("510104017", "510104018")
OPENS, DUE = window_of("2026-Y")


def person(login: str, roles: set[str], **kw: object) -> Principal:
    return Principal(login=login, name=login.upper(), roles=frozenset(roles), via="password", **kw)  # type: ignore[arg-type]


TJJ = person("tjj", {"provider"}, org="区统计局")
REVIEWER = person("li", {"reviewer"})
OFFICE = person("wang", {"office"})
TOWN_STAFF = person("town17", {"unit"}, units=frozenset({TOWNS[0]}))


@pytest.fixture
async def county(tmp_path: Path) -> AsyncIterator[tuple[Node, Federation, FixedClock]]:
    base, fed = await make_county(tmp_path)
    clock = FixedClock(OPENS + 86400 * 30)  # inside 2026-Y's window, whatever today is
    node = build_services(base.context.cfg, base.context.store, clock)
    await node.intake.generate("2026", OFFICE)
    await node.intake.edit_tasks("2026", "A1", [], OFFICE, provider="区统计局", frequency="Y", confirm=False,
                                 minimum="0", maximum="")
    yield node, fed, clock
    await base.context.store.close()


async def entries(node: Node) -> dict[tuple[str, str], tuple[str, str]]:
    async with node.context.store.read() as r:
        return {(e.unit, e.key): (e.value, e.status) for e in await r.intake.entries("2026", "2026-Y")}


async def test_the_task_book_comes_from_the_frameworks(county: tuple[Node, Federation, FixedClock]) -> None:
    node, _, _ = county
    tasks = await node.intake.tasks("2026", OFFICE)
    # A1 for each township (B3 is rated by raters: an opinion, not an entry); the county's own A1 is the
    # townships' roll-up, so it is no task of the county's.
    assert {(t.unit, t.indicator, t.provider) for t in tasks} == {(t, "A1", "区统计局") for t in TOWNS}
    assert [p.period for p in await node.intake.periods("2026")] == ["2026-Y"]
    # the provider sees its tasks, the township's staff none of them (provided by 区统计局), the reviewer none
    assert len(await node.intake.tasks("2026", TJJ)) == 2
    assert await node.intake.tasks("2026", TOWN_STAFF) == []
    assert await node.intake.tasks("2026", person("x", {"provider"}, org="区财政局")) == []
    grids = await node.intake.grids("2026", "2026-Y", TJJ)
    assert len(grids) == 1 and [r.unit for r in grids[0].rows] == list(TOWNS)
    assert [c.key for c in grids[0].columns] == ["A1"] and grids[0].open


async def test_a_bad_cell_saves_nothing_and_names_itself(county: tuple[Node, Federation, FixedClock]) -> None:
    node, _, _ = county
    with pytest.raises(IntakeRefused) as bad:
        await node.intake.save("2026", "2026-Y", [CellInput(TOWNS[0], "A1", "1200"),
                                                  CellInput(TOWNS[1], "A1", "12,5万", where="数据!C4")], TJJ,
                               submit=False)
    assert [(p.where, p.code) for p in bad.value.problems] == [("数据!C4", "intake.not_a_number")]
    assert "未保存任何数据" in str(bad.value)
    with pytest.raises(IntakeRefused) as neg:
        await node.intake.save("2026", "2026-Y", [CellInput(TOWNS[0], "A1", "-5")], TJJ, submit=False)
    assert neg.value.problems[0].code == "intake.below_minimum"
    with pytest.raises(IntakeRefused) as other:
        await node.intake.save("2026", "2026-Y", [CellInput(TOWNS[0], "B3", "80")], TJJ, submit=False)
    assert other.value.problems[0].code == "intake.not_assigned"
    assert await entries(node) == {}
    saved = await node.intake.save("2026", "2026-Y", [CellInput(TOWNS[0], "A1", "１２００"),
                                                      CellInput(TOWNS[1], "A1", "980.50")], TJJ, submit=False)
    assert saved.saved == 2 and saved.submitted == 0
    assert await entries(node) == {(TOWNS[0], "A1"): ("1200", "draft"), (TOWNS[1], "A1"): ("980.5", "draft")}
    async with node.context.store.read() as r:
        audit = [e for e in await r.audit.entries() if e.action == "intake.save"]
    assert audit[-1].actor == "tjj" and json.loads(audit[-1].detail)["as_entered"] == {
        f"{TOWNS[0]}/A1": "１２００", f"{TOWNS[1]}/A1": "980.50"}


async def test_return_approve_and_the_parent_recomputes_with_provided_values(
        county: tuple[Node, Federation, FixedClock]) -> None:
    node, _, clock = county
    await node.intake.save("2026", "2026-Y", [CellInput(TOWNS[0], "A1", "1200"), CellInput(TOWNS[1], "A1", "980")],
                           TJJ, submit=True)
    assert {s for _, s in (await entries(node)).values()} == {"submitted"}
    queue, _ = await node.intake.queue("2026", REVIEWER)
    assert [(q.entry.unit, q.entry.value) for q in queue] == [(TOWNS[0], "1200"), (TOWNS[1], "980")]
    # nobody approves their own entry; a return needs a reason
    with pytest.raises(AppraisalError) as own:
        await node.intake.decide("2026", "2026-Y", [(TOWNS[0], "A1")], "approve",
                                 person("tjj", {"provider", "reviewer"}, org="区统计局"))
    assert own.value.code == "review.own_entry"
    with pytest.raises(AppraisalError):
        await node.intake.decide("2026", "2026-Y", [(TOWNS[1], "A1")], "return", REVIEWER, " ")
    await node.intake.decide("2026", "2026-Y", [(TOWNS[1], "A1")], "return", REVIEWER, "与统计年鉴不符，请核实")
    todo = await node.intake.todo("2026", TJJ)
    assert [(e.unit, e.reason) for e in todo.returned] == [(TOWNS[1], "与统计年鉴不符，请核实")]
    # an outlier against the last approved value needs a comment
    d = await node.intake.decide("2026", "2026-Y", [(TOWNS[0], "A1")], "approve", REVIEWER)
    assert d.approved == 1
    await node.intake.save("2026", "2026-Y", [CellInput(TOWNS[1], "A1", "1010", "已按年鉴更正")], TJJ, submit=True)
    await node.intake.decide("2026", "2026-Y", [(TOWNS[1], "A1")], "approve", REVIEWER)
    async with node.context.store.read() as r:
        held = await r.results.values("2026", "2026-Y", (await r.frameworks.list(role="issued"))[-1].digest)
        last = await r.bundles.last("510104")
        received = (await r.frameworks.list(role="received"))[-1]
        hist = await r.intake.history("2026", "2026-Y", [(TOWNS[1], "A1")])
        actors = [(e.actor, e.action) for e in await r.audit.entries() if e.action.startswith("intake.")]
    assert held[TOWNS[0]]["A1"] == "1200" and held[TOWNS[1]]["A1"] == "1010"
    assert [(h.actor, h.action, h.before, h.value) for h in hist] == [
        ("tjj", "submit", "", "980"), ("li", "return", "", "980"), ("tjj", "submit", "980", "1010"),
        ("li", "approve", "", "1010")]
    assert ("li", "intake.approve") in actors and ("li", "intake.return") in actors
    # the county's roll-up (A1: sum) carries the provided values, signed; its city recomputes it from them
    assert last is not None
    bundle = bundle_from_message(last.message)
    assert bundle.values["A1"] == Decimal(2210)
    assert dict(bundle.provided) == {TOWNS[0]: {"A1": Decimal(1200)}, TOWNS[1]: {"A1": Decimal(1010)}}
    cfg = node.context.cfg
    now = int(time.time())  # the demo certificates were issued today: check them as of today
    signer = verify_chain(cfg.chain, cfg.root, now)
    issued = (framework_of(received), received.digest)
    msg = pb.ResultMessage.FromString(last.message)
    verify_attestations(msg, signer, bundle, cfg.root, now, issued=issued)
    # and a county that signs a sum its providers' values do not give is refused by name
    from sync.results_sender import send_bundle
    from tests.support.receivers import Memory

    mem = Memory()
    forged = dict(bundle.values)
    forged["A1"] = Decimal(9999)
    await send_bundle(mem, node.context.me, cycle="2026", period="2026-Y", framework_digest=bundle.framework_digest,
                      values=forged, child_scores=(), now=clock(), framework=msg.framework,
                      provided=dict(bundle.provided))
    bad = mem.queued[-1]
    with pytest.raises(RollupMismatch) as exc:
        verify_attestations(pb.ResultMessage.FromString(bad), signer, bundle_from_message(bad), cfg.root, now,
                            issued=issued)
    assert exc.value.detail["indicator"] == "A1" and exc.value.detail["recomputed"] == "2210"


async def test_a_report_of_the_unit_does_not_overwrite_a_provided_value(
        county: tuple[Node, Federation, FixedClock]) -> None:
    from tests.support.receivers import Memory
    from tests.test_review import me_of, report

    _, fed, _ = county
    # on the system clock, which the township's bundle (signed today) needs to verify
    node = build_services(county[0].context.cfg, county[0].context.store)
    if not (await node.intake.grids("2026", "2026-Y", TJJ))[0].open:  # after 2026-Y's deadline: unlocked
        await node.intake.unlock("2026", "2026-Y", "区统计局", int(time.time()) + 86400, "补报", OFFICE)
    await node.intake.save("2026", "2026-Y", [CellInput(TOWNS[0], "A1", "1200")], TJJ, submit=True)
    await node.intake.decide("2026", "2026-Y", [(TOWNS[0], "A1")], "approve", REVIEWER)
    await report(node, me_of(fed, TOWNS[0]), Memory(), 777)  # the township's own A1 arrives later
    async with node.context.store.read() as r:
        digest = (await r.frameworks.list(role="issued"))[-1].digest
        held = await r.results.values("2026", "2026-Y", digest)
    assert held[TOWNS[0]]["A1"] == "1200" and held[TOWNS[0]]["B3"] == "80"


async def test_deadline_unlock_lateness_and_confirmation(county: tuple[Node, Federation, FixedClock]) -> None:
    node, _, clock = county
    # the review chain set for the group A (经济发展): every leaf under it now needs the unit's confirmation
    assert await node.intake.edit_tasks("2026", "A", [], OFFICE, provider="区统计局", frequency="Y", confirm=True,
                                        minimum="", maximum="") == 2
    assert all(t.confirm for t in await node.intake.tasks("2026", OFFICE))
    clock.now = DUE + 60  # past the deadline: closed until the office unlocks it
    with pytest.raises(IntakeRefused) as closed:
        await node.intake.save("2026", "2026-Y", [CellInput(TOWNS[0], "A1", "1200")], TJJ, submit=True)
    assert closed.value.problems[0].code == "intake.closed"
    with pytest.raises(AppraisalError):
        await node.intake.unlock("2026", "2026-Y", "区统计局", clock() + 86400, "", OFFICE)
    await node.intake.unlock("2026", "2026-Y", "区统计局", clock() + 86400, "统计局年报延迟发布", OFFICE)
    saved = await node.intake.save("2026", "2026-Y", [CellInput(TOWNS[0], "A1", "1200")], TJJ, submit=True)
    assert saved.late == 1
    async with node.context.store.read() as r:
        assert (await r.intake.entries("2026", "2026-Y"))[0].late
    # confirm: the reviewer sees nothing until the township confirms; an objection returns it to the provider
    assert await node.intake.queue("2026", REVIEWER) == ([], 0)
    with pytest.raises(AppraisalError):
        await node.intake.confirm("2026", "2026-Y", [(TOWNS[1], "A1")], TOWN_STAFF)  # not its unit
    await node.intake.confirm("2026", "2026-Y", [(TOWNS[0], "A1")], TOWN_STAFF, objection="我镇统计口径为 1150")
    assert (await entries(node))[(TOWNS[0], "A1")] == ("1200", "objected")
    assert [e.reason for e in (await node.intake.todo("2026", TJJ)).returned] == ["我镇统计口径为 1150"]
    await node.intake.save("2026", "2026-Y", [CellInput(TOWNS[0], "A1", "1150", "按镇意见更正")], TJJ, submit=True)
    await node.intake.confirm("2026", "2026-Y", [(TOWNS[0], "A1")], TOWN_STAFF)
    assert [q.entry.status for q in (await node.intake.queue("2026", REVIEWER))[0]] == ["confirmed"]


async def test_evidence_files(county: tuple[Node, Federation, FixedClock]) -> None:
    node, _, _ = county
    pdf = b"%PDF-1.4 evidence"
    sha = await node.intake.attach("2026", "2026-Y", TOWNS[0], "A1", "../../年报 2026.pdf", pdf, TJJ)
    name, ctype, data = await node.intake.attachment(sha, REVIEWER)
    assert (name, ctype, data) == ("年报 2026.pdf", "application/pdf", pdf)
    for filename, body, code in (("x.exe", b"MZ", "intake.attachment_type"), ("x.pdf", b"", "intake.attachment_empty"),
                                 ("x.pdf", b"0" * (10 * 1024 * 1024 + 1), "intake.attachment_too_large")):
        with pytest.raises(AppraisalError) as e:
            await node.intake.attach("2026", "2026-Y", TOWNS[0], "A1", filename, body, TJJ)
        assert e.value.code == code
    with pytest.raises(AppraisalError):  # not the provider's cell
        await node.intake.attach("2026", "2026-Y", TOWNS[0], "B3", "a.pdf", pdf, TJJ)
    with pytest.raises(AppraisalError):  # a unit user of the other township does not see it
        await node.intake.attachment(sha, person("t18", {"unit"}, units=frozenset({TOWNS[1]})))
    grids = await node.intake.grids("2026", "2026-Y", TJJ)
    assert grids[0].cell(TOWNS[0], "A1").attachments == ("年报 2026.pdf",)


async def test_intake_on_every_store(tmp_path: Path, store: Store) -> None:
    base, _ = await make_county(tmp_path, store=store)
    node = build_services(base.context.cfg, base.context.store, FixedClock(OPENS + 86400))
    await node.intake.generate("2026", SYSTEM)
    await node.intake.edit_tasks("2026", "A1", [], OFFICE, provider="区统计局", frequency="Y", confirm=False,
                                 minimum="", maximum="")
    await node.intake.save("2026", "2026-Y", [CellInput(t, "A1", "100") for t in TOWNS], TJJ, submit=True)
    d = await node.intake.decide("2026", "2026-Y", [(t, "A1") for t in TOWNS], "approve", REVIEWER)
    assert d.approved == 2
    async with node.context.store.read() as r:
        last = await r.bundles.last("510104")
    assert last is not None and bundle_from_message(last.message).values["A1"] == Decimal(200)


async def test_a_certified_county_cannot_slip_in_provided_values_for_units_not_its_own(
        county: tuple[Node, Federation, FixedClock]) -> None:
    """A dishonest county signs a roll-up whose `provided` values name a township of another county, or a
    unit code that is no code at all: its city refuses the first by name when it recomputes the roll-up,
    and the codec refuses the second before anything else is read."""
    from sync.envelope import EnvelopeError
    from sync.results_sender import send_bundle
    from tests.support.receivers import Memory

    node, _, _ = county
    cfg = node.context.cfg
    now = int(time.time())
    async with node.context.store.read() as r:
        received = (await r.frameworks.list(role="received"))[-1]
        issued = (await r.frameworks.list(role="issued"))[-1]
    signer = verify_chain(cfg.chain, cfg.root, now)
    mem = Memory()
    await send_bundle(mem, node.context.me, cycle="2026", period="2026-Y", framework_digest=received.digest,
                      values={"A1": Decimal(5)}, child_scores=(), now=now, framework=issued.envelope,
                      provided={"510105002": {"A1": Decimal(5)}})  # 草市街街道 belongs to 青羊区
    bad = mem.queued[-1]
    with pytest.raises(EnvelopeError) as foreign:
        verify_attestations(pb.ResultMessage.FromString(bad), signer, bundle_from_message(bad), cfg.root, now,
                            issued=(framework_of(received), received.digest))
    assert foreign.value.code == "rollup.provided_not_unit"
    await send_bundle(mem, node.context.me, cycle="2026", period="2026-Y", framework_digest=received.digest,
                      values={"A1": Decimal(5)}, child_scores=(), now=now, framework=issued.envelope,
                      provided={"51010401x": {"A1": Decimal(5)}})
    with pytest.raises(EnvelopeError) as junk:
        bundle_from_message(mem.queued[-1])
    assert junk.value.code == "bundle.bad_provided"
