"""Cascade and results receivers on a real store (SQLite and PostgreSQL): what is accepted,
what is rejected with which reason, and that a rejection changes nothing but the audit log."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from nodes.store import Store
from proto.appraisal.v1 import appraisal_pb2 as pb
from sync import keys
from sync.cascade_receiver import receive_cascade
from sync.envelope import PAYLOAD_FRAMEWORK, PAYLOAD_RESULTS, sign
from sync.identity import Me
from sync.results_receiver import receive_results
from sync.results_sender import send_bundle
from tests.support.hierarchy import NOW, Hierarchy
from tests.support.receivers import Memory, _county_with_framework, no_follow_up, snapshot


@pytest.fixture(scope="module")
def h() -> Hierarchy:
    return Hierarchy.build()


async def rejections(store: Store) -> list[str]:
    async with store.read() as r:
        import json

        return [json.loads(e.detail)["reason"] for e in await r.audit.entries(action="reject.framework")]


async def accept_city(store: Store, me: Me, data: bytes) -> None:
    outcome = await receive_cascade(store, me, data, NOW, no_follow_up)
    assert outcome.accepted and not outcome.duplicate, outcome.reason


async def test_accepts_then_ignores_exact_repeat(store: Store, h: Hierarchy) -> None:
    me = h.me("5101")
    data, digest = h.cascade_to_city()
    await accept_city(store, me, data)
    before = await snapshot(store)
    again = await receive_cascade(store, me, data, NOW, no_follow_up)
    assert again.accepted and again.duplicate
    assert await snapshot(store) == before
    async with store.read() as r:
        row = await r.frameworks.get(digest)
    assert row is not None and row.cascade == data  # stored exactly as received


async def test_county_accepts_linked_chain(store: Store, h: Hierarchy) -> None:
    outcome = await receive_cascade(store, h.me("510104"), h.cascade_to_county(), NOW, no_follow_up)
    assert outcome.accepted, outcome.reason


@pytest.mark.parametrize("position", ["payload", "signature"])
async def test_tampered_byte_rejected_and_nothing_changes(store: Store, h: Hierarchy, position: str) -> None:
    me = h.me("5101")
    await accept_city(store, me, h.cascade_to_city(1)[0])
    before = await snapshot(store)
    data, _ = h.cascade_to_city(2)
    msg = pb.CascadeMessage.FromString(data)
    env = pb.Envelope.FromString(msg.frameworks[0])
    if position == "payload":
        p = bytearray(env.payload)
        p[len(p) // 2] ^= 0x01
        env.payload = bytes(p)
    else:
        s = bytearray(env.signatures[0].sig)
        s[0] ^= 0x01
        env.signatures[0].sig = bytes(s)
    msg.frameworks[0] = env.SerializeToString()
    outcome = await receive_cascade(store, me, msg.SerializeToString(), NOW, no_follow_up)
    assert not outcome.accepted and outcome.code == "envelope.bad_signature"
    assert await snapshot(store) == before
    async with store.read() as r:
        assert [json.loads(e.detail)["code"] for e in await r.audit.entries(action="reject.framework")] == [outcome.code]


async def test_signer_never_certified_rejected(store: Store, h: Hierarchy) -> None:
    me = h.me("510104")
    before = await snapshot(store)
    # A city framework signed by a key 四川省 never certified, with a chain that claims to be 成都市.
    rogue = keys.generate()
    good = pb.CascadeMessage.FromString(h.cascade_to_county())
    city_env = pb.Envelope.FromString(good.frameworks[1])
    forged = sign(PAYLOAD_FRAMEWORK, city_env.payload, rogue)
    msg = pb.CascadeMessage(frameworks=[good.frameworks[0], forged], certificate_chain=good.certificate_chain)
    outcome = await receive_cascade(store, me, msg.SerializeToString(), NOW, no_follow_up)
    assert not outcome.accepted and outcome.code == "envelope.wrong_key"
    # And a chain whose certificate was issued by the wrong parent.
    bad_chain = [h.certify("5107", "5101", rogue)]
    msg2 = pb.CascadeMessage(frameworks=[good.frameworks[0], forged], certificate_chain=bad_chain)
    outcome2 = await receive_cascade(store, me, msg2.SerializeToString(), NOW, no_follow_up)
    assert not outcome2.accepted and outcome2.code == "trust.not_issued_by_parent"
    assert await snapshot(store) == before
    assert len(await rejections(store)) == 2


async def test_replayed_older_version_rejected(store: Store, h: Hierarchy) -> None:
    me = h.me("5101")
    v1, _ = h.cascade_to_city(1)
    v2, _ = h.cascade_to_city(2)
    await accept_city(store, me, v1)
    await accept_city(store, me, v2)
    before = await snapshot(store)
    # v1 again is an exact repeat (answered from the store); an older version with other bytes is a rollback.
    old_other, _ = h.cascade_to_city(1, title="另一份 v1")
    outcome = await receive_cascade(store, me, old_other, NOW, no_follow_up)
    assert not outcome.accepted and outcome.code == "cascade.rollback"
    same_version, _ = h.cascade_to_city(2, title="另一份 v2")
    outcome = await receive_cascade(store, me, same_version, NOW, no_follow_up)
    assert not outcome.accepted and outcome.code == "cascade.fork"
    assert await snapshot(store) == before


async def test_framework_for_another_node_rejected(store: Store, h: Hierarchy) -> None:
    outcome = await receive_cascade(store, h.me("5107"), h.cascade_to_county(), NOW, no_follow_up)
    assert not outcome.accepted and outcome.code == "cascade.not_parent"


async def test_results_chain_accept_duplicate_fork_and_gap(store: Store, h: Hierarchy) -> None:
    county, tfw, digest = await _county_with_framework(store, h)
    town = h.me("510104017")
    mem = Memory()
    vals = {i.code: Decimal(10) for i in tfw.leaves()}
    for n in range(3):
        await send_bundle(mem, town, cycle="2026", period="2026-Y", framework_digest=digest,
                          values={**vals, "A1": Decimal(n)}, child_scores=(), now=NOW)
    first, second, third = mem.queued
    seen: list[Any] = []

    async def on_accept(tx: Any, bundle: Any) -> None:
        seen.append(bundle)

    ok = await receive_results(store, county, first, NOW, on_accept, "res.51.5101.510104.510104017")
    assert ok.accepted, ok.reason
    dup = await receive_results(store, county, first, NOW, on_accept)
    assert dup.duplicate
    gap = await receive_results(store, county, third, NOW, on_accept)
    assert not gap.accepted and gap.retry and gap.code == "results.gap"
    wrong_subject = await receive_results(store, county, second, NOW, on_accept, "res.51.5101.510104.510104018")
    assert not wrong_subject.accepted and wrong_subject.code == "results.wrong_subject"
    ok2 = await receive_results(store, county, second, NOW, on_accept)
    assert ok2.accepted
    # A fork: a different bundle claiming seq 2.
    fork_mem = Memory()
    fork_mem.bundles.append(mem.bundles[0])
    await send_bundle(fork_mem, town, cycle="2026", period="2026-Y", framework_digest=digest,
                      values={**vals, "A1": Decimal(99)}, child_scores=(), now=NOW)
    fork = await receive_results(store, county, fork_mem.queued[0], NOW, on_accept)
    assert not fork.accepted and fork.code == "results.fork"
    assert len(seen) == 2
    # The bundle that came too early is taken once its predecessor is there.
    late = await receive_results(store, county, third, NOW, on_accept)
    assert late.accepted, late.reason
    async with store.read() as r:
        values = await r.results.values("2026", "2026-Y", digest)
        gaps = [e for e in await r.audit.entries(action="reject.results") if "gap" in e.detail]
    assert values["510104017"]["A1"] == "2"
    assert gaps == []  # a gap is not a rejection


async def test_rejected_content_does_not_block_the_chain(store: Store, h: Hierarchy) -> None:
    county, tfw, digest = await _county_with_framework(store, h)
    town = h.me("510104017")
    mem = Memory()
    vals = {i.code: Decimal(10) for i in tfw.leaves()}
    await send_bundle(mem, town, cycle="2026", period="2026-Y", framework_digest=digest,
                      values={**vals, "ZZ9": Decimal(1)}, child_scores=(), now=NOW)
    await send_bundle(mem, town, cycle="2026", period="2026-Q5", framework_digest=digest,
                      values=vals, child_scores=(), now=NOW)
    await send_bundle(mem, town, cycle="2026", period="2026-Y", framework_digest=digest,
                      values=vals, child_scores=(), now=NOW)
    outcomes = [await receive_results(store, county, m, NOW, no_follow_up) for m in mem.queued]
    assert not outcomes[0].accepted and outcomes[0].code == "results.unknown_indicators"
    assert not outcomes[1].accepted and outcomes[1].code == "results.bad_period"
    assert outcomes[2].accepted, outcomes[2].reason
    async with store.read() as r:
        last = await r.bundles.last("510104017")
        values = await r.results.values("2026", "2026-Y", digest)
    assert last is not None and last.seq == 3
    assert set(values["510104017"]) == set(vals)


async def test_absurd_numbers_are_rejected_not_crashing(store: Store, h: Hierarchy) -> None:
    county, _, digest = await _county_with_framework(store, h)
    town = h.me("510104017")
    bundle = pb.ResultBundle(node="510104017", cycle="2026", period="2026-Y", framework_digest=digest, seq=1,
                             prev_hash="0" * 64)
    bundle.values.add(indicator="A1", value="1e30")
    message = pb.ResultMessage(bundle=sign(PAYLOAD_RESULTS, bundle.SerializeToString(), town.key),
                               certificate_chain=list(town.chain)).SerializeToString()
    outcome = await receive_results(store, county, message, NOW, no_follow_up)
    assert not outcome.accepted and outcome.code == "number.out_of_range"


async def test_badly_structured_framework_is_rejected(store: Store, h: Hierarchy) -> None:
    from dataclasses import replace as dc_replace

    fw = h.province_framework()
    broken = dc_replace(fw, indicators=tuple(dc_replace(i, direction="up") if i.code == "A1" else i
                                             for i in fw.indicators))
    env, _ = h.signed("51", broken)
    outcome = await receive_cascade(store, h.me("5101"), pb.CascadeMessage(frameworks=[env]).SerializeToString(),
                                    NOW, no_follow_up)
    assert not outcome.accepted and outcome.code == "cascade.structure" and "direction" in outcome.reason


async def test_a_batch_is_taken_in_chain_order_with_one_outcome_per_message(store: Store, h: Hierarchy) -> None:
    """A fetched batch arrives shuffled, with a repeat and a forgery: each message gets its own outcome,
    in the order given; each child's bundles are taken in sequence order; the forgery leaves nothing
    but its audit entry; the node re-scores once for the whole batch."""
    from sync.results_receiver import receive_results_batch

    county, tfw, digest = await _county_with_framework(store, h)
    vals = {i.code: Decimal(10) for i in tfw.leaves()}
    mems = {t: Memory() for t in ("510104017", "510104018")}
    for n in range(3):
        await send_bundle(mems["510104017"], h.me("510104017"), cycle="2026", period="2026-Y", framework_digest=digest,
                          values={**vals, "A1": Decimal(n)}, child_scores=(), now=NOW)
    await send_bundle(mems["510104018"], h.me("510104018"), cycle="2026", period="2026-Y", framework_digest=digest,
                      values={**vals, "A1": Decimal(7)}, child_scores=(), now=NOW)
    a1, a2, a3 = mems["510104017"].queued
    (b1,) = mems["510104018"].queued
    forged = bytearray(a3)
    forged[-40] ^= 1
    calls: list[list[Any]] = []

    async def on_accept(tx: Any, bundles: list[Any]) -> None:
        calls.append(bundles)

    sub_a, sub_b = "res.51.5101.510104.510104017", "res.51.5101.510104.510104018"
    batch = [(a3, sub_a), (a1, sub_a), (bytes(forged), sub_a), (b1, sub_b), (a2, sub_a), (a1, sub_a)]
    outcomes = await receive_results_batch(store, county, batch, NOW, on_accept)
    assert [(o.accepted, o.duplicate) for o in outcomes] == [
        (True, False), (True, False), (False, False), (True, False), (True, False), (True, True)]
    assert outcomes[2].reason and not outcomes[2].retry
    assert len(calls) == 1 and [(b.node, b.seq) for b in calls[0]] == [
        ("510104017", 1), ("510104017", 2), ("510104017", 3), ("510104018", 1)]
    async with store.read() as r:
        values = await r.results.values("2026", "2026-Y", digest)
        accepted = await r.audit.entries(action="accept.results")
        rejected = await r.audit.entries(action="reject.results")
        broken = await r.audit.verify()
    assert values["510104017"]["A1"] == "2" and values["510104018"]["A1"] == "7"
    assert len(accepted) == 4 and len(rejected) == 1 and broken is None
    again = await receive_results_batch(store, county, batch[:2], NOW, on_accept)
    assert all(o.duplicate for o in again) and len(calls) == 1
