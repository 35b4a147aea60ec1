"""The public results site (结果可查询) through Litestar's test client, no login: nothing before
publication; publicity the office keeps internal is not shown, publicity made public is (公示中, with
its window); final results are; the proof downloaded verifies offline against the node's root; the
CSV, SDMX-CSV and JSON downloads parse and equal the signed figures; search; the unit page's tables;
caching by digest (ETag, 304); a superseded version's digest answers 404 naming the current one."""

from __future__ import annotations

import csv
import io
import json
import re
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import quote

import httpx
import pytest

from aggregator.numbers import to_text
from gateway.app import create_app
from nodes.exchange.sdmx import read_sdmx_csv
from nodes.launcher import Federation
from nodes.runtime import NodeServices as Node
from nodes.runtime import gateway_services
from nodes.store import Store
from sync import publication as pubs
from sync.keys import public_hex
from sync.results_sender import send_bundle
from tests.support.closing import (
    OFFICE,
    TOWNS,
    county_with_results,
    finalise,
    me_of,
    publicise,
    root_of,
    unit_class,
)
from tests.support.pages import assert_no_inline_script
from tests.support.receivers import Memory

HTML = {"accept": "text/html"}
PROBLEM = {"accept": "application/problem+json"}  # a script, not a browser: the refusal as problem+json


@pytest.fixture
async def site(tmp_path: Path, store: Store) -> AsyncIterator[tuple[Node, Federation, httpx.AsyncClient]]:
    """锦江区 with both townships' signed bundles, on SQLite and on PostgreSQL (tests/conftest.py)."""
    node, fed = await county_with_results(tmp_path, store=store)
    # httpx on the app in this event loop (not the test client's portal thread): asyncpg's connections
    # belong to the loop that opened them
    transport = httpx.ASGITransport(app=create_app(gateway_services(node)))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver.local") as client:
        yield node, fed, client


def _class_url(klass: str) -> str:
    return f"/public/2026/{quote(klass, safe='')}?period=2026-Y"


async def test_nothing_before_publication_and_internal_publicity_not_shown(
        site: tuple[Node, Federation, httpx.AsyncClient]) -> None:
    node, _, client = site
    klass = await unit_class(node)
    r = await client.get("/public", headers=HTML)
    assert r.status_code == 200 and 'data-testid="nothing"' in r.text and "510104017" not in r.text
    assert (await client.get("/api/v1/public/publications")).json() == []
    first = await publicise(node)  # public=False: for the evaluated units only
    r = await client.get("/public", headers=HTML)
    assert 'data-testid="nothing"' in r.text and "510104017" not in r.text and first.digest[:12] not in r.text
    assert (await client.get("/api/v1/public/publications")).json() == []
    assert (await client.get(_class_url(klass))).status_code == 404
    for path in (f"/public/proofs/{first.digest}.pb", f"/public/data/{first.digest}.csv",
                 f"/public/data/{first.digest}.json", f"/api/v1/public/publications/{first.digest}"):
        r = await client.get(path, headers=PROBLEM)
        assert r.status_code == 404 and r.json()["code"] == "publication.not_found", path
    assert (await client.get(f"/public/units/{TOWNS[0]}")).status_code == 404
    r = await client.get(f"/public/search?q={TOWNS[0]}", headers=HTML)
    assert 'data-testid="no-results"' in r.text


async def test_public_publicity_is_shown_marked_then_final(site: tuple[Node, Federation, httpx.AsyncClient]) -> None:
    node, fed, client = site
    klass = await unit_class(node)
    first = await publicise(node, public=True)
    r = await client.get("/public", headers=HTML)
    assert r.status_code == 200 and "pub-state--publicity" in r.text and "公示期" in r.text
    assert first.digest[:12] in r.text
    listed = (await client.get("/api/v1/public/publications")).json()
    assert [(p["digest"], p["state"], p["version"]) for p in listed] == [(first.digest, "publicity", 1)]
    page = await client.get(_class_url(klass), headers=HTML)
    assert page.status_code == 200 and "公示中" in page.text and first.digest in page.text

    final = await finalise(node)
    r = await client.get("/public", headers=HTML)
    assert "终审结果" in r.text and "pub-state--publicity" not in r.text and final.digest[:12] in r.text
    assert first.digest[:12] not in r.text
    page = await client.get(_class_url(klass), headers=HTML)
    assert page.status_code == 200 and final.digest in page.text and "第 2 版" in page.text
    doc = pubs.read(final.envelope)
    # the ranking table: every unit, in rank order, each linking to its page, score and grade as signed
    rows = re.findall(r'<tr><td>(\d+)</td><td><a href="/public/units/(\d+)">[^<]*</a></td><td class="num">([^<]+)</td>'
                      r"<td>([^<]*)</td></tr>", page.text)
    assert rows == [(str(f.rank), f.unit, to_text(f.score), f.grade) for f in sorted(doc.units, key=lambda f: f.rank)]
    assert len(rows) == 2
    # how to verify, with the province key
    key = public_hex(node.context.me.root.public_key)
    assert f"appraise public verify FILE --root-key {key}" in page.text
    assert key == public_hex(root_of(fed).public_key)
    r = await client.get("/public?lang=en", headers=HTML)
    assert r.status_code == 200 and "published appraisal results" in r.text and ">Final<" in r.text


async def test_downloads_verify_and_equal_the_signed_figures(site: tuple[Node, Federation, httpx.AsyncClient]) -> None:
    node, fed, client = site
    await publicise(node)
    final = await finalise(node)
    doc = pubs.read(final.envelope)

    r = await client.get(f"/public/proofs/{final.digest}.pb")
    assert r.status_code == 200 and r.headers["content-type"] == "application/octet-stream"
    assert "attachment" in r.headers["content-disposition"] and ".pb" in r.headers["content-disposition"]
    assert r.headers["etag"] == f'"{final.digest}"' and r.headers["cache-control"].startswith("public, max-age=")
    checked = pubs.verify_proof(r.content, root_of(fed))
    assert checked.publication.digest == final.digest and checked.units == 2
    again = await client.get(f"/public/proofs/{final.digest}.pb", headers={"if-none-match": f'"{final.digest}"'})
    assert again.status_code == 304 and again.content == b""

    # CSV: UTF-8 with a BOM, tidy, every value and the score, rank and grade of every unit
    r = await client.get(f"/public/data/{final.digest}.csv")
    assert r.status_code == 200 and r.content.startswith("\ufeff".encode())
    table = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    values = {(row["unit"], row["indicator"]): row["value"] for row in table if row["measure"] == "value"}
    assert values == {(f.unit, v.indicator): to_text(v.value) for f in doc.units for v in f.values}
    assert {row["digest"] for row in table} == {final.digest}
    for f in doc.units:
        mine = {row["measure"]: row["value"] for row in table if row["unit"] == f.unit and row["measure"] != "value"}
        assert mine == {"score": to_text(f.score), "rank": str(f.rank), "grade": f.grade}
    assert {row["indicator_name"] for row in table if row["indicator"] == "A1"} == {"地区生产总值"}

    # SDMX-CSV: read back by our own reader
    r = await client.get(f"/public/data/{final.digest}.sdmx.csv")
    assert r.status_code == 200 and r.text.startswith("STRUCTURE,STRUCTURE_ID,ACTION,REF_AREA")
    cells = read_sdmx_csv(r.content)
    got = {(c.unit, c.indicator): (c.value, c.comment) for c in cells}
    for f in doc.units:
        for v in f.values:
            assert got[(f.unit, v.indicator)][0] == to_text(v.value)
        assert got[(f.unit, "SCORE")] == (to_text(f.score), f.grade)
        assert got[(f.unit, "RANK")][0] == str(f.rank)
    assert {c.period for c in cells} == {"2026-Y"}

    # JSON: the download and the API answer the same figures
    r = await client.get(f"/public/data/{final.digest}.json")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    body = r.json()
    api = (await client.get(f"/api/v1/public/publications/{final.digest}")).json()
    assert body == api
    assert (body["digest"], body["state"], body["version"], body["previous"]) == (final.digest, "final", 2,
                                                                                   doc.previous)
    assert {u["unit"]: (u["score"], u["rank"], u["grade"]) for u in body["units"]} == \
        {f.unit: (to_text(f.score), f.rank, f.grade) for f in doc.units}
    assert {(u["unit"], v["indicator"]): v["value"] for u in body["units"] for v in u["values"]} == \
        {(f.unit, v.indicator): to_text(v.value) for f in doc.units for v in f.values}
    assert all(v["bundle_id"] for u in body["units"] for v in u["values"])
    # the group points add up to the published score's base
    for u in body["units"]:
        f = doc.unit(u["unit"])
        assert f is not None
        total = sum(float(g["points"]) for g in u["groups"])
        assert abs(total - float(f.explain()["base"])) < 0.01

    # a malformed name is refused as such, never a 500
    assert (await client.get("/public/data/xyz.csv")).status_code == 400
    assert (await client.get(f"/public/data/{final.digest}.exe")).status_code == 400
    assert (await client.get(f"/public/proofs/{'0' * 64}.pb", headers=PROBLEM)).json()["code"] == "publication.not_found"


async def report_next(node: Node, fed: Federation, town: str, values: dict[str, Decimal], period: str) -> None:
    """``town``'s next signed bundle (its chain continues from the one the county holds)."""
    async with node.context.store.read() as r:
        last = await r.bundles.last(town)
        fw_digest = (await r.frameworks.list(role="issued"))[-1].digest
    assert last is not None
    mem = Memory()
    mem.bundles.append(SimpleNamespace(id=last.id, seq=last.seq, message=last.message))
    await send_bundle(mem, me_of(fed, town), cycle="2026", period=period, framework_digest=fw_digest, values=values,
                      child_scores=(), now=int(time.time()))
    accepted, reason = await node.results.submit(mem.queued[-1], town)
    assert accepted, reason


async def test_search_and_unit_page(site: tuple[Node, Federation, httpx.AsyncClient]) -> None:
    node, fed, client = site
    await publicise(node)
    final = await finalise(node)
    doc = pubs.read(final.envelope)
    f = doc.unit(TOWNS[1])
    assert f is not None
    r = await client.get(f"/public/search?q={TOWNS[1][:7]}", headers=HTML)
    assert r.status_code == 200 and f'href="/public/units/{TOWNS[0]}"' in r.text and f'href="/public/units/{TOWNS[1]}"' in r.text
    r = await client.get("/public/search?q=" + quote(f.name), headers=HTML)
    assert f'href="/public/units/{TOWNS[1]}"' in r.text and f'href="/public/units/{TOWNS[0]}"' not in r.text
    assert (await client.get("/public/search?q=" + "x" * 65)).status_code == 400

    page = await client.get(f"/public/units/{TOWNS[1]}", headers=HTML)
    assert page.status_code == 200
    assert_no_inline_script(page.text)
    assert 'data-testid="history"' in page.text and 'data-testid="groups"' in page.text
    assert f"{f.rank} / 2" in page.text and to_text(f.score) in page.text
    assert 'data-chart="trend"' in page.text and "chart.umd.min.js" in page.text
    assert "经济发展" in page.text and f"/public/proofs/{final.digest}.pb" in page.text
    assert "地区生产总值" in page.text
    assert (await client.get("/public/units/999999999", headers=HTML)).status_code == 404

    # a second publication (the first half, under publicity made public): the unit's page holds both
    for n, town in enumerate(TOWNS):
        await report_next(node, fed, town, {"A1": Decimal(300 + 100 * n), "B3": Decimal(70)}, "2026-H1")
    half = await publicise(node, period="2026-H1", public=True)
    page = await client.get(f"/public/units/{TOWNS[1]}", headers=HTML)
    history = page.text.split('data-testid="history"')[1].split("</table>")[0]
    assert history.count("<tr><td>") == 2 and "2026 · 2026-H1" in history and "2026 · 2026-Y" in history
    assert f"/public/proofs/{half.digest}.pb" in history and f"/public/proofs/{final.digest}.pb" in history
    trend = json.loads(re.search(r'<script type="application/json" id="trend-data">([^<]*)</script>', page.text)[1])
    assert trend["labels"] == ["2026 2026-H1", "2026 2026-Y"] and trend["of"] == 2
    assert trend["scores"][1] == to_text(f.score)

    # public comments (公众评议): only an answered one is shown, question and answer, on the unit's page
    assert f'href="/public/comment/{TOWNS[1]}"' in page.text and 'data-testid="comment"' not in page.text
    rect = node.rectification
    c = await rect.submit_comment(unit=TOWNS[1], body="窗口办事排队太久", contact="13800000000", address="10.0.0.9",
                                  token=rect.form_token(TOWNS[1]))
    page = await client.get(f"/public/units/{TOWNS[1]}", headers=HTML)
    assert "窗口办事排队太久" not in page.text
    await rect.answer(OFFICE, c.id, "已增设两个窗口")
    page = await client.get(f"/public/units/{TOWNS[1]}", headers=HTML)
    assert page.text.count('data-testid="comment"') == 1 and "窗口办事排队太久" in page.text
    assert "已增设两个窗口" in page.text and "13800000000" not in page.text


async def test_superseded_final_answers_404_naming_the_current(
        site: tuple[Node, Federation, httpx.AsyncClient]) -> None:
    node, _, client = site
    klass = await unit_class(node)
    await publicise(node)
    first = await finalise(node)
    async with node.context.store.tx() as tx:
        revised = await node.publication.revise(tx, OFFICE, cycle="2026", period="2026-Y", unit_class=klass,
                                                reason="更正 (correction)")
    listed = (await client.get("/api/v1/public/publications")).json()
    assert [p["digest"] for p in listed] == [revised.digest]
    for path in (f"/public/data/{first.digest}.json", f"/public/proofs/{first.digest}.pb",
                 f"/api/v1/public/publications/{first.digest}"):
        r = await client.get(path, headers=PROBLEM)
        assert r.status_code == 404, path
        problem = r.json()
        assert problem["code"] == "public.superseded" and "/public/2026/" in problem["detail"]
    r = await client.get(f"/public/data/{first.digest}.json", headers=HTML)
    assert r.status_code == 404 and "public.superseded" in r.text and "/public/2026/" in r.text
    page = await client.get(_class_url(klass), headers=HTML)
    assert revised.digest in page.text and "更正" in page.text


async def test_openapi_documents_the_public_api(site: tuple[Node, Federation, httpx.AsyncClient]) -> None:
    _, _, client = site
    doc = (await client.get("/schema/openapi.json")).json()
    op = doc["paths"]["/api/v1/public/publications/{digest}"]["get"]
    assert op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("PublicPublication")
    assert "PublicUnit" in doc["components"]["schemas"]
    assert "/public" not in doc["paths"]
    assert json.dumps(doc)  # renders
