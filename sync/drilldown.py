"""A child's drill-down answer, checked before it is passed on (gRPC Query; docs/design.md §3.5).

Query replies are not signed, so a parent believes of them only what it can tie to a signature.
Who is in a subtree is signed: every node that answers sends the framework it issued
(``FrameworkProof``: the envelope exactly as signed, with the issuer's certificates), which names
that node's units and pins the framework of the node above. The parent verifies a chain of pins
from its own framework down: the child's framework must pin the one the child was asked about, a
grandchild's must pin the child's, and so on. A row is kept only if its unit is named by the
verified framework of the node one level above it, and that node is itself reached this way.

Nothing the answer says about a unit is used except its code, value and source: the name comes
from the verified framework, the level from the code's length, the parent from the code's prefix.
Every row left out is listed with its reason (``DroppedRow``) and counted, so an office sees that
a node answered with units that are not there.

What stays unsigned: the figures themselves (a node can misstate a value of its own subtree, but
not invent a unit in it), and the list of nodes that did not answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from aggregator.framework import LEVELS, Framework, level_of, parent_code
from aggregator.numbers import parse_decimal, to_text
from proto.appraisal.v1 import appraisal_pb2 as pb
from sync.codec import decode_framework
from sync.envelope import PAYLOAD_FRAMEWORK, EnvelopeError, digest, open_envelope
from sync.framework_checks import check_issued
from sync.trust import Identity, TrustState, valid_code, verify_signed_by

SOURCES = frozenset({"entered", "reported", "rolled_up"})
LISTED = 100  # dropped rows listed in one answer; ``dropped_total`` counts them all
UNIT_TEXT = 40  # characters kept of a unit that is not a code, to show what was dropped
MAX_TOTAL = 2**32 - 1  # dropped_total is a uint32

# Why a row was left out: the code travels, and each node writes the reason from its own table, so no
# text of a descendant's reaches a page.
REASONS = {
    "drilldown.bad_code": "不是有效的区划代码 (not a valid division code)",
    "drilldown.outside": "不在应答节点的辖区内 (outside the answering node's subtree)",
    "drilldown.too_deep": "超出所查层级 (deeper than asked)",
    "drilldown.wrong_indicator": "不是所查指标 (another indicator than asked)",
    "drilldown.duplicate": "重复列出 (listed twice)",
    "drilldown.bad_value": "数值无效 (not a valid number)",
    "drilldown.bad_source": "来源无效 (unknown source)",
    "drilldown.unverified": "其上级未提供可核验的指标体系 (no verified framework of the node above it)",
    "drilldown.not_a_unit": "不是其上级所签发指标体系的被考评单位 (not a unit of the signed framework above it)",
    "drilldown.bad_proof": "所附指标体系未通过核验 (the signed framework it sent does not verify)",
    "drilldown.other": "下级所报的剔除原因，本节点无法识别 (a reason reported from below that this node does not know)",
}


@dataclass
class Checked:
    """What a parent keeps of one child's answer."""

    rows: list[pb.QueryRow] = field(default_factory=list)
    proofs: list[pb.FrameworkProof] = field(default_factory=list)  # verified: forwarded up as received
    partial: list[str] = field(default_factory=list)
    dropped: list[pb.DroppedRow] = field(default_factory=list)
    dropped_total: int = 0

    def drop(self, row: pb.DroppedRow) -> None:
        self.count(1)
        if len(self.dropped) < LISTED:
            self.dropped.append(row)

    def count(self, n: int) -> None:
        self.dropped_total = min(MAX_TOTAL, self.dropped_total + max(0, n))


def dropped_row(unit: str, code: str, by: str, via: str, detail: str = "") -> pb.DroppedRow:
    reason = REASONS[code] + (f"：{detail}" if detail else "")
    return pb.DroppedRow(unit=unit[:UNIT_TEXT], code=code, reason=reason[:300], by=by, via=via)


def _is_code(code: str) -> bool:
    return valid_code(code, level_of(code))


def _depth(code: str, below: str) -> int:
    """Levels from ``below`` down to ``code`` (both valid codes)."""
    return LEVELS.index(level_of(code)) - LEVELS.index(level_of(below))


def verify_proof(proof: pb.FrameworkProof, node: str, above: tuple[Framework, str], cycle: str, root: Identity,
                 trust: TrustState | None, now: int) -> tuple[Framework, str]:
    """The framework ``node`` issued for ``cycle``, decomposing ``above`` (framework, digest): signed
    by ``node`` under a chain to ``root`` and passing what ``node``'s own children check on receipt
    (sync/framework_checks.py: scope, structure, linkage), expiry aside. Raise EnvelopeError."""
    fw = decode_framework(open_envelope(proof.envelope, PAYLOAD_FRAMEWORK).payload)
    # The chain is checked as of the framework's signing (as evidence is as of its approval): an earlier
    # cycle's framework still says who was appraised after the certificate that signed it expired.
    at = min(now, fw.issued_at)
    signer, payload = verify_signed_by(proof.envelope, PAYLOAD_FRAMEWORK, list(proof.certificate_chain), root, at)
    if signer.code != node or fw.issuer != node:
        raise EnvelopeError(f"指标体系由 {signer.code} 签发，不是 {node[:12]} 的 (framework not signed by the node it "
                            "speaks for)", code="drilldown.proof_signer")
    revoked = trust.revoked_before(signer, now) if trust is not None else ""
    if revoked:  # any revocation at all: a revoked node vouches for nobody, whatever date it claims
        raise EnvelopeError(f"签发者的证书已被吊销 (signer's certificate revoked): {revoked}",
                            code="drilldown.proof_revoked")
    if fw.cycle != cycle:
        raise EnvelopeError(f"指标体系年度 {fw.cycle} 不是所查的 {cycle} (framework of another cycle)",
                            code="drilldown.proof_cycle")
    if fw.parent is None or fw.parent.digest != above[1]:
        raise EnvelopeError(f"{node} 的指标体系未钉住所查的上级指标体系 {above[1][:12]}… (framework does not pin the one "
                            "asked about)", code="drilldown.proof_pin")
    check_issued(fw, signer, above, None)  # expiry aside: an earlier cycle's framework still names its units
    return fw, digest(payload)


class _Subtree:
    """The verified frameworks below one child, verified only as rows need them."""

    def __init__(self, answer: pb.QueryReply, checked: Checked, child: str, asked: tuple[Framework, str], cycle: str,
                 root: Identity, trust: TrustState | None, now: int, by: str) -> None:
        self.checked, self.child, self.asked, self.cycle = checked, child, asked, cycle
        self.root, self.trust, self.now, self.by = root, trust, now, by
        self.proofs: dict[str, pb.FrameworkProof] = {}
        for p in answer.proofs:  # the first one per node counts; a node has one framework per answer
            if p.node not in self.proofs and (p.node == child or (p.node.startswith(child) and _is_code(p.node))):
                self.proofs[p.node] = p
        # node → (its verified framework and digest, unit → name), or None: not verified
        self.found: dict[str, tuple[tuple[Framework, str], dict[str, str]] | None] = {}

    def units(self, node: str) -> dict[str, str] | None:
        """The units (code → name) of ``node``'s verified framework, or None."""
        if node in self.found:
            found = self.found[node]
            return found[1] if found is not None else None
        self.found[node] = None
        if node == self.child:
            above = self.asked
        else:
            names = self.units(parent_code(node))
            verified = self.found.get(parent_code(node))
            if names is None or verified is None or node not in names:
                return None
            above = verified[0]
        proof = self.proofs.get(node)
        if proof is None:
            return None
        try:
            fw, fw_digest = verify_proof(proof, node, above, self.cycle, self.root, self.trust, self.now)
        except (ValueError, ArithmeticError) as exc:  # EnvelopeError, TrustError, or a number in the payload
            self.checked.drop(dropped_row(node, "drilldown.bad_proof", self.by, self.child, str(exc)[:200]))
            return None
        self.checked.proofs.append(proof)
        names = {u.code: u.name for u in fw.units}
        self.found[node] = ((fw, fw_digest), names)
        return names


def check_answer(answer: pb.QueryReply, *, child: str, asked: tuple[Framework, str], cycle: str, indicator: str,
                 depth: int, root: Identity, trust: TrustState | None, now: int, by: str) -> Checked:
    """Keep of ``child``'s answer what is tied to a signed framework (module docstring).

    ``asked``: the framework (and digest) that ``by``, the asking node, issued and asked ``child``
    about; ``depth``: the levels below ``child`` it was asked for."""
    out = Checked()
    sub = _Subtree(answer, out, child, asked, cycle, root, trust, now, by)
    seen: set[str] = set()

    def drop(unit: str, code: str) -> None:
        out.drop(dropped_row(unit, code, by, child))

    for row in answer.rows:
        unit = row.unit
        if not _is_code(unit):
            drop(unit, "drilldown.bad_code")
            continue
        if unit == child:
            continue  # the asking node holds the child's own value, from the child's signed bundle
        if not unit.startswith(child) or _depth(unit, child) <= 0:
            drop(unit, "drilldown.outside")
            continue
        if _depth(unit, child) > depth:
            drop(unit, "drilldown.too_deep")
            continue
        if row.indicator != indicator:
            drop(unit, "drilldown.wrong_indicator")
            continue
        if unit in seen:
            drop(unit, "drilldown.duplicate")
            continue
        seen.add(unit)
        try:
            value = to_text(parse_decimal(row.value, indicator))
        except (ValueError, ArithmeticError):
            drop(unit, "drilldown.bad_value")
            continue
        if row.source not in SOURCES:
            drop(unit, "drilldown.bad_source")
            continue
        above = parent_code(unit)
        names = sub.units(above)
        if names is None:
            drop(unit, "drilldown.unverified")
            continue
        if unit not in names:
            drop(unit, "drilldown.not_a_unit")
            continue
        out.rows.append(pb.QueryRow(unit=unit, name=names[unit], parent=above, level=level_of(unit),
                                    indicator=indicator, value=value, source=row.source))
    # A child that descends but sends no verified framework of its own could not answer under it.
    if depth > 0 and level_of(child) != "township" and sub.units(child) is None:
        out.partial.append(child)
    for code in answer.partial:
        if code in out.partial or code == child or not code.startswith(child) or not _is_code(code):
            continue
        names = sub.units(parent_code(code)) if 0 < _depth(code, child) <= depth else None
        if names is not None and code in names:
            out.partial.append(code)
    _passed_up(out, answer.dropped, answer.dropped_total, child)
    return out


def _passed_up(out: Checked, dropped: Sequence[pb.DroppedRow], total: int, child: str) -> None:
    """What the child (or a node below it) says it dropped: codes it could not have used are mended,
    and the reason is this node's own text for the code."""
    listed = 0
    for d in dropped:
        code = d.code if d.code in REASONS else "drilldown.other"
        by = d.by if d.by == child or (d.by.startswith(child) and _is_code(d.by)) else child
        via = d.via if d.via.startswith(by) and d.via != by and _is_code(d.via) else ""
        out.drop(pb.DroppedRow(unit=d.unit[:UNIT_TEXT], code=code, reason=REASONS[code], by=by, via=via))
        listed += 1
    out.count(total - listed)  # the ones it counted but did not list


def proof_of(node: str, envelope: bytes, chain: Sequence[bytes]) -> pb.FrameworkProof:
    return pb.FrameworkProof(node=node, envelope=envelope, certificate_chain=list(chain))
