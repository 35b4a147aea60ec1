"""Bodies and answers of /api/v1/division-changes and /api/v1/admin/division-changes (区划调整)."""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import UNSET, Meta, Struct, UnsetType

Code = Annotated[str, Meta(pattern=r"^([0-9]{2}|[0-9]{4}|[0-9]{6}|[0-9]{9})$", description="区划代码 (2/4/6/9 digits)")]
Day = Annotated[str, Meta(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$", description="YYYY-MM-DD")]
Name = Annotated[str, Meta(min_length=1, max_length=100)]
ShareText = Annotated[str, Meta(pattern=r"^(0(\.[0-9]{1,30})?|1(\.0{1,30})?)$", description="0 … 1, a decimal")]


class ChildIn(Struct, kw_only=True, forbid_unknown_fields=True):
    """Where a child of an ending unit goes."""

    code: Code
    new_code: Code
    name: Annotated[str, Meta(max_length=100)] = ""


class PartIn(Struct, kw_only=True, forbid_unknown_fields=True):
    code: Code
    name: Name
    share: ShareText
    shares: dict[Annotated[str, Meta(max_length=64)], ShareText] = {}


class DivisionChangeIn(Struct, kw_only=True, forbid_unknown_fields=True):
    """One change. Which fields a kind takes: rename unit+name; recode unit+code+name; move
    unit+parent+code+name; merge units+code+name (survivor, children); split unit+parts (rule, children).
    The issuer is the node itself."""

    kind: Literal["rename", "recode", "move", "merge", "split"]
    effective: Day
    ref: Annotated[str, Meta(max_length=200, description="批准文号 (the approval it carries out)")] = ""
    unit: Code | UnsetType = UNSET
    units: Annotated[list[Code], Meta(max_length=100)] | UnsetType = UNSET
    code: Code | UnsetType = UNSET
    name: Name | UnsetType = UNSET
    parent: Code | UnsetType = UNSET
    survivor: bool | UnsetType = UNSET  # merge: ``code`` is one of ``units`` and absorbs the others
    rule: Annotated[str, Meta(max_length=100)] | UnsetType = UNSET
    parts: Annotated[list[PartIn], Meta(max_length=100)] | UnsetType = UNSET
    children: Annotated[list[ChildIn], Meta(max_length=10_000)] | UnsetType = UNSET


class IssueDivisionChanges(Struct, kw_only=True, forbid_unknown_fields=True):
    changes: Annotated[list[DivisionChangeIn], Meta(min_length=1, max_length=10_000)]


class DivisionChangeView(Struct, kw_only=True):
    kind: str
    effective: str
    issuer: str
    ref: str
    units: list[str]
    code: str = ""
    name: str = ""
    parent: str = ""
    survivor: bool = False


class DivisionListView(Struct, kw_only=True):
    position: int  # acceptance order
    issuer: str
    seq: int
    digest: str
    previous: str
    issued_at: int
    sender: str
    accepted_at: int
    changes: list[DivisionChangeView]


class TreeUnit(Struct, kw_only=True):
    code: str
    name: str
    uid: str
    parent: str


class DivisionChanges(Struct, kw_only=True):
    lists: list[DivisionListView]
    date: str | UnsetType = UNSET  # with ?date=: the tree in force that day
    tree: list[TreeUnit] | UnsetType = UNSET


class IssuedDivisionChanges(Struct, kw_only=True):
    issuer: str
    seq: int
    digest: str
