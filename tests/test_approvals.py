"""Multi-level approval (issue 4): a county's approval of a township's bundle is a signature over that
bundle's hash, and the province verifies the whole chain of approvals from the city's message alone."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import pytest

from proto.appraisal.v1 import appraisal_pb2 as pb
from sync.approvals import Source, verify_attestations
from sync.codec import bundle_from_message
from sync.envelope import PAYLOAD_APPROVAL, PAYLOAD_RESULTS, EnvelopeError, digest, open_envelope, sign
from sync.identity import Me
from sync.results_sender import send_bundle
from sync.trust import verify_chain
from tests.support.hierarchy import NOW, Hierarchy
from tests.support.receivers import Memory

VALUES = {"A1": Decimal("12.5"), "A2": Decimal(3)}


@pytest.fixture(scope="module")
def h() -> Hierarchy:
    return Hierarchy.build()


async def sent(me: Me, sources: Sequence[Source] = ()) -> tuple[bytes, Source]:
    mem = Memory()
    await send_bundle(mem, me, cycle="2026", period="2026-Y", framework_digest="f" * 64, values=VALUES,
                      child_scores=(), now=NOW, sources=sources)
    message = mem.queued[0]
    payload = open_envelope(pb.ResultMessage.FromString(message).bundle, PAYLOAD_RESULTS).payload
    return message, Source(me.code, digest(payload), 1, message)


async def chain_of_three(h: Hierarchy) -> tuple[bytes, bytes, list[bytes]]:
    """Two townships report, 锦江区 rolls them up, 成都市 rolls 锦江区 up: the city's and county's messages."""
    towns = [await sent(h.me(t)) for t in ("510104017", "510104018")]
    county_msg, county_src = await sent(h.me("510104"), [s for _, s in towns])
    city_msg, _ = await sent(h.me("5101"), [county_src])
    return city_msg, county_msg, [m for m, _ in towns]


def check(h: Hierarchy, message: bytes, signer: str) -> Any:
    msg = pb.ResultMessage.FromString(message)
    ident = verify_chain(h.chains[signer], h.root, NOW)
    return verify_attestations(msg, ident, bundle_from_message(message), h.root, NOW)


async def test_the_province_verifies_two_levels_of_approval_from_the_city_message(h: Hierarchy) -> None:
    city_msg, county_msg, _ = await chain_of_three(h)
    got = check(h, city_msg, "5101")
    assert (got.approved, got.approved_below) == (1, 2)
    assert (check(h, county_msg, "510104").approved, check(h, county_msg, "510104").approved_below) == (2, 0)
    evidence = pb.ResultMessage.FromString(pb.ResultMessage.FromString(city_msg).evidence[0])
    # two levels of evidence, as the province recomputes two levels; nothing deeper travels
    assert len(evidence.approvals) == 2 and len(evidence.evidence) == 2
    assert not any(pb.ResultMessage.FromString(e).evidence for e in evidence.evidence)


def mutate(message: bytes, change: Any) -> bytes:
    msg = pb.ResultMessage.FromString(message)
    change(msg)
    return msg.SerializeToString()


def strip_inner_approvals(msg: pb.ResultMessage) -> None:
    inner = pb.ResultMessage.FromString(msg.evidence[0])
    del inner.approvals[:]
    msg.evidence[0] = inner.SerializeToString()


async def test_every_break_in_the_chain_is_named(h: Hierarchy) -> None:
    city_msg, _, town_msgs = await chain_of_three(h)
    forged_approval = sign(PAYLOAD_APPROVAL, pb.Approval.FromString(open_envelope(
        pb.ResultMessage.FromString(city_msg).approvals[0], PAYLOAD_APPROVAL).payload).SerializeToString(),
        h.keys["5107"])
    cases = {
        "approval.not_approved": mutate(city_msg, lambda m: m.ClearField("approvals")),
        "approval.wrong_signer": mutate(city_msg, lambda m: m.approvals.__setitem__(0, forged_approval)),
        "approval.evidence_missing": mutate(city_msg, lambda m: m.ClearField("evidence")),
        "approval.below_not_approved": mutate(city_msg, strip_inner_approvals),
        # a township's genuine bundle passed off as the county's: not the bundle the city cited
        "approval.not_cited": mutate(city_msg, lambda m: m.evidence.__setitem__(0, town_msgs[0])),
    }
    for code, message in cases.items():
        with pytest.raises(EnvelopeError) as exc:
            check(h, message, "5101")
        assert exc.value.code == code


async def test_a_source_must_be_a_child_of_the_sender(h: Hierarchy) -> None:
    """绵阳市 cannot vouch for 锦江区's bundle, even with valid signatures all round."""
    _, county_msg, _ = await chain_of_three(h)
    payload = open_envelope(pb.ResultMessage.FromString(county_msg).bundle, PAYLOAD_RESULTS).payload
    stray, _ = await sent(h.me("5107"), [Source("510104", digest(payload), 1, county_msg)])
    with pytest.raises(EnvelopeError) as exc:
        check(h, stray, "5107")
    assert exc.value.code == "approval.source_not_child"


async def test_evidence_is_checked_as_of_its_approval(h: Hierarchy) -> None:
    """(Found in review.) 锦江区's certificate expires after 成都市 approved its bundle: 成都市's later bundles,
    which still cite that approved bundle, verify; evidence that was never valid still fails."""
    from dataclasses import replace

    short = (h.chains["5101"][0], h.certify("5101", "510104", h.keys["510104"], not_after=NOW + 10))
    county = replace(h.me("510104"), chain=short)
    towns = [await sent(h.me(t)) for t in ("510104017", "510104018")]
    _, county_src = await sent(county, [s for _, s in towns])
    city_msg, _ = await sent(h.me("5101"), [county_src])  # approved at NOW, while the county's certificate held
    later = NOW + 100
    msg = pb.ResultMessage.FromString(city_msg)
    city = verify_chain(h.chains["5101"], h.root, later)
    got = verify_attestations(msg, city, bundle_from_message(city_msg), h.root, later)
    assert (got.approved, got.approved_below) == (1, 2)
    never = (h.chains["5101"][0], h.certify("5101", "510104", h.keys["510104"], not_after=NOW - 30))
    _, stale_src = await sent(replace(h.me("510104"), chain=never), [s for _, s in towns])
    stale_msg, _ = await sent(h.me("5101"), [stale_src])
    with pytest.raises(EnvelopeError) as exc:
        verify_attestations(pb.ResultMessage.FromString(stale_msg), city, bundle_from_message(stale_msg), h.root, later)
    assert exc.value.code == "trust.expired"
