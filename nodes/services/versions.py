"""Which framework version a read shows: one at a time, the one in force unless another is asked
for, and labelled (docs/design.md §3.6).

A node's own frameworks for a cycle are those it issued to its children; a township, which has no
children, has the ones it received. Per class, the latest version is in force. Every figure a read
shows belongs to exactly one version: the children's values, their scores, ranks and warnings
answer the node's own framework, and the node's own values answer the framework that one pins
(its parent's; at the province, and at a township, the framework itself). So a unit is never shown
twice, and an indicator's name and its figure always come from the same version."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aggregator.errors import Conflict, NotFound
from aggregator.framework import Framework, FrameworkRef
from nodes.services.context import NodeContext
from nodes.store import Tx
from sync.codec import framework_from_envelope
from sync.ports import FrameworkRecord

CACHED = 256  # decoded frameworks per node (Me.decoded, shared with the results receiver)


@dataclass(frozen=True)
class Version:
    """One of this node's own frameworks, decoded."""

    record: FrameworkRecord
    framework: Framework

    @property
    def digest(self) -> str:
        return self.record.digest

    @property
    def ref(self) -> FrameworkRef:
        r = self.record
        return FrameworkRef(r.issuer, r.cycle, r.unit_class, r.version, r.digest)

    @property
    def own(self) -> FrameworkRef:
        """The framework this node's own values answer: the parent's it pins, else itself."""
        if self.record.role == "issued" and self.framework.parent is not None:
            return self.framework.parent
        return self.ref

    @property
    def units(self) -> frozenset[str]:
        return frozenset(u.code for u in self.framework.units)


def label(ref: FrameworkRef) -> dict[str, Any]:
    """A version as the gateway labels a figure with it (gateway/schemas.py FrameworkLabel)."""
    return {"issuer": ref.issuer, "cycle": ref.cycle, "class": ref.unit_class, "version": ref.version,
            "digest": ref.digest}


def decoded(ctx: NodeContext, row: FrameworkRecord) -> Version:
    cache = ctx.me.decoded  # immutable under its digest: decoded once per node
    fw = cache.get(row.digest)
    if fw is None:
        if len(cache) >= CACHED:
            cache.clear()
        fw = cache[row.digest] = framework_from_envelope(row.envelope)
    return Version(row, fw)


def in_force(rows: Sequence[FrameworkRecord]) -> list[FrameworkRecord]:
    """The latest version per (issuer, class), in class order."""
    latest: dict[tuple[str, str], FrameworkRecord] = {}
    for row in rows:
        key = (row.issuer, row.unit_class)
        if key not in latest or row.version > latest[key].version:
            latest[key] = row
    return [latest[k] for k in sorted(latest, key=lambda k: (k[1], k[0]))]


def choose(rows: Sequence[FrameworkRecord], cycle: str, framework: str | None = None,
           version: int | None = None) -> list[FrameworkRecord]:
    """``framework`` (a digest or a prefix of one), else ``version``, else the ones in force."""
    if framework:
        found = [r for r in rows if r.digest.startswith(framework.lower())]
        if len(found) > 1:
            raise Conflict(f"摘要前缀 {framework[:64]} 对应多个指标体系，请写得更长 (digest prefix is ambiguous)",
                           code="framework.ambiguous_prefix")
    elif version is not None:
        found = [r for r in rows if r.version == version]
    else:
        return in_force(rows)
    if not found:
        asked = f"摘要 {framework[:64]}" if framework else f"第 {version} 版"
        raise NotFound(f"本节点没有 {cycle} 年度{asked}的指标体系 (no such framework version held here)",
                       code="framework.not_held")
    return in_force(found)


async def versions(ctx: NodeContext, r: Tx, cycle: str, framework: str | None = None,
                   version: int | None = None) -> list[Version]:
    """This node's own frameworks of ``cycle`` that a read shows (module docstring)."""
    rows = await r.frameworks.list(role="issued" if ctx.me.children else "received", cycle=cycle)
    # and the frameworks of its departments (分类考评: each class ranked by its own framework)
    rows = [*rows, *await r.frameworks.list(role="internal", cycle=cycle)]
    return [decoded(ctx, row) for row in choose(rows, cycle, framework, version)]


def one(found: Sequence[Version], cycle: str) -> Version:
    """The one version a drill-down descends under."""
    if not found:
        raise NotFound(f"本节点尚无 {cycle} 年度的指标体系 (no framework held for this cycle)",
                       code="framework.none_held")
    if len(found) > 1:
        digests = ", ".join(f"{v.record.unit_class}: {v.digest[:12]}" for v in found)
        raise Conflict(f"{cycle} 年度有多个类别的指标体系在用（{digests}），请用 framework 指明一个 "
                       "(several classes in force: name one framework)", code="framework.several_in_force")
    return found[0]


async def received(ctx: NodeContext, r: Tx, cycle: str, digest: str) -> Version | None:
    """The parent's framework a query names (``digest``; "" for the latest received of ``cycle``)."""
    if digest:
        row = await r.frameworks.get(digest)
        ok = row is not None and row.role == "received" and row.cycle == cycle
        return decoded(ctx, row) if ok and row is not None else None
    rows = await r.frameworks.list(role="received", cycle=cycle)
    return decoded(ctx, max(rows, key=lambda row: (row.version, row.received_at))) if rows else None


async def pinning(ctx: NodeContext, r: Tx, cycle: str, parent_digest: str) -> Version | None:
    """This node's latest own framework that decomposes the parent's framework ``parent_digest``."""
    found = [v for v in (decoded(ctx, row) for row in await r.frameworks.list(role="issued", cycle=cycle))
             if v.framework.parent is not None and v.framework.parent.digest == parent_digest]
    return max(found, key=lambda v: v.record.version) if found else None
