"""The attack list of issue 4 against a county's cascade receiver, on a real store (SQLite and
PostgreSQL): each forged or mangled message is refused with a clear reason, the refusal is the
only thing written (one audit entry), and nothing else in the node changes."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace

import pytest

from aggregator.framework import Framework, FrameworkRef, Link, Unit, derive_child_framework
from nodes.store import Store
from proto.appraisal.v1 import appraisal_pb2 as pb
from sync.cascade_receiver import receive_cascade
from sync.envelope import MAX_ENVELOPE_BYTES
from tests.support.hierarchy import NOW, Hierarchy
from tests.support.receivers import no_follow_up, snapshot


@pytest.fixture(scope="module")
def h() -> Hierarchy:
    return Hierarchy.build()


def county_message(h: Hierarchy, change: Callable[[Framework, str], Framework] = lambda fw, _: fw,
                   chain: list[bytes] | None = None, signer: str = "5101") -> bytes:
    """成都市's framework for 锦江区 (derived from the province's, then ``change``d and signed)."""
    pfw = h.province_framework()
    penv, pd = h.signed("51", pfw)
    cfw = derive_child_framework(pfw, pd, "成都市", "5101", [Unit("510104", "锦江区")], unit_class="县市区",
                                 issued_at=NOW, expires_at=NOW + 86400)
    cenv, _ = h.signed(signer, change(cfw, pd))
    return pb.CascadeMessage(frameworks=[penv, cenv],
                             certificate_chain=chain if chain is not None else h.chains["5101"]).SerializeToString()


def another_cycle(fw: Framework, _: str) -> Framework:
    return replace(fw, cycle="2027")


def mixed_pin(fw: Framework, _: str) -> Framework:
    assert fw.parent is not None
    return replace(fw, parent=FrameworkRef(fw.parent.issuer, fw.parent.cycle, "其他类别", fw.parent.version,
                                           fw.parent.digest))


def pinned_elsewhere(fw: Framework, _: str) -> Framework:
    assert fw.parent is not None
    return replace(fw, parent=replace(fw.parent, digest="ab" * 32))


def link_to_nothing(fw: Framework, pdigest: str) -> Framework:
    leaf = fw.leaves()[0]
    bad = replace(leaf, links=(Link(pdigest, "Z99", "sum"),))
    return replace(fw, indicators=tuple(bad if i.code == leaf.code else i for i in fw.indicators))


def expired(fw: Framework, _: str) -> Framework:
    return replace(fw, expires_at=NOW - 1)


def stray_unit(fw: Framework, _: str) -> Framework:
    return replace(fw, units=(*fw.units, Unit("510703", "涪城区", "县市区")))


# (message, the code of the refusal, for a linkage refusal the linkage problem its reason names)
CASES: dict[str, tuple[Callable[[Hierarchy], bytes], str, str]] = {
    "framework for another cycle": (lambda h: county_message(h, another_cycle), "cascade.linkage",
                                    "another cycle than its parent"),
    "pin names another class (mix-and-match)": (lambda h: county_message(h, mixed_pin), "cascade.linkage",
                                                "parent pin does not match"),
    "pinned to a framework that is not the parent": (lambda h: county_message(h, pinned_elsewhere),
                                                     "cascade.linkage", "does not pin its parent"),
    "link to an indicator the pinned parent lacks": (lambda h: county_message(h, link_to_nothing),
                                                     "cascade.linkage", "linked parent indicator does not exist"),
    "expired framework": (lambda h: county_message(h, expired), "cascade.expired", ""),
    "unit outside the issuer's scope": (lambda h: county_message(h, stray_unit), "cascade.unit_out_of_scope", ""),
    "expired certificate": (lambda h: county_message(h, chain=[h.certify("51", "5101", h.keys["5101"],
                                                                         not_after=NOW - 1)]),
                            "trust.expired", ""),
    # 绵阳市, validly certified, signs 成都市's framework for 锦江区 (in the name of 成都市, then as itself).
    "another city signs in 成都市's name": (lambda h: county_message(h, chain=h.chains["5107"], signer="5107"),
                                           "cascade.issuer_not_signer", ""),
    "another city signs for a county not its own": (
        lambda h: county_message(h, lambda fw, _: replace(fw, issuer="5107"), chain=h.chains["5107"], signer="5107"),
        "cascade.unit_out_of_scope", ""),
    "wrong signer for the certificate chain": (lambda h: county_message(h, chain=h.chains["5101"], signer="5107"),
                                               "envelope.wrong_key", ""),
    "oversize envelope": (lambda h: pb.CascadeMessage(frameworks=[b"\x00" * (MAX_ENVELOPE_BYTES + 1)]).SerializeToString(),
                          "envelope.too_large", ""),
    "not protobuf at all": (lambda h: b"\xff\xff\xff\xff not a message", "cascade.malformed", ""),
}


@pytest.mark.parametrize("attack", list(CASES))
async def test_attack_is_refused_audited_and_changes_nothing(store: Store, h: Hierarchy, attack: str) -> None:
    make, code, problem = CASES[attack]
    county = h.me("510104")
    before = await snapshot(store)
    outcome = await receive_cascade(store, county, make(h), NOW, no_follow_up)
    assert not outcome.accepted and not outcome.retry
    assert outcome.code == code and problem in outcome.reason, outcome.reason
    assert await snapshot(store) == before
    async with store.read() as r:
        entries = await r.audit.entries()
    assert [e.action for e in entries] == ["reject.framework"]
    detail = json.loads(entries[0].detail)
    assert detail["code"] == code and detail["reason"] == outcome.reason


async def test_the_genuine_message_is_accepted(store: Store, h: Hierarchy) -> None:
    """The control: the same construction, unmodified, passes (so each attack above fails for its own reason)."""
    outcome = await receive_cascade(store, h.me("510104"), county_message(h), NOW, no_follow_up)
    assert outcome.accepted, outcome.reason


def test_checks_passed_once_are_not_a_pass_for_later_or_for_another_signer(h: Hierarchy) -> None:
    """A node host's townships share what one of them checked of the same bytes (sync/framework_checks.py),
    but never the time check, and never across signers: the genuine message, accepted once, is refused
    once expired, and the same payload signed by 绵阳市 is refused as before."""
    from sync.cascade_receiver import verify_framework_chain
    from sync.envelope import EnvelopeError

    genuine = county_message(h, lambda fw, _: replace(fw, expires_at=NOW + 60))
    verify_framework_chain(genuine, h.root, NOW)
    with pytest.raises(EnvelopeError) as late:
        verify_framework_chain(genuine, h.root, NOW + 61)
    assert late.value.code == "cascade.expired"
    with pytest.raises(EnvelopeError) as forged:
        verify_framework_chain(county_message(h, chain=h.chains["5107"], signer="5107"), h.root, NOW)
    assert forged.value.code == "cascade.issuer_not_signer"
