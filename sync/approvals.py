"""Multi-level approval: signed attestations that travel up with the data.

When a node rolls its children's bundles up into its own, it names them in its bundle (``sources``:
node and bundle id, inside its own signature) and signs an Approval (审核通过) over each one's hash.
Its ResultMessage carries those approvals and, as evidence, the sources' own ResultMessages: their
signed bundle, their certificates, their approvals, the framework they were rolled up by, and their
own evidence one level deep. The receiver checks, without asking anyone:

- depth 1: every source is a child of the sender, approved by the sender, and the evidence holds
  exactly that bundle, signed by that child under a valid certificate chain; given the framework the
  receiver issued (``issued``), every rolled-up value is recomputed from the sources
  (sync/rollup_check.py);
- depth 2: every source of a source is approved by that child; given ``issued``, the same checks
  again one level down, on the evidence's evidence, with the framework the sender issued.

So the province, receiving a city's bundle, verifies the city's approval of each county bundle and
each county's approval of each township bundle, and recomputes the city's and every county's
roll-up. The results receiver treats a failure as content: the bundle joins the sender's chain,
marked rejected with the reason, and none of its values count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from aggregator.framework import LEVELS, Framework
from proto.appraisal.v1 import appraisal_pb2 as pb
from sync import rollup_check
from sync.codec import Bundle, decode_bundle
from sync.envelope import PAYLOAD_APPROVAL, PAYLOAD_RESULTS, EnvelopeError, digest, open_envelope, open_signed, sign
from sync.identity import Me
from sync.limits import DEFAULT_LIMITS
from sync.trust import Identity, TrustState, valid_code, verify_signed_by

MAX_EVIDENCE = DEFAULT_LIMITS.evidence


@dataclass(frozen=True)
class Source:
    """A child's bundle this node rolled up: what it approves and forwards as evidence."""

    node: str
    bundle_id: str
    seq: int
    message: bytes  # the child's ResultMessage as received
    reviewer: str = ""  # who approved it here; "" when approved on receipt
    approved_at: int = 0  # when it was approved here; 0: now (as the roll-up is signed)


@dataclass(frozen=True)
class Attested:
    approved: int  # sources approved by the sender (depth 1)
    approved_below: int  # their sources approved by the children (depth 2)


def attach(me: Me, sources: Sequence[Source], now: int) -> tuple[list[bytes], list[bytes]]:
    """The approvals this node signs over its sources, and the evidence it forwards with them."""
    approvals = [sign(PAYLOAD_APPROVAL, pb.Approval(approver=me.code, node=s.node, bundle_id=s.bundle_id, seq=s.seq,
                                                     approved_at=s.approved_at or now,
                                                     reviewer=s.reviewer[:64]).SerializeToString(),
                      me.key)
                 for s in sources]
    evidence = []
    for s in sources:
        msg = pb.ResultMessage.FromString(s.message)
        inner = []
        for data in msg.evidence:  # two levels are what the level above recomputes; deeper ones it cannot use
            below = pb.ResultMessage.FromString(data)
            del below.evidence[:]
            below.ClearField("framework")
            inner.append(below.SerializeToString())
        msg.evidence[:] = inner
        evidence.append(msg.SerializeToString())
    return approvals, evidence


def _approvals(envelopes: Sequence[bytes], approver: Identity) -> dict[tuple[str, str], pb.Approval]:
    out: dict[tuple[str, str], pb.Approval] = {}
    for data in envelopes:
        a = open_signed(data, PAYLOAD_APPROVAL, approver.public_key, pb.Approval(),
                        "审核记录无法解析 (malformed approval)",
                        f"审核签名不是 {approver.code} 的 (approval not signed by {approver.code})",
                        malformed_code="approval.malformed", not_signed_code="approval.wrong_signer")
        if a.approver != approver.code:
            raise EnvelopeError(f"审核记录署名 {a.approver[:12]} 与签名者 {approver.code} 不符 (approver is not the signer)",
                                code="approval.approver_not_signer")
        out[(a.node, a.bundle_id)] = a
    return out


def is_child(node: str, parent: Identity) -> bool:
    if parent.level == "township":
        return False
    return node.startswith(parent.code) and valid_code(node, LEVELS[LEVELS.index(parent.level) + 1])


def verify_attestations(msg: pb.ResultMessage, signer: Identity, bundle: Bundle, root: Identity, now: int,
                        state: TrustState | None = None, max_evidence: int = MAX_EVIDENCE, *,
                        issued: tuple[Framework, str] | None = None, depth: int = 2) -> Attested:
    """Check the approvals and evidence of a verified bundle; raise EnvelopeError naming the first fault.
    ``max_evidence``: limits.evidence of the receiving node. ``issued``: the framework (and digest)
    the receiver issued to the sender, which the bundle answers; with it, roll-ups are recomputed
    ``depth`` levels down (rollup_check.RollupMismatch on a disagreement)."""
    if len(msg.evidence) > max_evidence or len(msg.approvals) > max_evidence:
        raise EnvelopeError("审核证据过多 (too much evidence)", code="approval.too_much_evidence")
    approvals = _approvals(msg.approvals, signer)
    # Each piece of evidence is checked as of when the sender approved it (rule 10): a township
    # certificate that has expired since does not taint a county bundle approved while it was valid.
    approved_at = {bundle_id: a.approved_at for (_, bundle_id), a in approvals.items()}
    evidence: dict[str, tuple[pb.ResultMessage, Bundle, Identity]] = {}
    for data in msg.evidence:
        ev = pb.ResultMessage()
        try:
            ev.ParseFromString(data)
        except DecodeError:
            raise EnvelopeError("审核证据无法解析 (malformed evidence)", code="approval.malformed_evidence") from None
        at = min(now, approved_at.get(digest(open_envelope(ev.bundle, PAYLOAD_RESULTS).payload), now))
        ev_signer, payload = verify_signed_by(ev.bundle, PAYLOAD_RESULTS, list(ev.certificate_chain), root, at)
        if state is not None:
            revoked = state.revoked_before(ev_signer, at)
            if revoked:
                raise EnvelopeError(f"证据签名者的证书在审核前已被吊销 (evidence signed under a certificate revoked "
                                    f"before it was approved): {revoked}", code="approval.evidence_revoked")
        ev_bundle = decode_bundle(payload)
        if ev_bundle.node != ev_signer.code:
            raise EnvelopeError(f"证据中的结果包属于 {ev_bundle.node}，却由 {ev_signer.code} 签名 "
                                "(evidence signed by another node)", code="approval.evidence_signer")
        evidence[digest(payload)] = (ev, ev_bundle, ev_signer)
    cited = {bundle_id for _, bundle_id in bundle.sources}
    if set(evidence) - cited or set(approvals) - set(bundle.sources):
        raise EnvelopeError("审核记录或证据包含结果包未引用的来源 (approval or evidence for a bundle not cited)",
                            code="approval.not_cited")
    derived = (rollup_check.derived_framework(msg, signer, issued)
               if issued is not None and (bundle.sources or bundle.provided) else None)
    below = 0
    for node, bundle_id in bundle.sources:
        if not is_child(node, signer):
            raise EnvelopeError(f"来源 {node} 不是 {signer.code} 的下级 (source is not a child of the sender)",
                                code="approval.source_not_child")
        approval = approvals.get((node, bundle_id))
        if approval is None:
            raise EnvelopeError(f"{signer.code} 未审核来源 {node} 的结果包 {bundle_id[:12]}… (source not approved)",
                                code="approval.not_approved")
        found = evidence.get(bundle_id)
        if found is None:
            raise EnvelopeError(f"缺少来源 {node} 的结果包 {bundle_id[:12]}… 作为证据 (evidence missing)",
                                code="approval.evidence_missing")
        ev, ev_bundle, ev_signer = found
        if ev_bundle.node != node or approval.seq != ev_bundle.seq:
            raise EnvelopeError(f"来源 {node} 的证据与审核记录不符 (evidence does not match the approval)",
                                code="approval.evidence_mismatch")
        if (ev_bundle.sources or ev_bundle.provided) and derived is not None and depth > 1:
            at = min(now, approval.approved_at)
            below += verify_attestations(ev, ev_signer, ev_bundle, root, at, state, max_evidence, issued=derived,
                                         depth=depth - 1).approved
        elif ev_bundle.sources:
            approved_below = _approvals(ev.approvals, ev_signer)
            missing = [s for s in ev_bundle.sources if s not in approved_below]
            if missing:
                raise EnvelopeError(f"{node} 未审核其来源 {missing[0][0]} 的结果包 {missing[0][1][:12]}… "
                                    "(a source's own source was not approved)", code="approval.below_not_approved")
            below += len(ev_bundle.sources)
    if derived is not None:
        rollup_check.recompute(bundle, *derived, evidence)
    return Attested(len(bundle.sources), below)
