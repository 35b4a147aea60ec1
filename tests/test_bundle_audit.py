"""An auditor re-verifies every stored bundle as of when it was received (rule 10): years later, with
the certificates expired, the bundles still verify; a later revocation does not taint them, an earlier
one does; a changed byte or a missing bundle is named."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

import pytest

from nodes.store import Store
from sync.bundle_audit import audit_bundles
from sync.results_receiver import receive_results
from sync.results_sender import send_bundle
from sync.trust import TrustError, decode_revocations, sign_revocations, verify_chain
from tests.support.hierarchy import NOW, Hierarchy
from tests.support.receivers import Memory, _county_with_framework, no_follow_up


@pytest.fixture(scope="module")
def h() -> Hierarchy:
    return Hierarchy.build()


async def stored(store: Store, h: Hierarchy) -> list[Any]:
    county, tfw, digest = await _county_with_framework(store, h)
    mem = Memory()
    for n in range(3):
        await send_bundle(mem, h.me("510104017"), cycle="2026", period="2026-Y", framework_digest=digest,
                          values={i.code: Decimal(n + 1) for i in tfw.leaves()}, child_scores=(), now=NOW)
    for message in mem.queued:
        assert (await receive_results(store, county, message, NOW, no_follow_up)).accepted
    async with store.read() as r:
        return list(await r.bundles.all())


def county_list(h: Hierarchy, revoked_at: int) -> Any:
    data = sign_revocations(h.keys["510104"], "510104", 1, NOW, {("510104017", 1): (revoked_at, "")})
    return decode_revocations(data, verify_chain(h.chains["510104"], h.root, NOW), NOW)


async def test_bundles_verify_as_of_receipt_long_after_their_certificates_expired(store: Store, h: Hierarchy) -> None:
    rows = await stored(store, h)
    later = NOW + 3 * 86400
    with pytest.raises(TrustError) as exc:
        verify_chain(h.chains["510104017"], h.root, later)  # checked "now", they would fail
    assert exc.value.code == "trust.expired"
    assert audit_bundles(rows, h.root, []) == (3, [])
    assert audit_bundles(rows, h.root, [county_list(h, NOW + 10)])[1] == []  # revoked after: still genuine
    _, early = audit_bundles(rows, h.root, [county_list(h, NOW - 10)])
    assert len(early) == 3 and early[0].code == "audit.revoked"


async def test_a_changed_byte_or_a_missing_bundle_is_named(store: Store, h: Hierarchy) -> None:
    rows = await stored(store, h)  # typed, frozen records: a changed copy is dataclasses.replace
    tampered = bytearray(rows[1].message)
    tampered[len(tampered) // 3] ^= 1
    _, findings = audit_bundles([rows[0], replace_row(rows[1], message=bytes(tampered)), rows[2]], h.root, [])
    assert [f.seq for f in findings] == [2] and findings[0].code == "audit.not_genuine"
    _, gap = audit_bundles([rows[0], rows[2]], h.root, [])
    assert [f.seq for f in gap] == [3] and gap[0].code == "audit.chain_broken"


def replace_row(row: Any, **changes: Any) -> Any:
    return dataclasses.replace(row, **changes)
