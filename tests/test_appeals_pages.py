"""/appeals and /api/v1/appeals through Litestar's test client, as browsers and scripts use them: the
township files an appeal with an evidence file on the page, the office sees only eligible reviewers and
assigns one, a reviewer not assigned is refused (403), the assigned one decides on the page, the
township sees the decision on /appeals and on its home page, another township sees none of it, and
the JSON API refuses bodies outside the schema (400) and units outside the caller's scope (403)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from gateway.app import create_app
from nodes.runtime import NodeServices as Node
from nodes.runtime import gateway_services
from tests.support.closing import TOWNS, county_with_results, publicise
from tests.support.pages import assert_no_inline_script
from tests.test_accounts import no_redirects, sign_in
from tests.test_appeals import prepare


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[tuple[Node, AsyncTestClient[Any]]]:
    node, _ = await county_with_results(tmp_path)
    await prepare(node)
    await publicise(node)
    async with no_redirects(AsyncTestClient(app=create_app(gateway_services(node)))) as client:
        yield node, client
    await node.context.store.close()


async def as_(client: AsyncTestClient[Any], login: str) -> str:
    await client.post("/logout", data={"_csrf": "x"})
    client.cookies.clear()
    return await sign_in(client, login, f"{login}-password-1")


def row(html: str, appeal_id: int) -> str:
    m = re.search(rf'<tr data-appeal="{appeal_id}".*?</tr>', html, re.S)
    assert m, html[-3000:]
    return m.group(0)


async def test_file_assign_decide_as_pages(site: tuple[Node, AsyncTestClient[Any]]) -> None:
    node, client = site
    csrf = await as_(client, "t17")
    page = await client.get("/appeals")
    assert page.status_code == 200 and 'data-unit="510104017"' in page.text and 'data-unit="510104018"' not in page.text
    assert_no_inline_script(page.text)
    # a refusal is shown on the page with its code, nothing filed
    r = await client.post("/appeals", data={"_csrf": csrf, "cycle": "2026", "period": "2026-Y", "unit": TOWNS[0],
                                           "target": "value", "indicator": "A1", "reason": " "})
    assert r.status_code == 422 and 'data-code="appeals.reason_required"' in r.text
    r = await client.post("/appeals", data={"_csrf": csrf, "cycle": "2026", "period": "2026-Y", "unit": TOWNS[0],
                                           "target": "value", "indicator": "A1", "reason": "A1 应为 1200 亿元"},
                          files={"files": ("统计年鉴.pdf", b"%PDF-1.4 yearbook", "application/pdf")})
    assert r.status_code == 303, r.text
    listed = (await client.get("/api/v1/appeals", headers={"accept": "application/json"})).json()
    assert [(a["unit"], a["target"], a["indicator"], a["status"]) for a in listed] == [(TOWNS[0], "value", "A1", "filed")]
    appeal_id, sha = listed[0]["id"], listed[0]["evidence"][0]
    page = await client.get("/appeals")
    assert "统计年鉴.pdf" in row(page.text, appeal_id) and "已提交" in row(page.text, appeal_id)
    got = await client.get(f"/appeals/{appeal_id}/evidence/{sha}")
    assert got.status_code == 200 and got.content == b"%PDF-1.4 yearbook"
    # the other township sees nothing of it and cannot appeal for 510104017
    csrf = await as_(client, "t18")
    assert (await client.get("/api/v1/appeals")).json() == []
    assert (await client.get(f"/appeals/{appeal_id}/evidence/{sha}")).status_code == 404
    r = await client.post("/api/v1/appeals", headers={"x-csrf-token": csrf}, json={
        "cycle": "2026", "period": "2026-Y", "unit": TOWNS[0], "target": "score", "reason": "x"})
    assert r.status_code == 403 and r.json()["code"] == "auth.scope"
    r = await client.post("/api/v1/appeals", headers={"x-csrf-token": csrf}, json={
        "cycle": "2026", "period": "2026-Y", "unit": TOWNS[1], "target": "rank", "reason": "x"})
    assert r.status_code == 400
    # the office: only eligible reviewers are offered; assigning an ineligible one is refused by name
    csrf = await as_(client, "wang")
    mine = row((await client.get("/appeals")).text, appeal_id)
    assert re.findall(r'<option value="([a-z0-9]+)"', mine) == ["li", "zhao"]
    r = await client.post(f"/api/v1/appeals/{appeal_id}/assign", headers={"x-csrf-token": csrf},
                          json={"reviewer": "tjjrev"})
    assert r.status_code == 409 and r.json()["code"] == "appeals.reviewer_provider"
    r = await client.post(f"/appeals/{appeal_id}/assign", data={"_csrf": csrf, "reviewer": "li"})
    assert r.status_code == 303
    # a reviewer not assigned is refused; the assigned one decides on the page
    csrf = await as_(client, "zhao")
    r = await client.post(f"/api/v1/appeals/{appeal_id}/decide", headers={"x-csrf-token": csrf},
                          json={"decision": "rejected", "reason": "无依据"})
    assert r.status_code == 404 and r.json()["code"] == "appeals.not_found"  # not assigned: not even shown
    csrf = await as_(client, "li")
    mine = row((await client.get("/appeals")).text, appeal_id)
    assert f'action="/appeals/{appeal_id}/decide"' in mine
    r = await client.post(f"/api/v1/appeals/{appeal_id}/decide", headers={"x-csrf-token": csrf},
                          json={"decision": "upheld"})
    assert r.status_code == 400  # the reason is required by the schema
    r = await client.post(f"/appeals/{appeal_id}/decide", data={"_csrf": csrf, "decision": "upheld",
                                                              "reason": "年鉴数据为 1200 亿元"})
    assert r.status_code == 303, r.text
    # the township sees the decision and its reason on /appeals and in its task list
    await as_(client, "t17")
    mine = row((await client.get("/appeals")).text, appeal_id)
    assert "申诉成立" in mine and "年鉴数据为 1200 亿元" in mine
    home = await client.get("/home")
    assert 'data-testid="appeals"' in home.text and "年鉴数据为 1200 亿元" in home.text
    async with node.context.store.read() as r2:
        entry = (await r2.intake.entries_at("2026", "2026-Y", [(TOWNS[0], "A1")]))[(TOWNS[0], "A1")]
    assert entry.status == "returned"


async def test_roles_outside_appeals_are_refused(site: tuple[Node, AsyncTestClient[Any]]) -> None:
    _, client = site
    csrf = await as_(client, "tjj")  # a data provider has no appeals capability
    assert (await client.get("/appeals")).status_code == 403
    r = await client.post("/api/v1/appeals", headers={"x-csrf-token": csrf}, json={
        "cycle": "2026", "period": "2026-Y", "unit": TOWNS[0], "target": "score", "reason": "x"})
    assert r.status_code == 403
    await client.post("/logout", data={"_csrf": csrf})
    client.cookies.clear()
    assert (await client.get("/api/v1/appeals")).status_code == 401
