"""Issue 9 item 11 through a real node: a township's first-quarter value, held in the county's store (SQLite
and PostgreSQL), is scored by the node's scoring service against a quarter of its annual target, stored and
served labelled interim, and not graded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from nodes.runtime import gateway_services
from tests.support.nodes import make_county
from tests.support.pg import PgDatabases


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_a_first_quarter_is_scored_against_a_quarter_of_the_target_and_not_graded(
        backend: str, tmp_path: Path, pg_databases: PgDatabases) -> None:
    # The province's framework says nothing about interim periods (as every framework signed before item 11):
    # A1 地区生产总值 is a flow (summed), so its quarter target is a quarter of the year's.
    url = await pg_databases.create() if backend == "postgresql" else None
    node, _fed = await make_county(tmp_path, store_url=url)
    try:
        async with node.context.store.tx() as tx:
            digest = (await tx.frameworks.list(role="issued"))[-1].digest
            for period, values in (("2026-Q1", {"510104017": "125", "510104018": "100"}),
                                   ("2026-Y", {"510104017": "125", "510104018": "100"})):
                for town, value in values.items():
                    await tx.results.put(node=town, cycle="2026", period=period, framework_digest=digest,
                                         values={"A1": value}, source="reported", bundle_id="b", now=1)
                await node.scoring.recompute(tx, "2026", period, digest, cause="test")
        async with node.context.store.read() as r:
            stored = {(s.period, s.unit): (s.score, s.rank, json.loads(s.explanation)) for s in await r.scores.list("2026")}
        # Each township's annual A1 target is 500 (成都 2000 → 锦江区 1000 → two townships); weight 60; B3 (ratings,
        # weight 40) has none, and counts 0.
        score, rank, q1 = stored[("2026-Q1", "510104017")]
        assert (score, rank) == ("60", 1)  # 125 of 125: full marks; against the year's 500 it was 15 (差)
        a1 = next(p for p in q1["parts"] if p["indicator"] == "A1")
        assert a1["interim"] == {"rule": "proportional", "share": "1/4", "annual_target": "500", "target": "125"}
        assert q1["interim"] is True and q1["graded"] is False and q1["grade"] == ""
        assert stored[("2026-Q1", "510104018")][:2] == ("48", 2)
        year_score, _, year = stored[("2026-Y", "510104017")]
        assert year_score == "15" and year["interim"] is False and year["grade"] == "差"

        # In this test's own event loop (Litestar's test client runs the app in a thread of its own, and an asyncpg
        # connection belongs to the loop that opened it).
        transport = httpx.ASGITransport(app=create_app(gateway_services(node)))
        async with httpx.AsyncClient(transport=transport, base_url="http://county.test",
                                     headers={"Authorization": f"Bearer {node.context.cfg.admin_token}"}) as client:
            rows: list[dict[str, Any]] = (await client.get("/api/v1/rankings",
                                                           params={"cycle": "2026", "period": "2026-Q1"})).json()
            assert [(r["unit"], r["score"], r["rank"], r["grade"], r["interim"], r["graded"]) for r in rows] == [
                ("510104017", "60", 1, "", True, False), ("510104018", "48", 2, "", True, False)]
            assert "interim period: not graded" in rows[0]["explanation"]["grade_reason"]
            year_rows = (await client.get("/api/v1/rankings", params={"cycle": "2026", "period": "2026-Y"})).json()
            assert all(r["interim"] is False and r["graded"] is True and r["grade"] for r in year_rows)
            page = (await client.get("/dashboard", params={"cycle": "2026", "period": "2026-Q1"})).text
            assert "中期考评" in page and "不评定等次" in page
    finally:
        await node.context.store.close()
