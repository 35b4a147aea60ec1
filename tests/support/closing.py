"""A county that has results to publish (issue 11 tests): 锦江区 on the demo keys, holding 成都市's
framework, with both townships' signed bundles received and approved on receipt."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from nodes.accounts import Principal
from nodes.config import load_config
from nodes.launcher import Federation
from nodes.repositories.publications import PublicationRecord
from nodes.runtime import NodeServices as Node
from sync.identity import Me
from sync.results_sender import send_bundle
from sync.trust import Identity
from tests.support.nodes import make_county
from tests.support.receivers import Memory

TOWNS = ("510104017", "510104018")
OFFICE = Principal(login="wang", name="王", roles=frozenset({"office"}), via="password")
DAY = 86400


def me_of(fed: Federation, code: str) -> Me:
    cfg = load_config(fed.node_dir(code) / "node.yaml")
    return Me(code=cfg.code, name=cfg.name, level=cfg.level, path=cfg.node_path, key=cfg.key, chain=cfg.chain,
              root=cfg.root, parent=cfg.parent.code if cfg.parent else None, children={})


def root_of(fed: Federation) -> Identity:
    return load_config(fed.node_dir("510104") / "node.yaml").root


async def report(node: Node, fed: Federation, town: str, values: dict[str, Decimal], period: str = "2026-Y") -> None:
    """``town`` signs a bundle of ``values`` under the county's framework and hands it over."""
    async with node.context.store.read() as r:
        fw_digest = (await r.frameworks.list(role="issued"))[-1].digest
    mem = Memory()
    await send_bundle(mem, me_of(fed, town), cycle="2026", period=period, framework_digest=fw_digest, values=values,
                      child_scores=(), now=int(time.time()))
    accepted, reason = await node.results.submit(mem.queued[-1], town)
    assert accepted, reason


async def county_with_results(tmp_path: Path, **config: object) -> tuple[Node, Federation]:
    """Both townships reported: 510104017 A1=500, 510104018 A1=900 (target 1000), B3=80 each."""
    node, fed = await make_county(tmp_path, **config)
    for n, town in enumerate(TOWNS):
        await report(node, fed, town, {"A1": Decimal(500 + 400 * n), "B3": Decimal(80)})
    return node, fed


async def unit_class(node: Node) -> str:
    async with node.context.store.read() as r:
        return (await node.publication.frameworks(r, "2026"))[0].unit_class


async def publicise(node: Node, **kw: Any) -> PublicationRecord:
    """Open a week's publicity window for the townships' class (``kw`` overrides)."""
    now = node.context.clock()
    args: dict[str, Any] = {"cycle": "2026", "period": "2026-Y", "unit_class": await unit_class(node),
                            "opens_at": now - 60, "closes_at": now + 7 * DAY, "public": False} | kw
    async with node.context.store.tx() as tx:
        return await node.publication.publicise(tx, OFFICE, **args)


async def finalise(node: Node, **kw: Any) -> PublicationRecord:
    """Move the node's clock past the window and finalise."""
    later = node.context.clock() + 8 * DAY
    node.context.clock = lambda: later  # type: ignore[method-assign]
    args: dict[str, Any] = {"cycle": "2026", "period": "2026-Y", "unit_class": await unit_class(node)} | kw
    async with node.context.store.tx() as tx:
        return await node.publication.finalise(tx, OFFICE, **args)
