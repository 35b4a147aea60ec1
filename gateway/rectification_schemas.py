"""The bodies of /api/v1/rectifications and /api/v1/comments, as msgspec Structs (gateway/schemas.py
style: every constraint the server enforces stated on its field; request bodies refuse unknown
fields). Creating items is a tagged union on ``from``; updating one, on ``action``."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta, Struct

from gateway.schemas import Cycle

Deadline = Annotated[int, Meta(ge=1, le=2**53, description="整改期限 deadline, Unix seconds (after now, within 3 years)")]
ItemId = Annotated[int, Meta(ge=1, le=2**53)]
UnitCode = Annotated[str, Meta(pattern=r"^[0-9A-Za-z-]{2,32}$", description="被考评单位代码 unit code")]
Title = Annotated[str, Meta(max_length=200, description="整改事项 (at most 200 characters)")]
Text = Annotated[str, Meta(min_length=1, max_length=2000, pattern=r"\S")]
Reason = Annotated[str, Meta(min_length=1, max_length=500, pattern=r"\S")]
Sha256 = Annotated[str, Meta(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of a file the node holds")]


class RectificationView(Struct, kw_only=True):
    id: int
    cycle: str
    unit: str
    unit_name: str
    source: str  # weak | appeal | comment | office | carried
    ref: str
    title: str
    measure: str
    owner: str
    deadline: int
    status: str  # open | review | done | carried
    overdue: bool
    evidence: list[str]
    closure: str
    created_by: str
    created_at: int
    closed_by: str
    closed_at: int
    carried_from: int


class _Create(Struct, kw_only=True, forbid_unknown_fields=True, tag_field="from"):
    deadline: Deadline


class FromWeak(_Create, tag="weak"):
    """One item per weak indicator (lowest shares of their weight, below the class average) of the
    cycle's current publication, for each unit; indicators that already have an item are skipped."""

    cycle: Cycle


class FromAppeal(_Create, tag="appeal"):
    """An item answering a decided appeal."""

    appeal: ItemId
    title: Title = ""


class FromComment(_Create, tag="comment"):
    """An item from a public comment."""

    comment: ItemId
    title: Title = ""


class ByHand(_Create, tag="office"):
    """An item the office sets."""

    cycle: Cycle
    unit: UnitCode
    title: Annotated[str, Meta(min_length=1, max_length=200, pattern=r"\S")]
    owner: Annotated[str, Meta(max_length=64)] = ""


class CarryOver(_Create, tag="carry"):
    """Every open item of ``cycle`` becomes an item of the next cycle (its task book), due ``deadline``."""

    cycle: Cycle


CreateRectification = FromWeak | FromAppeal | FromComment | ByHand | CarryOver


class _Update(Struct, kw_only=True, forbid_unknown_fields=True, tag_field="action"):
    pass


class SetMeasure(_Update, tag="measure"):
    """The unit's 整改措施 and progress (rectification.update)."""

    measure: Text


class RequestClosure(_Update, tag="request"):
    """The unit asks for closure (rectification.update): how it was put right, with evidence."""

    closure: Text
    evidence: Annotated[list[Sha256], Meta(max_length=20)] = []


class AcceptClosure(_Update, tag="accept"):
    """The office accepts the closure (销号) (rectification.manage)."""


class Reopen(_Update, tag="reopen"):
    """The office does not accept the closure: open again, with the reason (rectification.manage)."""

    reason: Reason


UpdateRectification = SetMeasure | RequestClosure | AcceptClosure | Reopen


class CommentView(Struct, kw_only=True):
    id: int
    cycle: str
    unit: str
    unit_name: str
    body: str
    contact: str
    created_at: int
    status: str  # new | answered | hidden
    answer: str
    answered_by: str
    answered_at: int
    rectification: int
