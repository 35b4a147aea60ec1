"""The bodies of /api/v1/appeals (申诉/复核), as msgspec Structs (gateway/schemas.py style): every
constraint the service enforces on a field's shape is stated here."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import Meta, Struct

from gateway.schemas import Cycle, Login, Period, UnitCode

Reason = Annotated[str, Meta(min_length=1, max_length=2000, pattern=r"\S",
                             description="理由 reason, at most 2000 characters")]
Sha256 = Annotated[str, Meta(pattern=r"^[0-9a-f]{64}$", description="附件的 SHA-256 (an attachment uploaded before)")]
IndicatorKey = Annotated[str, Meta(pattern=r"^([A-Za-z0-9][A-Za-z0-9._-]{0,63})?$",
                                   description="the appealed value's key (target value); empty for a score or grade")]
Target = Literal["value", "score", "grade"]
Decision = Literal["upheld", "partly", "rejected"]
AppealStatus = Literal["filed", "assigned", "upheld", "partly", "rejected", "withdrawn"]
Epoch = Annotated[int, Meta(ge=1, le=2**63 - 1, description="Unix time, seconds")]


class AppealIn(Struct, kw_only=True, forbid_unknown_fields=True):
    """申诉: against one figure of the unit's current publicity publication of (cycle, period)."""

    cycle: Cycle
    period: Period
    unit: UnitCode
    target: Target
    indicator: IndicatorKey = ""
    reason: Reason
    evidence: Annotated[list[Sha256], Meta(max_length=20)] = []


class AssignIn(Struct, kw_only=True, forbid_unknown_fields=True):
    reviewer: Login


class DecideIn(Struct, kw_only=True, forbid_unknown_fields=True):
    decision: Decision
    reason: Reason


class ExtendIn(Struct, kw_only=True, forbid_unknown_fields=True):
    """The office moves the deadline for a decision later (at most 90 days further)."""

    until: Epoch
    reason: Reason


class WithdrawIn(Struct, kw_only=True, forbid_unknown_fields=True):
    note: Annotated[str, Meta(max_length=500)] = ""


class AppealView(Struct, kw_only=True):
    id: int
    cycle: str
    period: str
    unit: str
    unit_name: str
    publication: str
    target: Target
    indicator: str
    reason: str
    evidence: list[str]
    status: AppealStatus
    filed_by: str
    filed_at: int
    decide_by: int
    overdue: bool  # open, and past the deadline for a decision
    reviewer: str
    decision: str
    decided_by: str
    decided_at: int
    before: dict[str, Any]
    after: dict[str, Any]
