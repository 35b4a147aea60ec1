"""The intake pages through Litestar's test client, as a browser posts them: the office generates
and edits the task book, the provider's grid, a batch with a bad cell shown again with the problem
beside it and nothing saved, a good one submitted, the as-you-type check, an evidence upload, the
reviewer's return and approval, the provider's home page showing the return, and 403 for people
outside the role or the scope (the same journeys in Chromium are in tests/browser/)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from gateway.app import create_app
from nodes.accounts import SYSTEM
from nodes.clock import FixedClock
from nodes.intake import window_of
from nodes.runtime import NodeServices as Node
from nodes.runtime import build_services, gateway_services
from tests.support.nodes import make_county
from tests.test_accounts import no_redirects, sign_in

TOWNS = ("510104017", "510104018")


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[tuple[Node, AsyncTestClient[Any]]]:
    base, _ = await make_county(tmp_path)
    node = build_services(base.context.cfg, base.context.store, FixedClock(window_of("2026-Y")[0] + 86400 * 40))
    for login, roles, kw in (("wang", ["office"], {}), ("tjj", ["provider"], {"org": "区统计局"}),
                             ("li", ["reviewer"], {}), ("cz", ["provider"], {"org": "区财政局"}),
                             ("t18", ["provider"], {"org": "区统计局", "units": [TOWNS[1]]})):
        await node.accounts.add(login, login, roles, SYSTEM, password=f"{login}-password-1", **kw)
    async with no_redirects(AsyncTestClient(app=create_app(gateway_services(node)))) as client:
        yield node, client
    await base.context.store.close()


def csrf_of(html: str) -> str:
    m = re.search(r'name="_csrf" value="([^"]+)"', html)
    assert m
    return m.group(1)


async def test_task_book_entry_review_as_pages(site: tuple[Node, AsyncTestClient[Any]]) -> None:
    node, client = site
    csrf = await sign_in(client, "wang", "wang-password-1")
    r = await client.post("/tasks/generate", data={"_csrf": csrf, "cycle": "2026"})
    assert r.status_code == 200 and "地区生产总值" in r.text
    r = await client.post("/tasks/edit", data={"_csrf": csrf, "cycle": "2026", "indicator": "A1",
                                              "provider": "区统计局", "frequency": "Y", "minimum": "0"})
    assert r.status_code == 303
    page = await client.get("/tasks?cycle=2026")
    assert "区统计局" in page.text
    await client.post("/logout", data={"_csrf": csrf})

    csrf = await sign_in(client, "tjj", "tjj-password-1")
    page = await client.get("/entry?cycle=2026&period=2026-Y")
    assert page.status_code == 200 and f'name="v:{TOWNS[0]}/A1"' in page.text and f'name="v:{TOWNS[1]}/A1"' in page.text
    # the as-you-type check names the problem of one cell
    r = await client.post("/entry/check", data={"cycle": "2026", "period": "2026-Y", "ref": f"{TOWNS[0]}/A1",
                                                f"v:{TOWNS[0]}/A1": "abc"}, headers={"x-csrf-token": csrf})
    assert r.status_code == 200 and "不是有效数字" in r.text
    # a batch with one bad cell: shown again, the problem beside that cell, what was typed kept, nothing saved
    r = await client.post("/entry", data={"_csrf": csrf, "cycle": "2026", "period": "2026-Y", "action": "submit",
                                          f"v:{TOWNS[0]}/A1": "1200", f"v:{TOWNS[1]}/A1": "-3"})
    assert r.status_code == 422 and "低于下限" in r.text and 'value="-3"' in r.text and 'value="1200"' in r.text
    async with node.context.store.read() as rd:
        assert await rd.intake.entries("2026") == []
    r = await client.post("/entry", data={"_csrf": csrf, "cycle": "2026", "period": "2026-Y", "action": "submit",
                                          f"v:{TOWNS[0]}/A1": "1200", f"v:{TOWNS[1]}/A1": "980"})
    assert r.status_code == 200 and 'data-testid="saved"' in r.text
    r = await client.post("/entry/attach", data={"_csrf": csrf, "cycle": "2026", "period": "2026-Y",
                                                 "cell": f"{TOWNS[0]}/A1"},
                          files={"file": ("统计年报.pdf", b"%PDF-1.4 x", "application/pdf")})
    assert r.status_code == 200 and "SHA-256" in r.text
    # outside the scope: a provider of one township cannot post the other's cell (403, named)
    await client.post("/logout", data={"_csrf": csrf})
    csrf = await sign_in(client, "t18", "t18-password-1")
    r = await client.post("/entry", data={"_csrf": csrf, "cycle": "2026", "period": "2026-Y", "action": "save",
                                          f"v:{TOWNS[0]}/A1": "1"})
    assert r.status_code == 403 and 'data-code="auth.scope"' in r.text and TOWNS[0] in r.text
    await client.post("/logout", data={"_csrf": csrf})
    # another department: no tasks here, and no review page (403 naming the roles that may)
    csrf = await sign_in(client, "cz", "cz-password-1")
    assert "没有您的填报任务" in (await client.get("/entry?cycle=2026&period=2026-Y")).text
    r = await client.get("/review")
    assert r.status_code == 403 and "审核人" in r.text
    await client.post("/logout", data={"_csrf": csrf})

    csrf = await sign_in(client, "li", "li-password-1")
    page = await client.get("/review?cycle=2026")
    assert page.status_code == 200 and "统计年报.pdf" in page.text and "1200" in page.text
    assert (await client.get("/entry")).status_code == 403
    r = await client.post("/review", data={"_csrf": csrf, "cycle": "2026", "action": "return",
                                           "cell": f"2026-Y|{TOWNS[1]}/A1"})
    assert r.status_code == 422 and "退回须说明理由" in r.text
    r = await client.post("/review", data={"_csrf": csrf, "cycle": "2026", "action": "return", "reason": "请核实口径",
                                           "cell": f"2026-Y|{TOWNS[1]}/A1"})
    assert r.status_code == 200 and 'data-testid="decided"' in r.text
    r = await client.post("/review", data={"_csrf": csrf, "cycle": "2026", "action": "approve",
                                           "cell": f"2026-Y|{TOWNS[0]}/A1"})
    assert r.status_code == 200
    sha = re.search(r'href="/attachments/([0-9a-f]{64})"', page.text)
    assert sha is not None
    r = await client.get(f"/attachments/{sha.group(1)}")
    assert r.status_code == 200 and r.content == b"%PDF-1.4 x" and "attachment" in r.headers["content-disposition"]
    await client.post("/logout", data={"_csrf": csrf})

    csrf = await sign_in(client, "tjj", "tjj-password-1")
    home = await client.get("/home")
    assert 'data-testid="returned"' in home.text and "请核实口径" in home.text
    async with node.context.store.read() as rd:
        digest = (await rd.frameworks.list(role="issued"))[-1].digest
        held = await rd.results.values("2026", "2026-Y", digest)
    assert held[TOWNS[0]]["A1"] == "1200" and "A1" not in held.get(TOWNS[1], {})


async def test_excel_template_and_upload_as_pages(site: tuple[Node, AsyncTestClient[Any]]) -> None:
    """Download the template, fill one cell wrong: every problem named by sheet!cell and nothing taken; then a
    good file is taken, and the audit log says which file it came from (bench/pages.py times 3,000 cells)."""
    import io

    from openpyxl import load_workbook

    node, client = site
    await node.intake.generate("2026", SYSTEM)
    await node.intake.edit_tasks("2026", "A1", [], SYSTEM, provider="区统计局", frequency="Y", confirm=False,
                                 minimum="0", maximum="")
    csrf = await sign_in(client, "tjj", "tjj-password-1")
    r = await client.get("/entry/template.xlsx?cycle=2026&period=2026-Y")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/vnd.openxmlformats")

    def filled(values: dict[str, str]) -> bytes:
        wb = load_workbook(io.BytesIO(r.content))
        ws = wb["填报"]
        for row in ws.iter_rows(min_row=4):
            code = str(row[0].value or "")
            if code in values:
                row[2].value = values[code]
        out = io.BytesIO()
        wb.save(out)
        return out.getvalue()

    bad = filled({TOWNS[0]: "1200", TOWNS[1]: "一千"})
    page = await client.post("/entry/upload", data={"_csrf": csrf, "cycle": "2026", "period": "2026-Y",
                                                    "action": "submit"},
                             files={"file": ("统计局.xlsx", bad, "application/octet-stream")})
    assert page.status_code == 422 and 'data-testid="upload-problems"' in page.text and "填报!C5" in page.text
    async with node.context.store.read() as rd:
        assert await rd.intake.entries("2026") == []
    good = filled({TOWNS[0]: "1200", TOWNS[1]: "1000"})
    page = await client.post("/entry/upload", data={"_csrf": csrf, "cycle": "2026", "period": "2026-Y",
                                                    "action": "submit"},
                             files={"file": ("统计局.xlsx", good, "application/octet-stream")})
    assert page.status_code == 200 and 'data-testid="uploaded"' in page.text
    async with node.context.store.read() as rd:
        assert {(e.unit, e.value, e.status) for e in await rd.intake.entries("2026")} == {
            (TOWNS[0], "1200", "submitted"), (TOWNS[1], "1000", "submitted")}
        audit = [e for e in await rd.audit.entries() if e.action == "intake.submit"]
    assert '"source":"excel:统计局.xlsx"' in audit[-1].detail.replace(" ", "")


async def test_framework_view_audit_log_and_opinions_as_pages(site: tuple[Node, AsyncTestClient[Any]]) -> None:
    node, client = site
    await node.accounts.add("shen", "沈审计", ["auditor"], SYSTEM, password="shen-password-1")
    await node.accounts.add("pingyi", "孙丽", ["opinion"], SYSTEM, password="pingyi-password-1")
    csrf = await sign_in(client, "wang", "wang-password-1")
    page = await client.get("/frameworks?cycle=2026")
    # the county's framework for its townships: each leaf's link to 成都市's indicator, and that version
    assert page.status_code == 200 and "地区生产总值" in page.text and 'data-testid="parent-version"' in page.text
    assert "→ A1 地区生产总值（sum）" in page.text and "5101 2026" in page.text
    await client.post("/logout", data={"_csrf": csrf})
    csrf = await sign_in(client, "pingyi", "pingyi-password-1")
    page = await client.get("/opinions?cycle=2026&period=2026-Y")
    assert page.status_code == 200 and 'name="r:B3"' in page.text
    r = await client.post("/opinions", data={"_csrf": csrf, "cycle": "2026", "period": "2026-Y", "unit": TOWNS[0],
                                             "r:B3": "88 90 120"})
    assert r.status_code == 422 and "0 到 100" in r.text
    r = await client.post("/opinions", data={"_csrf": csrf, "cycle": "2026", "period": "2026-Y", "unit": TOWNS[0],
                                             "r:B3": "88 90 92"})
    assert r.status_code == 200 and "已记录" in r.text
    assert (await client.get("/audit")).status_code == 403  # an opinion provider reads no audit log
    await client.post("/logout", data={"_csrf": csrf})
    await sign_in(client, "shen", "shen-password-1")
    page = await client.get("/audit")
    assert page.status_code == 200 and 'data-testid="audit-intact"' in page.text
    assert "enter.assessment" in page.text and "pingyi" in page.text
    assert (await client.get("/entry")).status_code == 403 and (await client.get("/users")).status_code == 403
