"""Envelopes and certificate chains (docs/design.md §4)."""

from __future__ import annotations

import pytest

from proto.appraisal.v1 import appraisal_pb2 as pb
from sync import keys
from sync.envelope import PAYLOAD_FRAMEWORK, EnvelopeError, open_envelope, sign, verify_signature
from sync.trust import TrustError, verify_chain, verify_signed_by
from tests.support.hierarchy import NOW, Hierarchy


@pytest.fixture(scope="module")
def h() -> Hierarchy:
    return Hierarchy.build()


def test_sign_and_verify_exact_bytes(h: Hierarchy) -> None:
    data = sign(PAYLOAD_FRAMEWORK, b"payload \x00 bytes", h.keys["51"])
    opened = open_envelope(data, PAYLOAD_FRAMEWORK)
    verify_signature(opened, h.keys["51"].public_key())
    assert opened.payload == b"payload \x00 bytes"


def test_every_single_byte_change_is_rejected(h: Hierarchy) -> None:
    data = sign(PAYLOAD_FRAMEWORK, b"framework payload", h.keys["51"])
    for i in range(len(data)):
        tampered = bytearray(data)
        tampered[i] ^= 0x01
        with pytest.raises(EnvelopeError):
            verify_signature(open_envelope(bytes(tampered), PAYLOAD_FRAMEWORK), h.keys["51"].public_key())


def test_unsigned_and_duplicate_signatures_rejected(h: Hierarchy) -> None:
    unsigned = pb.Envelope(payload_type=PAYLOAD_FRAMEWORK, payload=b"x").SerializeToString()
    with pytest.raises(EnvelopeError) as exc:
        open_envelope(unsigned, PAYLOAD_FRAMEWORK)
    assert exc.value.code == "envelope.unsigned"
    env = pb.Envelope.FromString(sign(PAYLOAD_FRAMEWORK, b"x", h.keys["51"]))
    env.signatures.append(env.signatures[0])
    with pytest.raises(EnvelopeError) as exc:
        open_envelope(env.SerializeToString(), PAYLOAD_FRAMEWORK)
    assert exc.value.code == "envelope.duplicate_signature"


def test_chain_verifies_down_to_township(h: Hierarchy) -> None:
    ident = verify_chain(h.chains["510104017"], h.root, NOW)
    assert ident.code == "510104017" and ident.level == "township"
    assert ident.path == ("51", "5101", "510104", "510104017")


def test_uncertified_key_is_rejected(h: Hierarchy) -> None:
    rogue = keys.generate()
    data = sign(PAYLOAD_FRAMEWORK, b"x", rogue)
    with pytest.raises(EnvelopeError) as exc:
        verify_signed_by(data, PAYLOAD_FRAMEWORK, h.chains["5101"], h.root, NOW)
    assert exc.value.code == "envelope.wrong_key"
    # A certificate issued by a key the province never certified.
    forged = [*h.chains["5101"][:0], h.certify("5107", "5101", rogue)]
    with pytest.raises(TrustError) as exc:
        verify_chain(forged, h.root, NOW)
    assert exc.value.code == "trust.not_issued_by_parent"


def test_scope_is_enforced(h: Hierarchy) -> None:
    # 成都市 certifies a county under 绵阳市: valid signature, wrong scope.
    stray = [*h.chains["5101"], h.certify("5101", "510703", keys.generate())]
    with pytest.raises(TrustError) as exc:
        verify_chain(stray, h.root, NOW)
    assert exc.value.code == "trust.out_of_scope"


def test_expired_certificate_rejected(h: Hierarchy) -> None:
    chain = [h.certify("51", "5101", h.keys["5101"], not_after=NOW - 1)]
    with pytest.raises(TrustError) as exc:
        verify_chain(chain, h.root, NOW)
    assert exc.value.code == "trust.expired"


def test_a_remembered_chain_is_still_checked_for_expiry(h: Hierarchy) -> None:
    chain = [h.certify("51", "5101", h.keys["5101"], not_after=NOW + 100)]
    assert verify_chain(chain, h.root, NOW).code == "5101"  # verified and remembered
    with pytest.raises(TrustError) as exc:
        verify_chain(chain, h.root, NOW + 101)
    assert exc.value.code == "trust.expired"
    other_root = keys.generate()
    from sync.trust import root_identity

    with pytest.raises(TrustError) as exc:  # remembered per root key, not globally
        verify_chain(chain, root_identity("51", "四川省", other_root.public_key()), NOW)
    assert exc.value.code == "trust.not_issued_by_parent"
