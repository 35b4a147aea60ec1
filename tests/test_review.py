"""审核 (review: manual): a county's office approves or returns each township's bundle. Approved values
count and the approval, signed with the reviewer's name, goes up with the roll-up; a returned bundle
counts for nothing and the township learns of it, with the reason, from its county's signed heartbeat."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from aggregator.errors import AppraisalError
from nodes.config import load_config
from nodes.launcher import Federation
from nodes.runtime import NodeServices as Node
from proto.appraisal.v1 import appraisal_pb2 as pb
from sync.envelope import PAYLOAD_APPROVAL, open_envelope
from sync.identity import Me
from sync.results_sender import send_bundle
from sync.trust_updates import receive_trust_update
from tests.support.nodes import make_county
from tests.support.receivers import Memory

TOWNS = ("510104017", "510104018")


@pytest.fixture
async def reviewing(tmp_path: Path) -> AsyncIterator[tuple[Node, Federation]]:
    node, fed = await make_county(tmp_path, review="manual")
    yield node, fed
    await node.context.store.close()


def me_of(fed: Federation, code: str) -> Me:
    cfg = load_config(fed.node_dir(code) / "node.yaml")
    return Me(code=cfg.code, name=cfg.name, level=cfg.level, path=cfg.node_path, key=cfg.key, chain=cfg.chain,
              root=cfg.root, parent=cfg.parent.code if cfg.parent else None, children={})


async def report(node: Node, town: Me, mem: Memory, a1: int) -> str:
    async with node.context.store.read() as r:
        fw_digest = (await r.frameworks.list(role="issued"))[-1].digest
    before = len(mem.queued)
    await send_bundle(mem, town, cycle="2026", period="2026-Y", framework_digest=fw_digest,
                      values={"A1": Decimal(a1), "B3": Decimal(80)}, child_scores=(), now=int(time.time()))
    accepted, reason = await node.results.submit(mem.queued[before], "510104017")
    assert accepted, reason
    return str(mem.bundles[-1].id)


async def test_values_count_only_once_approved_and_the_reviewer_travels_up(reviewing: tuple[Node, Federation]) -> None:
    node, fed = reviewing
    mems = {t: Memory() for t in TOWNS}
    ids = {t: await report(node, me_of(fed, t), mems[t], 100 + n) for n, t in enumerate(TOWNS)}
    async with node.context.store.read() as r:
        pending = {row.node for row in await r.bundles.by_status("pending")}
        held = await r.results.of_node(TOWNS[0])
    assert pending == set(TOWNS) and held == []  # nothing counts before review
    assert await node.review.review(TOWNS[0], ids[TOWNS[0]], "approve", "", "区考核办 张三") == "accepted"
    async with node.context.store.read() as r:
        assert [v.value for v in await r.results.of_node(TOWNS[0]) if v.indicator == "A1"] == ["100"]
        assert not [row for row in await r.outbox.pending() if row.subject.startswith("res.")]  # roll-up incomplete
    await node.review.review(TOWNS[1], ids[TOWNS[1]], "approve", "核对无误", "区考核办 李四")
    async with node.context.store.read() as r:
        outgoing = [row for row in await r.outbox.pending() if row.subject == "res.51.5101.510104"]
        audit = [(e.actor, e.action) for e in await r.audit.entries() if e.action.startswith("review.")]
    assert audit == [("区考核办 张三", "review.approve"), ("区考核办 李四", "review.approve")]
    msg = pb.ResultMessage.FromString(outgoing[-1].payload)
    reviewers = {pb.Approval.FromString(open_envelope(a, PAYLOAD_APPROVAL).payload).reviewer for a in msg.approvals}
    assert reviewers == {"区考核办 张三", "区考核办 李四"}
    with pytest.raises(AppraisalError) as refused:
        await node.review.review(TOWNS[0], ids[TOWNS[0]], "approve", "", "区考核办 张三")
    assert refused.value.code == "review.not_pending", refused.value


async def test_a_returned_bundle_counts_for_nothing_and_the_township_is_told(reviewing: tuple[Node, Federation]) -> None:
    node, fed = reviewing
    town = me_of(fed, TOWNS[0])
    mem = Memory()
    first = await report(node, town, mem, 100)
    with pytest.raises(AppraisalError) as refused:
        await node.review.review(TOWNS[0], first, "return", " ", "区考核办 张三")
    assert refused.value.code == "review.reason_required", refused.value
    assert await node.review.review(TOWNS[0], first, "return", "A1 与统计年鉴不符，请核实", "区考核办 张三") == "returned"
    second = await report(node, town, mem, 90)  # the township corrects and sends again: the chain goes on
    async with node.context.store.read() as r:
        assert await r.results.of_node(TOWNS[0]) == []
        statuses = {row.id: "returned" for row in await r.bundles.by_status("returned")}
    assert statuses == {first: "returned"}
    notice = await node.heartbeat.trust_update()
    pulse, _ = await receive_trust_update(node.context.store, town, notice, int(time.time()), None)
    assert [(b, reason) for b, _, reason, _ in pulse.returned] == [(first, "A1 与统计年鉴不符，请核实")]
    other, _ = await receive_trust_update(node.context.store, me_of(fed, TOWNS[1]), notice, int(time.time()), None)
    assert other.returned == ()  # each township hears only about its own
    assert await node.review.review(TOWNS[0], second, "approve", "", "区考核办 张三") == "accepted"


async def test_an_older_bundle_cannot_be_approved_over_a_newer_one(reviewing: tuple[Node, Federation]) -> None:
    node, fed = reviewing
    town = me_of(fed, TOWNS[0])
    mem = Memory()
    old = await report(node, town, mem, 100)
    await report(node, town, mem, 110)
    with pytest.raises(AppraisalError) as refused:
        await node.review.review(TOWNS[0], old, "approve", "", "区考核办 张三")
    assert refused.value.code == "review.superseded", refused.value
    with pytest.raises(AppraisalError) as refused:
        await node.review.review(TOWNS[0], old, "maybe", "", "x")
    assert refused.value.code == "review.decision", refused.value




async def test_a_framework_that_cannot_be_scored_does_not_stop_ingest(tmp_path: Path) -> None:
    """(Found in review.) A threshold indicator whose baseline lies above a unit's target passes the
    structure checks but cannot be scored: the township's bundle is still taken, its values held, and
    the county's audit log says why nothing was scored."""
    from tests.support.nodes import PROVINCE

    broken = PROVINCE.replace('{code: A1, name: 地区生产总值, weight: 60, unit: 亿元, target: 1000, targets: {"5101": 2000}}',
                              '{code: A1, name: 地区生产总值, weight: 60, unit: 亿元, target: 1000, targets: {"5101": 2000}, '
                              'method: threshold, params: {baseline: 5000, challenge: 6000}}')
    assert broken != PROVINCE
    node, fed = await make_county(tmp_path, broken)
    try:
        mem = Memory()
        bundle_id = await report(node, me_of(fed, TOWNS[0]), mem, 100)
        async with node.context.store.read() as r:
            held = [v.value for v in await r.results.of_node(TOWNS[0]) if v.indicator == "A1"]
            failed = await r.audit.entries(action="recompute.failed")
            taken = [e.subject for e in await r.audit.entries(action="accept.results")]
        assert held == ["100"] and taken == [bundle_id]
        assert failed and "baseline" in failed[0].detail
    finally:
        await node.context.store.close()
