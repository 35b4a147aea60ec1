"""Bodies of the publication API (/api/v1/publications): msgspec schemas, as gateway/schemas.py."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta, Struct

Cycle = Annotated[str, Meta(pattern=r"^\d{4}$")]
Period = Annotated[str, Meta(pattern=r"^\d{4}-(Y|H[12]|Q[1-4]|M(0[1-9]|1[0-2]))$")]
Klass = Annotated[str, Meta(min_length=1, max_length=64)]
Reason = Annotated[str, Meta(max_length=1000)]
Stamp = Annotated[int, Meta(ge=0, le=2**40)]
Digest = Annotated[str, Meta(pattern=r"^[0-9a-f]{64}$")]


class Publicise(Struct, kw_only=True, forbid_unknown_fields=True, rename={"unit_class": "class"}):
    """Open (or re-open, with a reason) the publicity window of one class's results (公示)."""

    cycle: Cycle
    period: Period
    unit_class: Klass
    opens_at: Stamp  # unix seconds
    closes_at: Stamp
    public: bool = False  # show the publicity to the public too
    reason: Reason = ""


class Finalise(Struct, kw_only=True, forbid_unknown_fields=True, rename={"unit_class": "class"}):
    """Finalise (终审) after the window closed and every appeal was decided; or ``revise`` a final one."""

    cycle: Cycle
    period: Period
    unit_class: Klass
    reason: Reason = ""


class PublishedFigure(Struct, kw_only=True):
    unit: str
    name: str
    score: str
    rank: int
    grade: str


class PublicationView(Struct, kw_only=True, rename={"unit_class": "class"}):
    digest: Digest
    node: str
    cycle: str
    period: str
    unit_class: str
    framework: str
    version: int
    state: str  # publicity | final
    public: bool
    opens_at: int
    closes_at: int
    reason: str
    previous: str
    published_at: int
    by: str
    units: list[PublishedFigure]
