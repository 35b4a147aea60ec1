"""A signed results-use list (结果运用, proto ``UseList``): the units a node's rules put on a list for
the body that uses it, with the rule and reason of each, resting on the digests of the final
publications it was drawn from. Encoded deterministically, signed by the node (DSSE envelope of
payload type :data:`sync.envelope.PAYLOAD_USE_LIST`); :func:`verify` checks one against the
node's certificate chain and the province key."""

from __future__ import annotations

from dataclasses import dataclass, field

from google.protobuf.message import DecodeError

from proto.appraisal.v1 import appraisal_pb2 as pb
from sync.envelope import PAYLOAD_USE_LIST, EnvelopeError, digest, open_envelope, sign
from sync.identity import Me
from sync.trust import Identity, verify_signed_by


class UseListError(EnvelopeError):
    default_code = "use_list.invalid"


@dataclass(frozen=True)
class UseEntry:
    unit: str
    name: str
    rule: str
    because: str


@dataclass(frozen=True)
class UseList:
    node: str
    cycle: str
    list: str
    title: str
    body: str
    publications: tuple[str, ...]
    entries: tuple[UseEntry, ...]
    issued_at: int
    version: int
    digest: str = field(default="", compare=False)

    def same_content(self, other: UseList) -> bool:
        """Equal but for when it was issued and its version."""
        return (self.node, self.cycle, self.list, self.title, self.body, self.publications, self.entries) == (
            other.node, other.cycle, other.list, other.title, other.body, other.publications, other.entries)


def encode(u: UseList) -> bytes:
    msg = pb.UseList(node=u.node, cycle=u.cycle, list=u.list, title=u.title, body=u.body,
                     publications=list(u.publications), issued_at=u.issued_at, version=u.version)
    for e in u.entries:
        msg.entries.add(unit=e.unit, name=e.name, rule=e.rule, because=e.because)
    return msg.SerializeToString(deterministic=True)


def decode(payload: bytes) -> UseList:
    msg = pb.UseList()
    try:
        msg.ParseFromString(payload)
    except DecodeError:
        raise UseListError("结果运用清单无法解析 (malformed use list)", code="use_list.malformed") from None
    if msg.version < 1 or not msg.list:
        raise UseListError("结果运用清单缺少清单代码或版本 (use list without list code or version)",
                           code="use_list.bad_header")
    return UseList(msg.node, msg.cycle, msg.list, msg.title, msg.body, tuple(msg.publications),
                   tuple(UseEntry(e.unit, e.name, e.rule, e.because) for e in msg.entries), msg.issued_at,
                   msg.version, digest(payload))


def sign_use_list(me: Me, u: UseList) -> tuple[bytes, UseList]:
    """The envelope and the list as signed (with its digest)."""
    payload = encode(u)
    return sign(PAYLOAD_USE_LIST, payload, me.key), decode(payload)


def read(envelope: bytes) -> UseList:
    """A list this node signed and stored: no check here."""
    return decode(open_envelope(envelope, PAYLOAD_USE_LIST).payload)


def verify(envelope: bytes, chain: list[bytes] | tuple[bytes, ...], root: Identity) -> UseList:
    """Check the signature of a downloaded list against its node's certificate chain and the
    province key; the list must be the signer's own."""
    u = read(envelope)
    signer, payload = verify_signed_by(envelope, PAYLOAD_USE_LIST, list(chain), root, u.issued_at)
    if signer.code != u.node:
        raise UseListError(f"结果运用清单属于 {u.node[:12]}，却由 {signer.code} 签名 (signed by another node)",
                           code="use_list.signer")
    return decode(payload)
