"""Request and response bodies of the results-use API (结果运用, /api/v1/use-lists), in the style of
gateway/schemas.py (gateway/openapi.py takes every gateway/*_schemas.py into the document)."""

from __future__ import annotations

import builtins
from typing import Annotated

import msgspec
from msgspec import Meta, Struct

from gateway.schemas import Cycle


class ProduceUseLists(Struct, kw_only=True, forbid_unknown_fields=True):
    cycle: Cycle


class UseEntryView(Struct, kw_only=True):
    unit: str
    name: str
    rule: str
    because: str


class UseListView(Struct, kw_only=True):
    digest: Annotated[str, Meta(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the signed payload")]
    node: str
    cycle: str
    list_: str = msgspec.field(name="list")
    title: str
    body: str
    body_name: str
    version: int
    issued_at: int
    created_by: str
    publications: builtins.list[str]
    entries: builtins.list[UseEntryView]
    new: bool = False  # produced by this request (POST); False: the latest version already said the same
    xlsx: str = ""
    csv: str = ""
    dsse: str = ""
