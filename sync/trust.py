"""Node certificates and chain verification up to the pinned province key (DESIGN.md §5).

A parent certifies each child's key; a chain is the list of certificate envelopes from the
root's first delegation down to a signer. Scope narrows at every step: a certificate may only
name a direct child of its issuer (code prefixed by the issuer's code, one level down).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from google.protobuf.message import DecodeError

from aggregator.framework import CODE_LENGTHS, LEVELS
from proto.appraisal.v1 import appraisal_pb2 as pb
from sync.envelope import PAYLOAD_CERTIFICATE, EnvelopeError, open_envelope, sign, verify_signature
from sync.keys import public_raw

LEVEL_TO_PB = {
    "province": pb.LEVEL_PROVINCE,
    "city": pb.LEVEL_CITY,
    "county": pb.LEVEL_COUNTY,
    "township": pb.LEVEL_TOWNSHIP,
}
PB_TO_LEVEL = {v: k for k, v in LEVEL_TO_PB.items()}
MAX_CHAIN = 3  # province → city → county → township: at most three delegations
_CODE = re.compile(r"^[0-9]{2,12}$")


class TrustError(EnvelopeError):
    """A certificate or signer that must not be trusted."""


@dataclass(frozen=True)
class Identity:
    code: str
    name: str
    level: str
    public_key: Ed25519PublicKey
    path: tuple[str, ...]  # codes from the province down to this node
    not_after: int


def valid_code(code: str, level: str) -> bool:
    return bool(_CODE.match(code)) and len(code) == CODE_LENGTHS.get(level, -1)


def root_identity(code: str, name: str, key: Ed25519PublicKey) -> Identity:
    return Identity(code, name, "province", key, (code,), 2**62)


def issue_certificate(
    issuer_key: Ed25519PrivateKey,
    issuer_code: str,
    *,
    code: str,
    name: str,
    level: str,
    public_key: Ed25519PublicKey,
    serial: int,
    not_before: int,
    not_after: int,
) -> bytes:
    cert = pb.NodeCertificate(
        code=code, name=name, level=LEVEL_TO_PB[level], issuer_code=issuer_code,
        public_key=public_raw(public_key), serial=serial, not_before=not_before, not_after=not_after,
    )
    return sign(PAYLOAD_CERTIFICATE, cert.SerializeToString(), issuer_key)


# Chains verified before, keyed by the exact certificate bytes and the root key: the same child
# sends the same chain with every bundle. Validity is re-checked against ``now`` on every use.
_VERIFIED: dict[tuple[bytes, tuple[bytes, ...]], tuple[Identity, int]] = {}
_VERIFIED_MAX = 4096


def verify_chain(chain: Sequence[bytes], root: Identity, now: int) -> Identity:
    """Walk ``chain`` from ``root``; return the identity the last certificate speaks for."""
    key = (public_raw(root.public_key), tuple(chain))
    hit = _VERIFIED.get(key)
    if hit is not None and hit[1] <= now <= hit[0].not_after:
        return hit[0]
    identity, not_before = _verify_chain(chain, root, now)
    if len(_VERIFIED) >= _VERIFIED_MAX:
        _VERIFIED.clear()
    _VERIFIED[key] = (identity, not_before)
    return identity


def _verify_chain(chain: Sequence[bytes], root: Identity, now: int) -> tuple[Identity, int]:
    if len(chain) > MAX_CHAIN:
        raise TrustError(f"证书链过长：{len(chain)} (certificate chain too long)")
    current = root
    latest_start = 0
    for i, data in enumerate(chain):
        opened = open_envelope(data, PAYLOAD_CERTIFICATE)
        try:
            verify_signature(opened, current.public_key)
        except EnvelopeError as exc:
            raise TrustError(f"证书链第{i + 1}张证书未经 {current.code} 的密钥签发 (certificate not issued by its parent): "
                             f"{exc}") from None
        cert = pb.NodeCertificate()
        try:
            cert.ParseFromString(opened.payload)
        except DecodeError:
            raise TrustError(f"证书链第{i + 1}张证书无法解析 (malformed certificate)") from None
        level = PB_TO_LEVEL.get(cert.level, "")
        expected_level = LEVELS[LEVELS.index(current.level) + 1] if current.level != "township" else ""
        if cert.issuer_code != current.code or level != expected_level:
            raise TrustError(f"证书 {cert.code} 的签发者或层级不符 (certificate issuer or level mismatch)")
        if not valid_code(cert.code, level) or not cert.code.startswith(current.code):
            raise TrustError(f"证书 {cert.code} 超出签发者 {current.code} 的管辖范围 (certificate outside its issuer's scope)")
        latest_start = max(latest_start, cert.not_before)
        if not cert.not_before <= now <= cert.not_after:
            raise TrustError(f"节点 {cert.code} 的证书不在有效期内 (certificate expired or not yet valid)")
        if len(cert.public_key) != 32:
            raise TrustError(f"证书 {cert.code} 的公钥长度无效 (bad public key)")
        current = Identity(
            cert.code, cert.name, level, Ed25519PublicKey.from_public_bytes(cert.public_key),
            (*current.path, cert.code), min(current.not_after, cert.not_after),
        )
    return current, latest_start


def verify_signed_by(data: bytes, payload_type: str, chain: Sequence[bytes], root: Identity, now: int) -> tuple[Identity, bytes]:
    """Verify an envelope against its signer's chain; return the signer and the exact payload bytes."""
    opened = open_envelope(data, payload_type)
    signer = verify_chain(chain, root, now)
    verify_signature(opened, signer.public_key)
    return signer, opened.payload
