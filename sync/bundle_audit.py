"""Auditor: re-verify every stored result bundle as of when it was received (docs/design.md rule 10).

A node keeps each bundle exactly as signed, with the signer's certificate chain. Years later the
certificates have expired or the keys were rotated, and verifying "now" would fail. What an auditor
asks instead: was it genuine when it was taken? So each bundle is checked against the pinned province
key as of its ``received_at``: its signature, its chain (validity at that moment), revocations that
had already taken effect by then (a later revocation does not taint what came before it), its id
(the hash of its payload), its place in the sender's chain (sequence and previous hash), and its
approvals and evidence. Pure: the caller reads the rows and the revocation lists.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import DecodeError

from aggregator.framework import Framework
from proto.appraisal.v1 import appraisal_pb2 as pb
from sync.approvals import verify_attestations
from sync.codec import decode_bundle
from sync.envelope import PAYLOAD_RESULTS, EnvelopeError, digest
from sync.results_sender import GENESIS
from sync.trust import Identity, RevocationList, verify_signed_by


@dataclass(frozen=True)
class Finding:
    node: str
    seq: int
    bundle_id: str
    problem: str
    code: str = ""  # what is wrong, for programs: ``audit.*``

    def __str__(self) -> str:
        return f"{self.node} 序号 {self.seq} ({self.bundle_id[:12]}…): {self.problem}"


def audit_bundles(rows: Iterable[Any], root: Identity, revocations: Sequence[RevocationList],
                  issued: Mapping[str, Framework] | None = None) -> tuple[int, list[Finding]]:
    """``rows``: stored bundles (node, seq, id, prev_hash, message, received_at), any order.
    ``issued``: the frameworks this node issued, by digest; with them every roll-up taken is
    recomputed from its sources again (sync/rollup_check.py), as on receipt.
    Returns how many were checked and what is wrong, oldest first per node."""
    revoked = {(crl.issuer, code, serial): at for crl in revocations for (code, serial), (at, _) in crl.revoked.items()}
    findings: list[Finding] = []
    checked = 0
    previous: dict[str, tuple[int, str]] = {}
    for row in sorted(rows, key=lambda r: (r.node, r.seq)):
        checked += 1
        problem = _check(row, root, revoked, previous.get(row.node), issued or {})
        if problem is not None:
            findings.append(Finding(row.node, row.seq, row.id, problem[1], problem[0]))
        previous[row.node] = (row.seq, row.id)
    return checked, findings


def _check(row: Any, root: Identity, revoked: dict[tuple[str, str, int], int],
           prev: tuple[int, str] | None, issued: Mapping[str, Framework]) -> tuple[str, str] | None:
    """None when the row holds up; else (code, problem)."""
    at = int(row.received_at)
    msg = pb.ResultMessage()
    try:
        msg.ParseFromString(row.message)
        signer, payload = verify_signed_by(msg.bundle, PAYLOAD_RESULTS, list(msg.certificate_chain), root, at)
        bundle = decode_bundle(payload)
    except (DecodeError, EnvelopeError, ArithmeticError) as exc:
        return "audit.not_genuine", f"签名或证书链在接收时 ({at}) 不成立 (not genuine when received): {exc}"
    for c in signer.certs:
        when = revoked.get((c.issuer, c.code, c.serial))
        if when is not None and when <= at:
            return ("audit.revoked",
                    f"接收时节点 {c.code} 的证书（序号 {c.serial}）已被吊销 (certificate already revoked when received)")
    if digest(payload) != row.id:
        return "audit.bad_id", "结果包编号不是其内容的摘要 (bundle id is not the hash of its payload)"
    if (bundle.node, bundle.seq, bundle.prev_hash) != (row.node, row.seq, row.prev_hash) or signer.code != row.node:
        return ("audit.row_mismatch",
                "存储的节点、序号或前序哈希与签名内容不符 (stored node, seq or previous hash differ from what was signed)")
    expected = (0, GENESIS) if prev is None else prev
    if bundle.seq != expected[0] + 1 or bundle.prev_hash != expected[1]:
        return "audit.chain_broken", f"结果包链断裂：应接续序号 {expected[0]} (bundle chain broken)"
    if getattr(row, "status", "accepted") == "rejected":
        return None  # its content was refused on arrival, with the reason on record; its signature still counts
    try:
        fw = issued.get(bundle.framework_digest)
        verify_attestations(msg, signer, bundle, root, at,
                            issued=(fw, bundle.framework_digest) if fw is not None else None)
    except (EnvelopeError, ArithmeticError) as exc:
        return "audit.approvals_broken", f"审核链不成立 (approval chain broken): {exc}"
    return None
