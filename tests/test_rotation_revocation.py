"""Key rotation, revocation lists and the parent's heartbeat (docs/design.md §5 rules 3, 7, 10).

Pure checks first (trust.py verifies bytes it is given), then the receivers on a real store
(SQLite and PostgreSQL): what is refused, with which reason, what is audited and what is kept."""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

from nodes.store import Store
from proto.appraisal.v1 import appraisal_pb2 as pb
from sync import keys
from sync.cascade_receiver import receive_cascade
from sync.envelope import EnvelopeError
from sync.results_receiver import receive_results
from sync.results_sender import send_bundle
from sync.trust import (
    TrustError,
    TrustState,
    accept_revocations,
    chain_identities,
    countersign,
    decode_revocations,
    issue_certificate,
    sign_revocations,
    verify_chain,
)
from sync.trust_updates import heartbeat_update, receive_trust_update, revoke
from tests.support.hierarchy import NAMES, NOW, Hierarchy
from tests.support.receivers import Memory, _county_with_framework, no_follow_up, snapshot


@pytest.fixture
def h() -> Hierarchy:
    return Hierarchy.build()


def rotated(h: Hierarchy, code: str, issuer: str, new: Any, *, serial: int = 2, old: Any = None,
            sign_old: bool = True, sign_new: bool = True) -> bytes:
    old = old or h.keys[code]
    cert = issue_certificate(h.keys[issuer], issuer, code=code, name=NAMES[code], level="city", public_key=new.public_key(),
                             serial=serial, not_before=NOW - 60, not_after=NOW + 86400, previous_key=old.public_key())
    signers = ([old] if sign_old else []) + ([new] if sign_new else [])
    return countersign(cert, *signers)


# ---------------------------------------------------------------- rotation (rule 3)

def test_rotation_signed_by_issuer_old_and_new_key_is_accepted(h: Hierarchy) -> None:
    new = keys.generate()
    ident = verify_chain([rotated(h, "5101", "51", new)], h.root, NOW)
    assert ident.code == "5101" and keys.public_raw(ident.public_key) == keys.public_raw(new.public_key())
    assert ident.certs[0].serial == 2 and ident.certs[0].previous_keyid


@pytest.mark.parametrize(("sign_old", "sign_new"), [(False, True), (True, False), (False, False)])
def test_rotation_without_both_subject_signatures_is_refused(h: Hierarchy, sign_old: bool, sign_new: bool) -> None:
    cert = rotated(h, "5101", "51", keys.generate(), sign_old=sign_old, sign_new=sign_new)
    with pytest.raises(TrustError) as exc:
        verify_chain([cert], h.root, NOW)
    assert exc.value.code == "trust.rotation_unsigned"


def test_rotation_must_name_its_previous_key_and_first_certificate_must_not(h: Hierarchy) -> None:
    new = keys.generate()
    bare = issue_certificate(h.keys["51"], "51", code="5101", name="成都市", level="city", public_key=new.public_key(),
                             serial=2, not_before=NOW - 60, not_after=NOW + 86400)
    with pytest.raises(TrustError) as exc:
        verify_chain([countersign(bare, new)], h.root, NOW)
    assert exc.value.code == "trust.missing_previous_key"
    first = issue_certificate(h.keys["51"], "51", code="5101", name="成都市", level="city", public_key=new.public_key(),
                              serial=1, not_before=NOW - 60, not_after=NOW + 86400,
                              previous_key=h.keys["5101"].public_key())
    with pytest.raises(TrustError) as exc:
        verify_chain([first], h.root, NOW)
    assert exc.value.code == "trust.unexpected_previous_key"


def test_key_history_refuses_two_keys_under_one_serial_and_a_broken_rotation(h: Hierarchy) -> None:
    state = TrustState()
    verify_chain(h.chains["5101"], h.root, NOW, state)  # serial 1 with the real key, remembered
    impostor = issue_certificate(h.keys["51"], "51", code="5101", name="成都市", level="city",
                                 public_key=keys.generate().public_key(), serial=1, not_before=NOW - 60,
                                 not_after=NOW + 86400)
    with pytest.raises(TrustError) as exc:
        verify_chain([impostor], h.root, NOW, state)
    assert exc.value.code == "trust.key_fork"
    stranger = keys.generate()  # a "rotation" from a key that never was serial 1
    with pytest.raises(TrustError) as exc:
        verify_chain([rotated(h, "5101", "51", keys.generate(), old=stranger)], h.root, NOW, state)
    assert exc.value.code == "trust.rotation_fork"
    ok = verify_chain([rotated(h, "5101", "51", keys.generate())], h.root, NOW, state)
    assert ok.certs[0].serial == 2
    assert {(c.code, c.serial) for c in state.pending_keys()} == {("5101", 1), ("5101", 2)}


def test_old_certificate_still_verifies_after_rotation_until_it_expires(h: Hierarchy) -> None:
    """Rule 10: bundles signed before a rotation still verify (the old certificate is kept)."""
    state = TrustState()
    verify_chain([rotated(h, "5101", "51", keys.generate())], h.root, NOW, state)
    assert verify_chain(h.chains["5101"], h.root, NOW, state).code == "5101"


# ---------------------------------------------------------------- revocation lists

def crl(h: Hierarchy, issuer: str, version: int, entries: dict[tuple[str, int], tuple[int, str]]) -> bytes:
    return sign_revocations(h.keys[issuer], issuer, version, NOW, entries)


def test_revoked_certificate_is_refused_anywhere_in_the_chain(h: Hierarchy) -> None:
    state = TrustState()
    signers = chain_identities(h.chains["5101"], h.root, NOW)
    installed = accept_revocations(state, [crl(h, "5101", 1, {("510104", 1): (NOW, "密钥泄露")})], signers, NOW)
    assert [c.version for c in installed] == [1]
    assert verify_chain(h.chains["5101"], h.root, NOW, state).code == "5101"
    for code in ("510104", "510104017"):  # the county, and the township below it
        with pytest.raises(TrustError) as err:
            verify_chain(h.chains[code], h.root, NOW, state)
        assert err.value.code == "trust.revoked"
        assert "510104" in str(err.value) and "密钥泄露" in str(err.value)


def test_revocation_lists_only_go_forward_and_never_drop_an_entry(h: Hierarchy) -> None:
    state = TrustState()
    signers = chain_identities(h.chains["5101"], h.root, NOW)
    v1 = crl(h, "5101", 1, {("510104", 1): (NOW, "")})
    v2 = crl(h, "5101", 2, {("510104", 1): (NOW, ""), ("510104", 2): (NOW, "")})
    accept_revocations(state, [v1, v2], signers, NOW)
    assert accept_revocations(state, [v1], signers, NOW) == []  # a stale copy: ignored, v2 stays in force
    with pytest.raises(TrustError) as exc:
        accept_revocations(state, [crl(h, "5101", 2, {("510104", 2): (NOW, "")})], signers, NOW)
    assert exc.value.code == "revocations.fork"
    with pytest.raises(TrustError) as exc:
        accept_revocations(state, [crl(h, "5101", 3, {("510104", 2): (NOW, "")})], signers, NOW)
    assert exc.value.code == "revocations.withdrawn"
    assert accept_revocations(state, [v2], signers, NOW) == []  # the list in force, again: nothing new
    assert state.lists["5101"].version == 2


def test_revocation_list_from_outside_the_chain_or_scope_or_wrong_key_is_refused(h: Hierarchy) -> None:
    state = TrustState()
    signers = chain_identities(h.chains["5101"], h.root, NOW)
    with pytest.raises(TrustError) as exc:
        accept_revocations(state, [crl(h, "5107", 1, {})], signers, NOW)
    assert exc.value.code == "revocations.not_in_chain"
    with pytest.raises(TrustError) as exc:
        accept_revocations(state, [crl(h, "5101", 1, {("510703", 1): (NOW, "")})], signers, NOW)
    assert exc.value.code == "revocations.out_of_scope"
    forged = sign_revocations(h.keys["5107"], "5101", 1, NOW, {("510104", 1): (NOW, "")})
    with pytest.raises(EnvelopeError) as exc:
        accept_revocations(state, [forged], signers, NOW)
    assert exc.value.code == "envelope.wrong_key"
    assert state.lists == {}


# ------------------------------------------------------------ receivers on a store

async def test_results_signed_under_a_revoked_certificate_are_refused(store: Store, h: Hierarchy) -> None:
    county, tfw, digest = await _county_with_framework(store, h)
    mem = Memory()
    await send_bundle(mem, h.me("510104017"), cycle="2026", period="2026-Y", framework_digest=digest,
                      values={i.code: Decimal(1) for i in tfw.leaves()}, child_scores=(), now=NOW)
    listed = await revoke(store, county, "510104017", 1, "乡镇密钥泄露", NOW)
    assert listed.version == 1 and county.trust.lists["510104"] is listed
    before = await snapshot(store)
    outcome = await receive_results(store, county, mem.queued[0], NOW, no_follow_up)
    assert not outcome.accepted and outcome.code == "trust.revoked" and "乡镇密钥泄露" in outcome.reason
    assert await snapshot(store) == before
    async with store.read() as r:
        audits = [e.action for e in await r.audit.entries()]
        lists = await r.trust.revocation_lists()
    assert "revoke.certificate" in audits and audits[-1] == "reject.results"
    assert [(row.issuer, row.version) for row in lists] == [("510104", 1)]


async def test_revoking_needs_a_child_of_this_node(store: Store, h: Hierarchy) -> None:
    county = h.me("510104")
    with pytest.raises(TrustError) as exc:
        await revoke(store, county, "510105001", 1, "", NOW)
    assert exc.value.code == "revocations.not_a_child"


async def test_a_cascade_carries_revocations_down_and_they_take_effect(store: Store, h: Hierarchy) -> None:
    """The city revokes 锦江区's key: a township refuses the county's framework from then on."""
    city_list = crl(h, "5101", 1, {("510104", 1): (NOW, "区级密钥泄露")})
    data = pb.CascadeMessage.FromString(h.cascade_to_county())
    town = h.me("510104017")
    # A township-bound message: the county's framework chain with the city's list riding along.
    from aggregator.framework import Unit, derive_child_framework
    from sync.codec import decode_framework
    from sync.envelope import PAYLOAD_FRAMEWORK, digest, open_envelope

    cpayload = open_envelope(data.frameworks[1], PAYLOAD_FRAMEWORK).payload
    tfw = derive_child_framework(decode_framework(cpayload), digest(cpayload), "锦江区", "510104",
                                 [Unit("510104017", "锦官驿街道")], unit_class="乡镇街道", issued_at=NOW,
                                 expires_at=NOW + 86400)
    tenv, _ = h.signed("510104", tfw)
    message = pb.CascadeMessage(frameworks=[*data.frameworks, tenv], certificate_chain=h.chains["510104"],
                                revocations=[city_list]).SerializeToString()
    outcome = await receive_cascade(store, town, message, NOW, no_follow_up)
    assert not outcome.accepted and outcome.code == "trust.revoked" and "区级密钥泄露" in outcome.reason
    async with store.read() as r:
        kept = await r.trust.revocation_lists()
        actions = [e.action for e in await r.audit.entries()]
        held = await r.frameworks.list()
    assert [(row.issuer, row.version) for row in kept] == [("5101", 1)]  # the list stands on its own
    assert actions == ["accept.revocations", "reject.framework"] and held == []
    # After a restart the node loads the list and still refuses.
    fresh = h.me("510104017")
    fresh.trust.load([row.envelope for row in kept], [])
    again = await receive_cascade(store, fresh, pb.CascadeMessage(
        frameworks=[*data.frameworks, tenv], certificate_chain=h.chains["510104"]).SerializeToString(), NOW,
        no_follow_up)
    assert not again.accepted and again.code == "trust.revoked"


# ---------------------------------------------------------------- heartbeat (rule 7)

async def test_heartbeat_is_verified_installs_lists_and_refuses_replays(store: Store, h: Hierarchy) -> None:
    county = h.me("510104")
    await revoke(store, county, "510104018", 1, "", NOW)
    town = h.me("510104017")
    ref = [("2026", "乡镇街道", 3, "ab" * 32)]
    first = heartbeat_update(county, ref, NOW, ttl=30)
    pulse, installed = await receive_trust_update(store, town, first, NOW, None)
    assert installed == 1 and pulse.fresh(NOW) and not pulse.fresh(NOW + 31)
    assert pulse.frameworks == (("2026", "乡镇街道", 3, "ab" * 32),) and pulse.revocations_version == 1
    assert town.trust.lists["510104"].version == 1
    later = heartbeat_update(county, ref, NOW + 5, ttl=30)
    newer, _ = await receive_trust_update(store, town, later, NOW + 5, pulse)
    with pytest.raises(EnvelopeError) as exc:
        await receive_trust_update(store, town, first, NOW + 6, newer)
    assert exc.value.code == "heartbeat.replay"
    with pytest.raises(EnvelopeError) as exc:
        await receive_trust_update(store, town, later, NOW + 40, None)
    assert exc.value.code == "heartbeat.stale"
    async with store.read() as r:
        codes = [json.loads(e.detail)["code"] for e in await r.audit.entries(action="reject.heartbeat")]
    assert codes == ["heartbeat.replay", "heartbeat.stale"]


async def test_heartbeat_from_anyone_but_the_parent_is_refused(store: Store, h: Hierarchy) -> None:
    town = h.me("510104017")
    city = h.me("5101")
    with pytest.raises(EnvelopeError) as exc:
        await receive_trust_update(store, town, heartbeat_update(city, [], NOW, ttl=30), NOW, None)
    assert exc.value.code == "heartbeat.not_parent"
    # The county's chain but a heartbeat signed by another key.
    forged_me = replace(h.me("510104"), key=keys.generate())
    with pytest.raises(EnvelopeError) as exc:
        await receive_trust_update(store, town, heartbeat_update(forged_me, [], NOW, ttl=30), NOW, None)
    assert exc.value.code == "envelope.wrong_key"
    with pytest.raises(EnvelopeError) as exc:
        await receive_trust_update(store, town, b"\xff\x00garbage", NOW, None)
    assert exc.value.code == "heartbeat.malformed_update"


async def test_a_heartbeat_whose_list_revokes_the_sender_is_refused(store: Store, h: Hierarchy) -> None:
    """The city's list rides in the county's heartbeat: once installed, the county is not believed."""
    county = h.me("510104")
    city_list = crl(h, "5101", 1, {("510104", 1): (NOW, "")})
    city_state = decode_revocations(city_list, chain_identities(h.chains["5101"], h.root, NOW)[-1], NOW)
    county.trust.offer(city_state)
    town = h.me("510104017")
    with pytest.raises(EnvelopeError) as exc:
        await receive_trust_update(store, town, heartbeat_update(county, [], NOW, ttl=30), NOW, None)
    assert exc.value.code == "trust.revoked"
    assert town.trust.lists["5101"].version == 1  # the list itself stands


async def test_every_good_list_is_saved_even_beside_a_bad_one_and_a_stale_one_blocks_nothing(
        store: Store, h: Hierarchy) -> None:
    """(Found in review.) A good list installed before a bad one in the same message is saved, not only
    held in memory, so a restart does not forget it; the bad one is audited and skipped; an older copy
    of a list, as a framework stored before the last revocation carries, does not block the framework."""
    county = h.me("510104")
    v1 = crl(h, "5101", 1, {("510104", 7): (NOW, "")})
    v2 = crl(h, "5101", 2, {("510104", 7): (NOW, ""), ("510104", 8): (NOW, "")})
    stray = crl(h, "5107", 1, {})  # not on this message's chain
    message = pb.CascadeMessage.FromString(h.cascade_to_county())
    message.revocations.extend([v2, stray])
    outcome = await receive_cascade(store, county, message.SerializeToString(), NOW, no_follow_up)
    assert outcome.accepted, outcome.reason
    async with store.read() as r:
        kept = [(row.issuer, row.version) for row in await r.trust.revocation_lists()]
        problems = [json.loads(e.detail)["code"] for e in await r.audit.entries(action="reject.revocations")]
    assert kept == [("5101", 2)] and county.trust.unsaved == {}
    assert problems == ["revocations.not_in_chain"]
    # A stored cascade that still carries v1 (issued before v2): the framework is judged on its own.
    fresh = h.me("510104")
    fresh.trust.load([v2], [])
    old = pb.CascadeMessage.FromString(h.cascade_to_county())
    old.revocations.append(v1)
    again = await receive_cascade(store, fresh, old.SerializeToString(), NOW, no_follow_up)
    assert again.accepted and fresh.trust.lists["5101"].version == 2


async def test_a_revocation_is_in_force_here_only_once_committed(store: Store, h: Hierarchy) -> None:
    county = h.me("510104")
    crl_v1 = await revoke(store, county, "510104017", 1, "", NOW)
    async with store.read() as r:
        assert [(row.issuer, row.version) for row in await r.trust.revocation_lists()] == [("510104", 1)]
    assert county.trust.lists["510104"] is crl_v1 and county.trust.unsaved == {}
    assert (await revoke(store, county, "510104017", 1, "again", NOW)).version == 1  # already revoked: no new version


async def test_a_certificate_expiring_in_transit_does_not_block_the_childs_chain(store: Store, h: Hierarchy) -> None:
    """(Found in review.) A bundle signed while the township's certificate held arrives after it expired:
    it joins the chain as refused content (its values do not count), so the next bundle, under the
    renewed certificate, is taken instead of waiting forever behind a gap."""
    county, tfw, digest = await _county_with_framework(store, h)
    short = (*h.chains["510104017"][:2], h.certify("510104", "510104017", h.keys["510104017"], not_after=NOW + 10))
    mem = Memory()
    vals = {i.code: Decimal(5) for i in tfw.leaves()}
    await send_bundle(mem, replace(h.me("510104017"), chain=short), cycle="2026", period="2026-Y",
                      framework_digest=digest, values=vals, child_scores=(), now=NOW)
    await send_bundle(mem, h.me("510104017"), cycle="2026", period="2026-Y", framework_digest=digest,
                      values={**vals, "A1": Decimal(9)}, child_scores=(), now=NOW + 100)
    late = await receive_results(store, county, mem.queued[0], NOW + 100, no_follow_up)
    assert not late.accepted and not late.retry and late.code == "results.expired_in_transit"
    renewed = await receive_results(store, county, mem.queued[1], NOW + 100, no_follow_up)
    assert renewed.accepted, renewed.reason
    async with store.read() as r:
        values = await r.results.values("2026", "2026-Y", digest)
        last = await r.bundles.last("510104017")
    assert values["510104017"]["A1"] == "9" and last is not None and last.seq == 2


def test_a_list_signed_under_a_revoked_key_gives_way(h: Hierarchy) -> None:
    """(Found in review.) A stolen city key pushes its list to an absurd version, which would make every
    later genuine list look like a rollback. Once the province revokes that key and the city signs with
    its rotated one, the city's new list is taken and the poisoned one is void."""
    state = TrustState()
    old_signers = chain_identities(h.chains["5101"], h.root, NOW)
    poisoned = sign_revocations(h.keys["5101"], "5101", 10**12, NOW, {("510104", 1): (NOW, "")})
    assert accept_revocations(state, [poisoned], old_signers, NOW)[0].version == 10**12
    new = keys.generate()
    new_chain = [rotated(h, "5101", "51", new)]
    genuine = sign_revocations(new, "5101", 1, NOW, {("510104", 9): (NOW, "")})
    new_signers = chain_identities(new_chain, h.root, NOW)
    assert accept_revocations(state, [genuine], new_signers, NOW) == []  # still looks like a rollback
    province = sign_revocations(h.keys["51"], "51", 1, NOW, {("5101", 1): (NOW, "key stolen")})
    accept_revocations(state, [province], [h.root], NOW)
    assert [c.version for c in accept_revocations(state, [genuine], new_signers, NOW)] == [1]
    assert state.lists["5101"].revoked == {("510104", 9): (NOW, "")}
