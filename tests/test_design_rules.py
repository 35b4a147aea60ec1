"""docs/design.md §5 rules not covered elsewhere by a test of their own: 1 (exact bytes, unknown fields
kept), 8 (delegation depth), 14 (sync_interval always), 15 (arrival order does not matter)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from nodes.natsconf import NodeAccess, plan_hierarchy, render, render_server
from nodes.store import Store
from proto.appraisal.v1 import appraisal_pb2 as pb
from sync import keys
from sync.cascade_receiver import receive_cascade
from sync.codec import encode_framework
from sync.envelope import PAYLOAD_FRAMEWORK, open_envelope, sign
from sync.results_receiver import receive_results_batch
from sync.results_sender import send_bundle
from sync.trust import TrustError, verify_chain
from tests.support.hierarchy import NOW, Hierarchy
from tests.support.receivers import Memory, _county_with_framework


@pytest.fixture(scope="module")
def h() -> Hierarchy:
    return Hierarchy.build()


async def test_rule_1_unknown_fields_stay_inside_the_signature_and_travel_on(store: Store, h: Hierarchy) -> None:
    """A newer province adds a field this version does not know: the city verifies the exact bytes,
    keeps them, and hands its counties the very same envelope."""
    payload = encode_framework(h.province_framework()) + b"\xfa\x06\x05later"  # field 111, length-delimited
    envelope = sign(PAYLOAD_FRAMEWORK, payload, h.keys["51"])
    forwarded: list[list[bytes]] = []

    async def on_accept(tx: Any, fw: Any, digest: str, upstream: list[bytes]) -> None:
        forwarded.append(upstream)

    outcome = await receive_cascade(store, h.me("5101"), pb.CascadeMessage(frameworks=[envelope]).SerializeToString(),
                                    NOW, on_accept)
    assert outcome.accepted, outcome.reason
    assert forwarded == [[envelope]]
    async with store.read() as r:
        row = await r.frameworks.get(outcome.msg_id)
    assert row is not None and row.envelope == envelope
    assert open_envelope(row.envelope, PAYLOAD_FRAMEWORK).payload.endswith(b"later")


def test_rule_8_delegation_depth_is_capped(h: Hierarchy) -> None:
    too_deep = [*h.chains["510104017"], h.certify("510104017", "510104017", keys.generate())]
    with pytest.raises(TrustError) as exc:
        verify_chain(too_deep, h.root, NOW)
    assert exc.value.code == "trust.chain_too_long"


def test_rule_14_every_generated_server_acknowledges_only_what_is_on_disk() -> None:
    nodes = [NodeAccess("51", ("51",), False, True), NodeAccess("5101", ("51", "5101"), True, False)]
    single = json.loads(render(nodes, {"51": "a", "5101": "b"}, "op", listen="127.0.0.1:4222", store_dir="/js"))
    assert single["jetstream"]["sync_interval"] == "always"
    for plan in plan_hierarchy(nodes, "127.0.0.1:1", "127.0.0.1:2", {"5101": "127.0.0.1:3"}, "127.0.0.1", {"5101": "x"}):
        conf = json.loads(render_server(plan, ["5101"], {"51": "a", "5101": "b"}, {"5101": "x"}, "op", "/js"))
        assert conf["jetstream"]["sync_interval"] == "always"


async def test_rule_15_arrival_order_does_not_change_what_is_held(store: Store, h: Hierarchy, tmp_path: Path) -> None:
    """The same bundles, one order here and the reverse in a second store: the same values."""
    county, tfw, digest = await _county_with_framework(store, h)
    messages = []
    for town in ("510104017", "510104018"):
        mem = Memory()
        for n in range(3):
            await send_bundle(mem, h.me(town), cycle="2026", period="2026-Y", framework_digest=digest,
                              values={i.code: Decimal(n * 10 + len(town)) for i in tfw.leaves()}, child_scores=(),
                              now=NOW)
        messages += [(m, h.me(town).results_subject()) for m in mem.queued]

    async def nothing(tx: Any, bundles: Any) -> None:
        return None

    other = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'other.db'}")
    try:
        county2 = h.me("510104")
        async with other.tx() as tx:  # the same issued framework in both stores
            async with store.read() as r:
                row = await r.frameworks.get(digest)
            assert row is not None
            await tx.frameworks.put(digest=row.digest, issuer=row.issuer, cycle=row.cycle, unit_class=row.unit_class,
                                   version=row.version, role="issued", envelope=row.envelope, cascade=row.cascade,
                                   now=NOW)
        for m in messages:  # one at a time, in order
            await receive_results_batch(store, county, [m], NOW, nothing)
        outcomes = await receive_results_batch(other, county2, list(reversed(messages)), NOW, nothing)
        assert all(o.accepted for o in outcomes)
        async with store.read() as r, other.read() as r2:
            assert await r.results.values("2026", "2026-Y", digest) == await r2.results.values("2026", "2026-Y", digest)
    finally:
        await other.close()
