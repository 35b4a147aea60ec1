"""DSSE-style envelopes: payload type + exact payload bytes + signatures."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TypeVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from google.protobuf.message import DecodeError, Message

from aggregator.errors import AppraisalError, Refused
from proto.appraisal.v1 import appraisal_pb2 as pb

PAYLOAD_CERTIFICATE = "application/vnd.fedappraisal.node-certificate.v1+protobuf"
PAYLOAD_FRAMEWORK = "application/vnd.fedappraisal.framework.v1+protobuf"
PAYLOAD_RESULTS = "application/vnd.fedappraisal.result-bundle.v1+protobuf"
PAYLOAD_REVOCATIONS = "application/vnd.fedappraisal.revocation-list.v1+protobuf"
PAYLOAD_HEARTBEAT = "application/vnd.fedappraisal.heartbeat.v1+protobuf"
PAYLOAD_APPROVAL = "application/vnd.fedappraisal.approval.v1+protobuf"
PAYLOAD_REPORT = "application/vnd.fedappraisal.node-report.v1+protobuf"
PAYLOAD_PUBLICATION = "application/vnd.fedappraisal.publication.v1+protobuf"
PAYLOAD_USE_LIST = "application/vnd.fedappraisal.use-list.v1+protobuf"

MAX_ENVELOPE_BYTES = 2 * 1024 * 1024  # one value for every node (a format limit, see sync/limits.py)
# What one NATS message may carry (the servers run with max_payload 8MB): a cascade holds up to
# three framework envelopes plus certificates.
MAX_MESSAGE_BYTES = 7 * 1024 * 1024  # the default of Limits.message_bytes


class EnvelopeError(Refused):
    """An envelope that must be rejected; the message says why (zh-CN first), ``code`` says it
    for programs (``envelope.*``, ``cascade.*``, ``results.*``, ``heartbeat.*`` …)."""

    default_code = "envelope.refused"
    signer = ""  # set when the envelope verified but its signer may not send it: the audit entry names them


def code_of(exc: BaseException, default: str) -> str:
    """The stable code of ``exc`` when it has one (an :class:`AppraisalError`), else ``default``
    (an ArithmeticError from absurd numbers, say): what a receiver audits beside the reason."""
    return exc.code if isinstance(exc, AppraisalError) else default


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE pre-authentication encoding: what is actually signed."""
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def keyid(public_key: Ed25519PublicKey) -> str:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return hashlib.sha256(public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)).hexdigest()


def digest(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def sign(payload_type: str, payload: bytes, key: Ed25519PrivateKey) -> bytes:
    """Serialise a signed envelope around ``payload`` (which the caller encoded once)."""
    env = pb.Envelope(payload_type=payload_type, payload=payload)
    env.signatures.add(keyid=keyid(key.public_key()), sig=key.sign(pae(payload_type, payload)))
    return env.SerializeToString()


def cosign(data: bytes, key: Ed25519PrivateKey) -> bytes:
    """Add ``key``'s signature to an envelope over its exact payload (a key rotation needs three)."""
    env = pb.Envelope()
    env.ParseFromString(data)
    kid = keyid(key.public_key())
    if any(s.keyid == kid for s in env.signatures):
        return data
    env.signatures.add(keyid=kid, sig=key.sign(pae(env.payload_type, env.payload)))
    return env.SerializeToString()


def signer_ids(data: bytes) -> set[str]:
    """The key ids that signed a stored envelope (unverified: for choosing what to send)."""
    env = pb.Envelope()
    env.ParseFromString(data)
    return {s.keyid for s in env.signatures}


@dataclass(frozen=True)
class Opened:
    """An envelope parsed but not yet trusted."""

    payload_type: str
    payload: bytes
    signatures: tuple[tuple[str, bytes], ...]

    @property
    def digest(self) -> str:
        return digest(self.payload)


def open_envelope(data: bytes, expected_type: str) -> Opened:
    if len(data) > MAX_ENVELOPE_BYTES:
        raise EnvelopeError(f"信封过大：{len(data)} 字节 (envelope too large)", code="envelope.too_large")
    env = pb.Envelope()
    try:
        env.ParseFromString(data)
    except DecodeError as exc:
        raise EnvelopeError(f"信封无法解析 (malformed envelope): {exc}", code="envelope.malformed") from None
    if env.payload_type != expected_type:
        raise EnvelopeError(f"载荷类型为 {env.payload_type!r}，应为 {expected_type!r} (unexpected payload type)",
                            code="envelope.wrong_type")
    if not env.signatures:
        raise EnvelopeError("信封未签名 (envelope is unsigned)", code="envelope.unsigned")
    ids = [s.keyid for s in env.signatures]
    if len(set(ids)) != len(ids):
        raise EnvelopeError("同一密钥的签名重复 (duplicate signatures by one key)", code="envelope.duplicate_signature")
    return Opened(env.payload_type, env.payload, tuple((s.keyid, s.sig) for s in env.signatures))


def verify_signature(opened: Opened, public_key: Ed25519PublicKey) -> None:
    """Raise unless ``public_key`` signed exactly ``opened.payload``."""
    kid = keyid(public_key)
    for sid, sig in opened.signatures:
        if sid == kid:
            try:
                public_key.verify(sig, pae(opened.payload_type, opened.payload))
            except InvalidSignature:
                raise EnvelopeError("签名无效：内容被篡改或签名不符 (signature does not verify: bytes were altered)",
                                    code="envelope.bad_signature") from None
            return
    raise EnvelopeError(f"信封不是由预期密钥 {kid[:16]}… 签名 (not signed by the expected key)", code="envelope.wrong_key")


M = TypeVar("M", bound=Message)


def open_signed(data: bytes, payload_type: str, key: Ed25519PublicKey, message: M, malformed: str,
                not_signed: str = "", *, malformed_code: str = "envelope.malformed_payload",
                not_signed_code: str = "envelope.wrong_key") -> M:
    """Open an envelope, check that ``key`` signed exactly its payload, and parse the payload into
    ``message``; ``malformed`` is the error when it does not parse, ``not_signed`` (if given) when
    ``key`` did not sign it (``*_code``: their codes)."""
    opened = open_envelope(data, payload_type)
    try:
        verify_signature(opened, key)
    except EnvelopeError:
        if not not_signed:
            raise
        raise EnvelopeError(not_signed, code=not_signed_code) from None
    try:
        message.ParseFromString(opened.payload)
    except DecodeError:
        raise EnvelopeError(malformed, code=malformed_code) from None
    return message
