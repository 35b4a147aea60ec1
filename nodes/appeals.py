"""The rules of appeals (申诉/复核), pure: no I/O (nodes/services/appeals.py applies them).

An evaluated unit appeals one figure of a publication while its publicity window (公示) is open:
one indicator's value, its score or its grade, with a reason and evidence files. The office
assigns a reviewer who belongs neither to the appealing unit nor to the provider of the value; that
reviewer decides (upheld / partly / rejected, with a reason) before the deadline, which is the
window's close plus ``decide_days`` unless the office extends it. One appeal per (unit, target,
indicator) may be open at a time.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from aggregator.errors import BadInput
from sync.publication import Figure

TARGETS = ("value", "score", "grade")
DECISIONS = ("upheld", "partly", "rejected")
OPEN = ("filed", "assigned")  # the states that hold a publication back from final
CORRECTING = ("upheld", "partly")  # the decisions that change a figure
STATUSES = (*OPEN, *DECISIONS, "withdrawn")
MAX_REASON = 2000
MAX_EVIDENCE = 20
DEFAULT_DECIDE_DAYS = 10
DAY = 86400
STATUS_ZH = {"filed": "已提交，待分配复核人", "assigned": "复核中", "upheld": "申诉成立", "partly": "部分成立",
             "rejected": "申诉不成立", "withdrawn": "已撤回"}
STATUS_EN = {"filed": "filed, awaiting a reviewer", "assigned": "under review", "upheld": "upheld",
             "partly": "partly upheld", "rejected": "rejected", "withdrawn": "withdrawn"}
TARGET_ZH = {"value": "指标数值", "score": "得分", "grade": "等次"}
_SHA = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Account:
    """What eligibility reads of an account."""

    login: str
    roles: tuple[str, ...]
    org: str
    units: tuple[str, ...]
    disabled: bool = False


def check_target(target: str, indicator: str, figure: Figure) -> str:
    """The indicator key appealed (``""`` for a score or grade)."""
    if target not in TARGETS:
        raise BadInput(f"申诉对象 {target[:16]!r} 无效，应为 value（指标数值）、score（得分）或 grade（等次） "
                       "(target: value, score or grade)", code="appeals.target")
    if target != "value":
        return ""
    key = indicator.strip()
    if not key or key not in {v.indicator for v in figure.values}:
        held = "、".join(v.indicator for v in figure.values)[:200]
        raise BadInput(f"indicator：{figure.unit} 公布的数值中没有指标 {key[:40]!r}；可选：{held} "
                       "(indicator: not one of the unit's published values)", code="appeals.indicator")
    return key


def check_reason(reason: str, field: str = "reason") -> str:
    text = reason.strip()
    if not text:
        raise BadInput(f"{field}：请写明理由 (a reason is required)", code="appeals.reason_required")
    if len(text) > MAX_REASON:
        raise BadInput(f"{field}：理由 {len(text)} 字，超过上限 {MAX_REASON} 字 (reason longer than {MAX_REASON} characters)",
                       code="appeals.reason_length")
    return text


def check_evidence(evidence: Iterable[str]) -> tuple[str, ...]:
    out: list[str] = []
    for sha in evidence:
        s = sha.strip().lower()
        if not _SHA.match(s):
            raise BadInput(f"evidence：{sha[:70]!r} 不是附件的 SHA-256（64 位十六进制） (evidence: attachment sha256s)",
                           code="appeals.evidence_format")
        if s not in out:
            out.append(s)
    if len(out) > MAX_EVIDENCE:
        raise BadInput(f"evidence：至多 {MAX_EVIDENCE} 个附件 (at most {MAX_EVIDENCE} files)", code="appeals.evidence_count")
    return tuple(out)


def before_of(figure: Figure, target: str, indicator: str) -> dict[str, object]:
    """What the appeal is against, as published: score, rank, grade and (for a value) the value."""
    out: dict[str, object] = {"score": str(figure.score), "rank": figure.rank, "grade": figure.grade}
    if target == "value":
        v = next(v for v in figure.values if v.indicator == indicator)
        out["value"] = str(v.value)
        out["source"] = v.source
    return out


def after_of(figure: Figure, target: str, indicator: str) -> dict[str, object]:
    out: dict[str, object] = {"score": str(figure.score), "rank": figure.rank, "grade": figure.grade}
    if target == "value":
        v = next((v for v in figure.values if v.indicator == indicator), None)
        out["value"] = "" if v is None else str(v.value)
        out["source"] = "" if v is None else v.source
    return out


def decide_by(closes_at: int, days: int) -> int:
    """The deadline for a decision: ``days`` after the publicity window closes."""
    return closes_at + days * DAY


def ineligible(account: Account, unit: str, unit_name: str, providers: Iterable[str]) -> tuple[str, str] | None:
    """Why ``account`` may not review an appeal of ``unit`` against values given by ``providers``
    (code, message), or None when it may."""
    if account.disabled:
        return ("appeals.reviewer_disabled", f"账户 {account.login} 已停用 (the account is disabled)")
    if "reviewer" not in account.roles:
        return ("appeals.reviewer_role", f"{account.login} 没有审核人角色 (the account lacks the reviewer role)")
    own = {unit, unit_name} - {""}
    if unit in account.units or (account.org and account.org in own):
        return ("appeals.reviewer_same_unit",
                f"{account.login} 属于申诉单位 {unit}，须回避 (the reviewer belongs to the appealing unit)")
    given = {p for p in providers if p}
    if account.org and account.org in given:
        return ("appeals.reviewer_provider",
                f"{account.login} 属于该数据的提供单位 {account.org}，须回避 (the reviewer belongs to the value's provider)")
    return None


def may_decide(status: str, now: int, deadline: int) -> tuple[str, str] | None:
    """Why a decision cannot be taken now (code, message), or None."""
    if status == "filed":
        return ("appeals.not_assigned_yet", "尚未分配复核人，不能决定 (no reviewer assigned yet)")
    if status != "assigned":
        return ("appeals.closed", f"申诉状态为「{STATUS_ZH.get(status, status)}」，不能再决定 (already decided or withdrawn)")
    if now >= deadline:
        return ("appeals.deadline_passed",
                "已过复核决定期限；如需延期，请绩效办延长期限 (the deadline for a decision has passed: the office may extend it)")
    return None
