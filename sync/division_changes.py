"""Signed division change lists (区划调整): encoding, verification, and the log a node keeps of them.

Design (docs/parts/changes.md):

* **What is signed.** A ``DivisionChangeList`` (proto/appraisal/v1/appraisal.proto): the issuer's node
  code, a sequence number (1, 2, 3 … per issuer), the digest of the issuer's previous list, the time
  it was issued, and its changes (:mod:`aggregator.lineage` events: rename, recode, move, merge,
  split). It travels as a DSSE envelope with the payload type :data:`PAYLOAD_DIVISION_CHANGES`, signed
  by the issuer's node key, like frameworks and publications. Protobuf, not JSON, for the same reasons
  as every other signed document here: one deterministic encoding signed once and never re-encoded,
  one decoder that is fuzzed, unknown fields kept by the parser (a newer issuer's extra field
  does not break an older verifier, and the bytes stay exactly as signed).
* **Who may sign.** The signer's certificate chain must lead to the pinned province key
  (sync/trust.py), the list's ``issuer`` must be the signer, every change must name that issuer, and
  every change must be in the issuer's scope: the parent level of every unit it touches (a city its
  counties, a county its townships, the province its cities; a move between two parents only the
  level above both). The prefix check here refuses a change that names any code outside the issuer's
  subtree; the replay (:class:`aggregator.lineage.Lineage`) checks the exact parent rule.
* **What a dishonest certified peer could try, and why it fails.**
  - forge or alter a list: the signature does not verify (``envelope.bad_signature``/``wrong_key``);
  - sign for another issuer, or change another city's county: ``division.signer`` /
    ``division.not_issuer``;
  - back-date a change into a closed cycle or before its own previous list's last change, to rewrite
    which tree an appraised year used: ``division.backdated``;
  - show two different lists under one sequence number to two parties (equivocation): the second one
    a node sees is refused with ``division.equivocation`` and the exception carries **both** signed
    envelopes, a proof anyone can check with the issuer's key alone (:func:`equivocation_holds`);
  - skip a number or fork the chain of lists: ``division.seq_gap`` / ``division.chain_broken``;
  - a change that does not hold on the tree (a unit not in force, a code still in use, shares not
    summing to 1, a cycle): the replay's own ``division.*`` code, the list refused whole.

Pure: bytes in, values out; the caller stores accepted envelopes (and re-offers them at start).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from google.protobuf.message import DecodeError

from aggregator.errors import AppraisalError
from aggregator.framework import parent_code
from aggregator.lineage import (
    DivisionChange,
    DivisionChangeError,
    Lineage,
    Merge,
    Move,
    Part,
    Recode,
    Relocation,
    Rename,
    Split,
)
from aggregator.numbers import parse_decimal, to_text
from proto.appraisal.v1 import appraisal_pb2 as pb
from sync.envelope import EnvelopeError, digest, open_envelope, open_signed, sign
from sync.trust import CLOCK_SKEW, Identity, TrustState, verify_signed_by

PAYLOAD_DIVISION_CHANGES = "application/vnd.fedappraisal.division-changes.v1+protobuf"
MAX_CHANGES = 10_000  # one list: 四川's 2019–2020 reform was about 1,500 township changes
_DAY = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


class DivisionListError(EnvelopeError):
    """A change list that must be refused; ``code`` says why (``division.*``)."""

    default_code = "division.refused"


class Equivocation(DivisionListError):
    """One issuer signed two different lists under one sequence number: ``first`` (held) and
    ``second`` (just offered), both exactly as signed."""

    default_code = "division.equivocation"

    def __init__(self, message: str = "", *, first: bytes = b"", second: bytes = b"", code: str | None = None) -> None:
        super().__init__(message, code=code or "division.equivocation")
        self.first = first
        self.second = second


@dataclass(frozen=True)
class ChangeList:
    issuer: str
    seq: int
    previous: str
    issued_at: int
    changes: tuple[DivisionChange, ...]
    digest: str = ""  # of the signed payload
    envelope: bytes = b""  # exactly as signed

    @property
    def last_effective(self) -> date | None:
        return max((c.effective for c in self.changes), default=None)


# ------------------------------------------------------------------ encoding

def encode(issuer: str, seq: int, previous: str, issued_at: int, changes: Sequence[DivisionChange]) -> bytes:
    msg = pb.DivisionChangeList(issuer=issuer, seq=seq, previous=previous, issued_at=issued_at)
    for ch in changes:
        m = msg.changes.add(kind=ch.kind, effective=ch.effective.isoformat(), issuer=ch.issuer, ref=ch.ref)
        if isinstance(ch, Rename):
            m.units.append(ch.unit)
            m.name = ch.name
        elif isinstance(ch, Recode):
            m.units.append(ch.unit)
            m.code, m.name = ch.code, ch.name
        elif isinstance(ch, Move):
            m.units.append(ch.unit)
            m.parent, m.code, m.name = ch.parent, ch.code, ch.name
        elif isinstance(ch, Merge):
            m.units.extend(ch.units)
            m.code, m.name, m.survivor = ch.code, ch.name, ch.survivor
        elif isinstance(ch, Split):
            m.units.append(ch.unit)
            m.rule = ch.rule
            for p in ch.parts:
                part = m.parts.add(code=p.code, name=p.name, share=to_text(p.share))
                for ind, s in p.shares.items():
                    part.shares[ind] = to_text(s)
        else:
            raise DivisionListError(f"未知的变更类型 {type(ch).__name__} (unknown kind of change)",
                                    code="division.unknown_change")
        if isinstance(ch, Merge | Split):
            for r in ch.children:
                m.children.add(code=r.code, new_code=r.new_code, name=r.name)
    return msg.SerializeToString(deterministic=True)


def decode(payload: bytes) -> ChangeList:
    msg = pb.DivisionChangeList()
    try:
        msg.ParseFromString(payload)
    except DecodeError:
        raise DivisionListError("区划变更清单无法解析 (malformed change list)", code="division.malformed") from None
    if msg.seq < 1 or len(msg.changes) > MAX_CHANGES or not msg.changes:
        raise DivisionListError(f"区划变更清单的序号 {msg.seq} 或条数 {len(msg.changes)} 无效 (bad list header)",
                                code="division.bad_header")
    changes = tuple(_change(m, i + 1) for i, m in enumerate(msg.changes))
    return ChangeList(msg.issuer, msg.seq, msg.previous, msg.issued_at, changes, digest(payload))


def _change(m: pb.DivisionChange, i: int) -> DivisionChange:
    where = f"第 {i} 条变更 (change {i})"
    if not _DAY.match(m.effective):
        raise DivisionListError(f"{where}：生效日期 {m.effective[:12]!r} 应为 YYYY-MM-DD (bad date)", code="division.bad_date")
    try:
        effective = date.fromisoformat(m.effective)
    except ValueError:
        raise DivisionListError(f"{where}：生效日期 {m.effective!r} 无效 (bad date)", code="division.bad_date") from None
    issuer, ref = m.issuer, m.ref[:200]
    units = tuple(m.units)
    one = units[0] if len(units) == 1 else ""
    children = tuple(Relocation(code=r.code, new_code=r.new_code, name=r.name) for r in m.children)
    if m.kind in ("rename", "recode", "move", "split") and not one:
        raise DivisionListError(f"{where}：应恰好指明一个单位 (name exactly one unit)", code="division.unit_count")
    if m.kind == "rename":
        return Rename(effective=effective, issuer=issuer, ref=ref, unit=one, name=m.name)
    if m.kind == "recode":
        return Recode(effective=effective, issuer=issuer, ref=ref, unit=one, code=m.code, name=m.name)
    if m.kind == "move":
        return Move(effective=effective, issuer=issuer, ref=ref, unit=one, parent=m.parent, code=m.code, name=m.name)
    if m.kind == "merge":
        return Merge(effective=effective, issuer=issuer, ref=ref, units=units, code=m.code, name=m.name,
                     survivor=m.survivor, children=children)
    if m.kind == "split":
        parts = tuple(Part(code=p.code, name=p.name, share=_share(p.share, where),
                           shares={k: _share(v, where) for k, v in sorted(p.shares.items())}) for p in m.parts)
        return Split(effective=effective, issuer=issuer, ref=ref, unit=one, parts=parts, rule=m.rule[:100], children=children)
    raise DivisionListError(f"{where}：未知的变更类型 {m.kind[:20]!r} (unknown kind of change)", code="division.unknown_change")


def _share(text: str, where: str) -> Decimal:
    try:
        return parse_decimal(text, where)
    except AppraisalError:
        raise DivisionListError(f"{where}：分配比例 {text[:20]!r} 不是数值 (share is not a number)",
                                code="division.share_number") from None


def sign_change_list(key: Ed25519PrivateKey, issuer: str, seq: int, previous: str, issued_at: int,
                     changes: Sequence[DivisionChange]) -> bytes:
    """The signed envelope of a change list (the issuer's node key)."""
    return sign(PAYLOAD_DIVISION_CHANGES, encode(issuer, seq, previous, issued_at, changes), key)


def read(envelope: bytes) -> ChangeList:
    """A list this node verified before and stored: no check here."""
    payload = open_envelope(envelope, PAYLOAD_DIVISION_CHANGES).payload
    cl = decode(payload)
    return ChangeList(cl.issuer, cl.seq, cl.previous, cl.issued_at, cl.changes, cl.digest, envelope)


# ------------------------------------------------------------------ verification

def verify_change_list(data: bytes, chain: Sequence[bytes], root: Identity, now: int,
                       state: TrustState | None = None) -> ChangeList:
    """Check a list's signature and chain to the province key and that it is its signer's, in its
    signer's scope; the tree rules and the order against earlier lists are :meth:`ChangeLog.offer`'s."""
    signer, payload = verify_signed_by(data, PAYLOAD_DIVISION_CHANGES, chain, root, now, state)
    cl = decode(payload)
    if cl.issuer != signer.code:
        raise DivisionListError(f"清单声明的发布者 {cl.issuer[:12]} 不是签名者 {signer.code} (the issuer is not the signer)",
                                code="division.signer")
    if cl.issued_at > now + CLOCK_SKEW:
        raise DivisionListError(f"{cl.issuer} 的清单签发时间晚于当前时间 (issued in the future)", code="division.future")
    for i, ch in enumerate(cl.changes, 1):
        if ch.issuer != cl.issuer:
            raise DivisionListError(f"第 {i} 条变更的发布者 {ch.issuer[:12]} 不是清单的发布者 {cl.issuer} "
                                    "(a change names another issuer)", code="division.issuer_mismatch")
        outside = [c for c in _codes(ch) if not (c.startswith(cl.issuer) and len(c) > len(cl.issuer))]
        if outside:
            raise DivisionListError(f"第 {i} 条变更涉及 {cl.issuer} 管辖范围外的单位 {outside[0][:16]}，无权调整 "
                                    f"(only the parent level {parent_code(outside[0]) or '国家'} may change this unit)",
                                    code="division.not_issuer")
    return ChangeList(cl.issuer, cl.seq, cl.previous, cl.issued_at, cl.changes, cl.digest, data)


def _codes(ch: DivisionChange) -> list[str]:
    if isinstance(ch, Rename):
        return [ch.unit]
    if isinstance(ch, Recode):
        return [ch.unit, ch.code]
    if isinstance(ch, Move):
        return [ch.unit, ch.parent, ch.code]
    if isinstance(ch, Merge):
        return [*ch.units, ch.code, *(c for r in ch.children for c in (r.code, r.new_code))]
    if isinstance(ch, Split):
        return [ch.unit, *(p.code for p in ch.parts), *(c for r in ch.children for c in (r.code, r.new_code))]
    return []


def equivocation_holds(first: bytes, second: bytes, issuer_key: Ed25519PublicKey) -> bool:
    """Whether two envelopes prove equivocation: both signed by ``issuer_key``, one issuer, one
    sequence number, different content."""
    try:
        a = open_signed(first, PAYLOAD_DIVISION_CHANGES, issuer_key, pb.DivisionChangeList(), "malformed")
        b = open_signed(second, PAYLOAD_DIVISION_CHANGES, issuer_key, pb.DivisionChangeList(), "malformed")
    except EnvelopeError:
        return False
    return (a.issuer, a.seq) == (b.issuer, b.seq) and a.SerializeToString(deterministic=True) != b.SerializeToString(
        deterministic=True)


# ------------------------------------------------------------------ the log

class ChangeLog:
    """The change lists a node accepted, per issuer, over one base tree; pure, in memory.

    ``closed_until``: the last day of the last closed cycle (finalised results): no change may take
    effect on or before it. Lists of several issuers are replayed in one order: by effective date,
    then the higher level first (a province's move before a city's rename of the moved unit on the
    same day), then issuer, sequence number and position."""

    def __init__(self, base: Iterable[tuple[str, str]], since: date, closed_until: date | None = None) -> None:
        self.base = tuple(base)
        self.since = since
        self.closed_until = closed_until
        self.lists: dict[str, list[ChangeList]] = {}
        self._lineage = Lineage(self.base, since)

    def close(self, until: date) -> None:
        """A cycle ending ``until`` is closed: changes may no longer take effect on or before it."""
        if self.closed_until is None or until > self.closed_until:
            self.closed_until = until

    def lineage(self) -> Lineage:
        return self._lineage

    def events(self, extra: ChangeList | None = None) -> list[DivisionChange]:
        keyed = []
        for lists in (*self.lists.values(), [extra] if extra is not None else []):
            for cl in lists:
                for pos, ch in enumerate(cl.changes):
                    keyed.append(((ch.effective, len(cl.issuer), cl.issuer, cl.seq, pos), ch))
        return [ch for _, ch in sorted(keyed, key=lambda kv: kv[0])]

    def offer(self, cl: ChangeList) -> bool:
        """Install a verified list (:func:`verify_change_list`); False for one already held. Raises
        :class:`DivisionListError` (:class:`Equivocation` for a second list under one number)."""
        held = self.lists.get(cl.issuer, [])
        if cl.seq <= len(held):
            same = held[cl.seq - 1]
            if same.digest == cl.digest:
                return False
            raise Equivocation(f"{cl.issuer} 对序号 {cl.seq} 签发了两份不同的区划变更清单 (two different lists under one "
                               "sequence number: both kept as proof)", first=same.envelope, second=cl.envelope)
        if cl.seq != len(held) + 1:
            raise DivisionListError(f"{cl.issuer} 的清单序号 {cl.seq} 不连续，应为 {len(held) + 1} (sequence gap)",
                                    code="division.seq_gap")
        want = held[-1].digest if held else ""
        if cl.previous != want:
            raise DivisionListError(f"{cl.issuer} 的清单 {cl.seq} 未接续前一份清单 (does not name the previous list)",
                                    code="division.chain_broken")
        first = min(c.effective for c in cl.changes)
        last = held[-1].last_effective if held else None
        if last is not None and first < last:
            raise DivisionListError(f"{cl.issuer} 的清单 {cl.seq} 含生效于 {first} 的变更，早于前一份清单的 {last} "
                                    "(back-dated before the previous list)", code="division.backdated")
        if self.closed_until is not None and first <= self.closed_until:
            raise DivisionListError(f"{cl.issuer} 的清单 {cl.seq} 含生效于 {first} 的变更，该日已属已结束的考评周期 "
                                    f"（截至 {self.closed_until}）(back-dated into a closed cycle)",
                                    code="division.backdated_closed")
        try:
            lineage = Lineage(self.base, self.since, self.events(cl))
        except DivisionChangeError as exc:
            raise DivisionListError(f"{cl.issuer} 的清单 {cl.seq} 不成立：{exc}", code=exc.code) from None
        self.lists.setdefault(cl.issuer, []).append(cl)
        self._lineage = lineage
        return True
