"""Node certificates and chain verification up to the pinned province key (docs/design.md §4, §5).

A parent certifies each child's key; a chain is the list of certificate envelopes from the
root's first delegation down to a signer. Scope narrows at every step: a certificate may only
name a direct child of its issuer (code prefixed by the issuer's code, one level down).

Rotation (rule 3): serial N+1 names the key of serial N in ``previous_key`` and is signed by the
issuer, by that previous key and by the new key. Old certificates stay valid until they expire
(rule 10: historical bundles still verify) unless revoked.

Revocation: each issuer signs a list of the certificates it revoked (:class:`TrustState` keeps the
latest list per issuer; versions only go up and a list never drops an entry). The same state
remembers every (node, serial) → key it has seen, so two keys under one serial, or a rotation
that does not continue the key it replaces, are refused as forks.

Everything here verifies bytes it is given; persistence belongs to the caller.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from google.protobuf.message import DecodeError

from aggregator.errors import TrustFailure
from aggregator.framework import CODE_LENGTHS, LEVELS
from proto.appraisal.v1 import appraisal_pb2 as pb
from sync.envelope import (
    PAYLOAD_CERTIFICATE,
    PAYLOAD_REVOCATIONS,
    EnvelopeError,
    Opened,
    cosign,
    keyid,
    open_envelope,
    open_signed,
    sign,
    verify_signature,
)
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


class TrustError(EnvelopeError, TrustFailure):
    """A certificate or signer that must not be trusted (``trust.*``, ``revocations.*``)."""

    default_code = "trust.failed"


class CertificateTimeError(TrustError):
    """A certificate outside its validity at the moment checked (otherwise sound):
    ``trust.expired`` or ``trust.not_yet_valid``."""

    default_code = "trust.certificate_time"


@dataclass(frozen=True)
class CertInfo:
    """One certificate of a verified chain, as much as revocation and key history need."""

    issuer: str
    code: str
    serial: int
    keyid: str
    previous_keyid: str  # "" for serial 1


@dataclass(frozen=True)
class Identity:
    code: str
    name: str
    level: str
    public_key: Ed25519PublicKey
    path: tuple[str, ...]  # codes from the province down to this node
    not_after: int
    certs: tuple[CertInfo, ...] = ()  # the chain that proved it, root's delegation first


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
    previous_key: Ed25519PublicKey | None = None,
) -> bytes:
    """The issuer's signature only; a rotation (serial > 1, ``previous_key`` set) also needs
    :func:`countersign` by the old and the new key, which only the subject holds."""
    cert = pb.NodeCertificate(
        code=code, name=name, level=LEVEL_TO_PB[level], issuer_code=issuer_code,
        public_key=public_raw(public_key), serial=serial, not_before=not_before, not_after=not_after,
        previous_key=public_raw(previous_key) if previous_key is not None else b"",
    )
    return sign(PAYLOAD_CERTIFICATE, cert.SerializeToString(), issuer_key)


def countersign(certificate: bytes, *keys: Ed25519PrivateKey) -> bytes:
    """The subject's signatures on a rotated certificate: its previous key and its new key."""
    for key in keys:
        certificate = cosign(certificate, key)
    return certificate


def countersign_rotation(certificate: bytes, old: Ed25519PrivateKey,
                         new: Ed25519PrivateKey) -> tuple[bytes, pb.NodeCertificate]:
    """The child's side of a rotation: sign its new certificate with the key it names as previous
    and the key it certifies; refuses keys that are not those two."""
    cert = pb.NodeCertificate.FromString(open_envelope(certificate, PAYLOAD_CERTIFICATE).payload)
    if cert.previous_key != public_raw(old.public_key()):
        raise TrustError("不是证书声明的旧密钥 (not the previous key the certificate names)", code="trust.wrong_old_key")
    if cert.public_key != public_raw(new.public_key()):
        raise TrustError("不是证书所认证的新密钥 (not the key the certificate certifies)", code="trust.wrong_new_key")
    return countersign(certificate, old, new), cert


VERIFIED_MAX = 4096  # chains a node remembers (TrustState.verified)


def verify_chain(chain: Sequence[bytes], root: Identity, now: int, state: TrustState | None = None) -> Identity:
    """Walk ``chain`` from ``root``; return the identity the last certificate speaks for.

    With ``state``: also refuse revoked certificates and serial forks, remember the keys seen, and
    remember the chain (the same child sends the same chain with every bundle; validity is
    re-checked against ``now`` on every use)."""
    cache = state.verified if state is not None else None
    key = (public_raw(root.public_key), tuple(chain))
    hit = cache.get(key) if cache is not None else None
    if hit is not None and hit[1] <= now <= hit[0].not_after:
        identity = hit[0]
    else:
        identity, not_before = _verify_chain(chain, root, now)
        if cache is not None:
            if len(cache) >= VERIFIED_MAX:
                cache.clear()
            cache[key] = (identity, not_before)
    if state is not None:
        state.check(identity)
    return identity


def _verify_chain(chain: Sequence[bytes], root: Identity, now: int) -> tuple[Identity, int]:
    if len(chain) > MAX_CHAIN:
        raise TrustError(f"证书链过长：{len(chain)} (certificate chain too long)", code="trust.chain_too_long")
    current = root
    latest_start = 0
    for i, data in enumerate(chain):
        opened = open_envelope(data, PAYLOAD_CERTIFICATE)
        try:
            verify_signature(opened, current.public_key)
        except EnvelopeError as exc:
            raise TrustError(f"证书链第{i + 1}张证书未经 {current.code} 的密钥签发 (certificate not issued by its parent): "
                             f"{exc}", code="trust.not_issued_by_parent") from None
        cert = pb.NodeCertificate()
        try:
            cert.ParseFromString(opened.payload)
        except DecodeError:
            raise TrustError(f"证书链第{i + 1}张证书无法解析 (malformed certificate)",
                             code="trust.malformed_certificate") from None
        level = PB_TO_LEVEL.get(cert.level, "")
        expected_level = LEVELS[LEVELS.index(current.level) + 1] if current.level != "township" else ""
        if cert.issuer_code != current.code or level != expected_level:
            raise TrustError(f"证书 {cert.code} 的签发者或层级不符 (certificate issuer or level mismatch)",
                             code="trust.issuer_mismatch")
        if not valid_code(cert.code, level) or not cert.code.startswith(current.code):
            raise TrustError(f"证书 {cert.code} 超出签发者 {current.code} 的管辖范围 (certificate outside its issuer's scope)",
                             code="trust.out_of_scope")
        latest_start = max(latest_start, cert.not_before)
        if not cert.not_before <= now <= cert.not_after:
            raise CertificateTimeError(f"节点 {cert.code} 的证书不在有效期内 (certificate expired or not yet valid)",
                                       code="trust.expired" if now > cert.not_after else "trust.not_yet_valid")
        if len(cert.public_key) != 32:
            raise TrustError(f"证书 {cert.code} 的公钥长度无效 (bad public key)", code="trust.bad_public_key")
        subject_key = Ed25519PublicKey.from_public_bytes(cert.public_key)
        previous_keyid = _check_rotation(cert, opened, subject_key)
        info = CertInfo(cert.issuer_code, cert.code, cert.serial, keyid(subject_key), previous_keyid)
        current = Identity(
            cert.code, cert.name, level, subject_key,
            (*current.path, cert.code), min(current.not_after, cert.not_after), (*current.certs, info),
        )
    return current, latest_start


def _check_rotation(cert: pb.NodeCertificate, opened: Opened, subject_key: Ed25519PublicKey) -> str:
    """Rule 3: a certificate after the first is signed by the key it replaces and by the new key."""
    if cert.serial < 1:
        raise TrustError(f"证书 {cert.code} 的序号无效 (certificate serial must start at 1)", code="trust.bad_serial")
    if cert.serial == 1:
        if cert.previous_key:
            raise TrustError(f"证书 {cert.code} 序号为 1 却声明了旧密钥 (first certificate names a previous key)",
                             code="trust.unexpected_previous_key")
        return ""
    if len(cert.previous_key) != 32:
        raise TrustError(f"证书 {cert.code} 序号 {cert.serial} 未声明被替换的旧密钥 (rotated certificate lacks previous_key)",
                         code="trust.missing_previous_key")
    previous = Ed25519PublicKey.from_public_bytes(cert.previous_key)
    for who, key in (("旧密钥 (previous key)", previous), ("新密钥 (new key)", subject_key)):
        try:
            verify_signature(opened, key)
        except EnvelopeError:
            raise TrustError(f"节点 {cert.code} 的轮换证书（序号 {cert.serial}）缺少{who}的签名 "
                             "(a rotated certificate must be signed by the old and the new key)",
                             code="trust.rotation_unsigned") from None
    return keyid(previous)


def verify_signed_by(data: bytes, payload_type: str, chain: Sequence[bytes], root: Identity, now: int,
                     state: TrustState | None = None) -> tuple[Identity, bytes]:
    """Verify an envelope against its signer's chain; return the signer and the exact payload bytes."""
    opened = open_envelope(data, payload_type)
    signer = verify_chain(chain, root, now, state)
    verify_signature(opened, signer.public_key)
    return signer, opened.payload


# ------------------------------------------------------------------ revocation and key history

MAX_REVOKED = 100_000
CLOCK_SKEW = 300  # seconds a signed timestamp may run ahead of our clock


@dataclass(frozen=True)
class RevocationList:
    issuer: str
    version: int
    issued_at: int
    revoked: dict[tuple[str, int], tuple[int, str]]  # (code, serial) → (revoked_at, reason)
    envelope: bytes  # exactly as signed, to forward
    signer_serial: int = 0  # the serial of the issuer's certificate that signed it (0: the root, or unknown)


def sign_revocations(key: Ed25519PrivateKey, issuer: str, version: int, issued_at: int,
                     revoked: dict[tuple[str, int], tuple[int, str]]) -> bytes:
    crl = pb.RevocationList(issuer_code=issuer, version=version, issued_at=issued_at)
    for (code, serial), (at, reason) in sorted(revoked.items()):
        crl.revoked.add(code=code, serial=serial, revoked_at=at, reason=reason)
    return sign(PAYLOAD_REVOCATIONS, crl.SerializeToString(), key)


def decode_revocations(data: bytes, issuer: Identity, now: int) -> RevocationList:
    """Verify a revocation list signed by ``issuer`` (whose chain the caller has verified)."""
    if len(data) > 8 * 1024 * 1024:
        raise TrustError("吊销列表过大 (revocation list too large)", code="revocations.too_large")
    crl = open_signed(data, PAYLOAD_REVOCATIONS, issuer.public_key, pb.RevocationList(),
                      "吊销列表无法解析 (malformed revocation list)", malformed_code="revocations.malformed")
    if crl.issuer_code != issuer.code:
        raise TrustError(f"吊销列表声明的签发者 {crl.issuer_code} 不是签名者 {issuer.code} (issuer is not the signer)",
                         code="revocations.issuer_not_signer")
    if crl.version < 1 or crl.issued_at > now + CLOCK_SKEW or len(crl.revoked) > MAX_REVOKED:
        raise TrustError(f"{issuer.code} 的吊销列表版本、时间或条目数无效 (bad revocation list header)",
                         code="revocations.bad_header")
    child_level = LEVELS[LEVELS.index(issuer.level) + 1] if issuer.level != "township" else ""
    revoked: dict[tuple[str, int], tuple[int, str]] = {}
    for r in crl.revoked:
        if not valid_code(r.code, child_level) or not r.code.startswith(issuer.code):
            raise TrustError(f"{issuer.code} 的吊销列表含其管辖范围外的节点 {r.code[:12]} "
                             "(revocation outside the issuer's scope)", code="revocations.out_of_scope")
        revoked[(r.code, r.serial)] = (r.revoked_at, r.reason[:200])
    return RevocationList(issuer.code, crl.version, crl.issued_at, revoked, data,
                          issuer.certs[-1].serial if issuer.certs else 0)


def stored_revocations(data: bytes) -> RevocationList:
    """A list this node verified before and kept in its own store (not re-verified)."""
    crl = pb.RevocationList()
    crl.ParseFromString(open_envelope(data, PAYLOAD_REVOCATIONS).payload)
    return RevocationList(crl.issuer_code, crl.version, crl.issued_at,
                          {(r.code, r.serial): (r.revoked_at, r.reason) for r in crl.revoked}, data)


class TrustState:
    """Revocation lists in force and the keys seen per (node, serial); in memory, no I/O.

    The node loads it from its store at start; what is installed or seen afterwards stays pending
    (:attr:`unsaved`, :meth:`pending_keys`) until the caller reports it saved (:meth:`mark_saved`)."""

    def __init__(self) -> None:
        self.lists: dict[str, RevocationList] = {}
        self.keys: dict[tuple[str, int], str] = {}  # (code, serial) → keyid
        self._new_keys: list[CertInfo] = []
        self.unsaved: dict[str, RevocationList] = {}  # installed here, not yet in the store
        # Chains verified before, by root key and exact certificate bytes: (identity, latest not_before).
        self.verified: dict[tuple[bytes, tuple[bytes, ...]], tuple[Identity, int]] = {}

    def check(self, identity: Identity) -> None:
        for c in identity.certs:
            crl = self.lists.get(c.issuer)
            hit = crl.revoked.get((c.code, c.serial)) if crl is not None else None
            if hit is not None:
                raise TrustError(f"节点 {c.code} 的证书（序号 {c.serial}）已被 {c.issuer} 吊销：{hit[1] or '未说明'} "
                                 "(certificate revoked)", code="trust.revoked")
            known = self.keys.get((c.code, c.serial))
            if known is not None and known != c.keyid:
                raise TrustError(f"节点 {c.code} 的证书序号 {c.serial} 对应两把不同的密钥 (two keys under one serial: fork)",
                                 code="trust.key_fork")
            before = self.keys.get((c.code, c.serial - 1))
            if c.previous_keyid and before is not None and before != c.previous_keyid:
                raise TrustError(f"节点 {c.code} 的轮换证书（序号 {c.serial}）未接续序号 {c.serial - 1} 的密钥 "
                                 "(rotation does not continue the key it replaces)", code="trust.rotation_fork")
        for c in identity.certs:
            if (c.code, c.serial) not in self.keys:
                self.keys[(c.code, c.serial)] = c.keyid
                self._new_keys.append(c)

    def load(self, lists: Sequence[bytes], keys: Sequence[tuple[str, int, str]]) -> None:
        for data in lists:
            crl = stored_revocations(data)
            self.lists[crl.issuer] = crl
        for code, serial, kid in keys:
            self.keys[(code, serial)] = kid

    def revoked_before(self, identity: Identity, at: int) -> str:
        """The first certificate of ``identity``'s chain revoked at or before ``at`` ("" if none)."""
        for c in identity.certs:
            crl = self.lists.get(c.issuer)
            hit = crl.revoked.get((c.code, c.serial)) if crl is not None else None
            if hit is not None and hit[0] <= at:
                return f"{c.code}#{c.serial}"
        return ""

    def has_new_keys(self) -> bool:
        return bool(self._new_keys)

    def offer(self, crl: RevocationList, *, saved: bool = False) -> bool:
        """Install a newer list; False when it is the one in force or an older one (a stale copy, say a
        stored cascade message: the newer list stays). Raises when the issuer contradicts itself: the
        same version with other entries, or a revocation withdrawn. ``saved``: already in the store."""
        current = self.lists.get(crl.issuer)
        if current is not None and self._signer_revoked(current):
            current = None  # signed under a revoked key (say, one that pushed a huge version): void
        if current is not None:
            if crl.version < current.version:
                return False
            if crl.version == current.version:
                if crl.envelope != current.envelope and _payload(crl.envelope) != _payload(current.envelope):
                    raise TrustError(f"{crl.issuer} 的吊销列表 v{crl.version} 版本相同但内容不同 "
                                     "(equal version with different bytes)", code="revocations.fork")
                return False
            dropped = set(current.revoked) - set(crl.revoked)
            if dropped:
                code, serial = sorted(dropped)[0]
                raise TrustError(f"{crl.issuer} 的吊销列表 v{crl.version} 撤回了对 {code} 序号 {serial} 的吊销 "
                                 "(a revocation cannot be withdrawn)", code="revocations.withdrawn")
        self.lists[crl.issuer] = crl
        if saved:
            self.unsaved.pop(crl.issuer, None)
        else:
            self.unsaved[crl.issuer] = crl
        return True

    def _signer_revoked(self, crl: RevocationList) -> bool:
        if not crl.signer_serial:
            return False
        parent = next((p for p in self.lists.values() if (crl.issuer, crl.signer_serial) in p.revoked), None)
        return parent is not None

    def mark_saved(self, lists: Sequence[RevocationList], keys: Sequence[CertInfo]) -> None:
        """What the caller has committed to its store; the rest stays pending for the next save."""
        for crl in lists:
            if self.unsaved.get(crl.issuer) is crl:
                del self.unsaved[crl.issuer]
        saved = {(k.code, k.serial) for k in keys}
        self._new_keys = [k for k in self._new_keys if (k.code, k.serial) not in saved]

    def pending_keys(self) -> list[CertInfo]:
        return list(self._new_keys)

    def envelopes(self, path: Sequence[str]) -> list[bytes]:
        """The lists in force of the nodes on ``path``, root first, to forward to children."""
        return [self.lists[code].envelope for code in path if code in self.lists]


def _payload(envelope: bytes) -> bytes:
    return open_envelope(envelope, PAYLOAD_REVOCATIONS).payload


def chain_identities(chain: Sequence[bytes], root: Identity, now: int, state: TrustState | None = None) -> list[Identity]:
    """The identity at every depth of ``chain``: the root, then each certified node."""
    return [root] + [verify_chain(chain[:i], root, now, state) for i in range(1, len(chain) + 1)]


def accept_revocations(state: TrustState, envelopes: Sequence[bytes], signers: Sequence[Identity],
                       now: int, problems: list[EnvelopeError] | None = None) -> list[RevocationList]:
    """Verify lists signed by nodes among ``signers`` and install the newer ones; return those.

    A bad list raises TrustError, or with ``problems`` is collected there and skipped: each list is
    signed on its own, so one bad list must not stop the framework or heartbeat that carried it."""
    by_code = {s.code: s for s in signers}
    installed = []
    for data in envelopes:
        try:
            claimed = pb.RevocationList()
            try:
                claimed.ParseFromString(open_envelope(data, PAYLOAD_REVOCATIONS).payload)
            except DecodeError:
                raise TrustError("吊销列表无法解析 (malformed revocation list)", code="revocations.malformed") from None
            issuer = by_code.get(claimed.issuer_code)
            if issuer is None:
                raise TrustError(f"吊销列表的签发者 {claimed.issuer_code[:12]} 不在证书链上 "
                                 "(revocation list from outside the chain)", code="revocations.not_in_chain")
            crl = decode_revocations(data, issuer, now)
            if state.offer(crl):
                installed.append(crl)
        except EnvelopeError as exc:
            if problems is None:
                raise
            problems.append(exc)
    return installed
