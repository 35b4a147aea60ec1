"""What the public results site reads (结果可查询): exactly what ``PublicationService.visible(tx, None)``
lets the public see, decoded once per store generation.

A :class:`Shown` publication is a visible version (final, or publicity the office made public) with
its signed document as decoded (``sync.publication.read``), the framework it names, its proof bytes
and its open-data files, each computed once from the signed bytes (nodes/public_data.py). The whole
:class:`Snapshot` is kept in the node's read cache under the store's generation (nodes/read_cache.py):
any committed write (a new version, a finalisation) makes the next request build a new one, and a
burst of requests builds it once. Nothing interim or internal is read here: no scores table, no
values table, only signed publications.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import msgspec

from aggregator.errors import NotFound
from aggregator.framework import Framework
from nodes import public_data
from nodes.repositories.publications import PublicationRecord
from nodes.services.context import NodeContext, framework_of
from nodes.services.publication import PublicationService
from sync import publication as pubs
from sync.keys import public_hex

SNAPSHOT_TTL = 300.0  # seconds at most; any committed write makes a new one sooner
UNIT_CODE_MAX = 32


@dataclass
class Shown:
    record: PublicationRecord
    doc: pubs.Published
    framework: Framework | None
    _files: dict[str, bytes] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        return self.record.digest

    def file(self, kind: str, node_name: str) -> bytes:
        """``csv``, ``sdmx``, ``json`` or the proof ``pb``: built once from the signed document."""
        held = self._files.get(kind)
        if held is None:
            make: dict[str, Callable[[], bytes]] = {
                "csv": lambda: public_data.csv_bytes(self.doc, self.framework),
                "sdmx": lambda: public_data.sdmx_bytes(self.doc),
                "json": lambda: msgspec.json.encode(self.document(node_name)),
                "pb": lambda: self.record.proof}
            held = self._files[kind] = make[kind]()
        return held

    def document(self, node_name: str) -> dict[str, Any]:
        return public_data.document(self.doc, node_name, self.framework)


@dataclass(frozen=True)
class UnitRow:
    """One unit in one shown publication."""

    shown: Shown
    figure: pubs.Figure


@dataclass
class Snapshot:
    node_name: str
    root_key_hex: str
    shown: list[Shown]  # cycle descending, then class, then period

    def by_digest(self, digest: str) -> Shown | None:
        return next((s for s in self.shown if s.digest == digest), None)

    def cycles(self) -> list[str]:
        return sorted({s.doc.cycle for s in self.shown}, reverse=True)

    def of_class(self, cycle: str, unit_class: str) -> list[Shown]:
        return [s for s in self.shown if s.doc.cycle == cycle and s.record.unit_class == unit_class]

    def unit(self, code: str) -> list[UnitRow]:
        """The unit in every shown publication, oldest cycle first (then period)."""
        rows = [UnitRow(s, f) for s in self.shown for f in s.doc.units if f.unit == code]
        return sorted(rows, key=lambda r: (r.shown.doc.cycle, r.shown.doc.period, r.shown.doc.published_at))

    def search(self, q: str, limit: int = 50) -> list[tuple[str, str]]:
        """(code, name) of the units whose code starts with ``q`` or whose name contains it."""
        q = q.strip()
        if not q:
            return []
        found: dict[str, str] = {}
        for s in self.shown:
            for f in s.doc.units:
                if f.unit.startswith(q) or q.casefold() in f.name.casefold():
                    found.setdefault(f.unit, f.name)
        return sorted(found.items())[:limit]


class PublicSite:
    def __init__(self, ctx: NodeContext, publication: PublicationService) -> None:
        self.ctx = ctx
        self.publication = publication

    async def snapshot(self) -> Snapshot:
        return await self.ctx.cache.get(("public-site",), self._build, SNAPSHOT_TTL)

    async def _build(self) -> Snapshot:
        me = self.ctx.me
        shown = []
        async with self.ctx.store.read() as r:
            for rec in await self.publication.visible(r, None):
                row = await r.frameworks.get(rec.framework_digest)
                shown.append(Shown(rec, pubs.read(rec.envelope), framework_of(row) if row is not None else None))
        shown.sort(key=lambda s: (-int(s.doc.cycle), s.record.unit_class, s.doc.period))
        return Snapshot(me.name, public_hex(me.root.public_key), shown)

    async def get(self, digest: str) -> Shown:
        """The shown version ``digest``; else the service's refusal (not found, or superseded: then
        the detail names the current version's address)."""
        snap = await self.snapshot()
        found = snap.by_digest(digest)
        if found is not None:
            return found
        async with self.ctx.store.read() as r:
            try:
                rec = await self.publication.get_visible(r, None, digest)
            except NotFound as e:
                old = await r.publications.get(digest) if e.code == "publication.superseded" else None
                current = next((s for s in snap.shown if old is not None and (s.doc.cycle, s.doc.period,
                                s.record.unit_class) == (old.cycle, old.period, old.unit_class)), None)
                if current is None:
                    raise
                raise NotFound(f"这份公布结果已被新版本取代；现行版本见 (superseded; the current version is) "
                               f"{current_path(current)}", code="public.superseded") from None
            row = await r.frameworks.get(rec.framework_digest)
        return Shown(rec, pubs.read(rec.envelope), framework_of(row) if row is not None else None)


def current_path(s: Shown) -> str:
    """The public page of a shown publication's class and period."""
    return f"/public/{s.doc.cycle}/{quote(s.record.unit_class, safe='')}?period={s.doc.period}"
