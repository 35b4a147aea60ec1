"""The public results site in a real browser (chromium, 1366×768, zh-CN), no login: a citizen opens
/public, searches a unit, opens its page, sees the line chart AND the table beside it (and the bar
chart of its indicator groups), downloads the evidence and checks it offline against the province
key; with JavaScript off the tables still hold every figure. The gateway under test is 锦江区's real
node (SQLite) with both townships' signed bundles, publicised and finalised, served by uvicorn in a
thread of its own. Screenshots under artefacts/screenshots/; nothing is fetched from anywhere but the
gateway and the console stays free of errors (conftest.py)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from playwright.sync_api import expect

from aggregator.numbers import to_text
from sync import publication as pubs
from sync.trust import Identity
from tests.browser.conftest import VENDOR_STAMP, context_maker
from tests.browser.harness import VIEWPORT, Guard, InThread, served

Shoot = Callable[[Any, str], Path]


class PublishedCounty(InThread):
    """锦江区's gateway after its townships' results were publicised and finalised."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.url = ""
        self.root: Identity | None = None
        self.final: pubs.Published | None = None
        super().__init__()

    async def _serve(self) -> None:
        from gateway.app import create_app
        from nodes.runtime import gateway_services
        from tests.support.closing import county_with_results, finalise, publicise, root_of

        assert self._stop is not None
        node, fed = await county_with_results(self.workdir)
        try:
            await publicise(node, public=True)
            self.final = pubs.read((await finalise(node)).envelope)
            self.root = root_of(fed)
            async with served(create_app(gateway_services(node))) as url:
                self.url = url
                self._ready.set()
                await self._stop.wait()
        finally:
            await node.context.store.close()


@pytest.fixture(scope="module")
def county(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PublishedCounty]:
    if not VENDOR_STAMP.is_file():
        pytest.fail("gateway/static/vendor/ is empty: run ./dev setup (or python scripts/fetch_assets.py) first")
    with PublishedCounty(tmp_path_factory.mktemp("public-site")) as c:
        yield c


@pytest.fixture
def public_contexts(browser: Any, county: PublishedCounty,
                    request: pytest.FixtureRequest) -> Iterator[Callable[..., tuple[Any, Guard]]]:
    with context_maker(browser, request, county.url) as make:
        yield make


def test_a_citizen_finds_a_unit_sees_chart_and_table_and_checks_the_proof(
        county: PublishedCounty, public_contexts: Callable[..., tuple[Any, Guard]], shoot: Shoot,
        tmp_path: Path) -> None:
    assert county.final is not None and county.root is not None
    best = min(county.final.units, key=lambda f: f.rank)
    context, _ = public_contexts(accept_downloads=True)
    page = context.new_page()
    page.goto("/public")
    expect(page.get_by_role("heading", level=1)).to_contain_text("绩效考评结果公开")
    expect(page.get_by_test_id("state").first).to_have_text("终审结果")
    expect(page.get_by_role("table").first.get_by_role("row")).to_have_count(3)  # header and two townships
    assert page.evaluate("() => document.documentElement.scrollWidth") <= VIEWPORT["width"]
    shoot(page, "public-index")

    page.get_by_label("查询单位（名称或代码）").fill(best.name)
    page.get_by_role("button", name="查询").click()
    expect(page).to_have_url(re.compile(r"/public/search\?q="))
    results = page.get_by_test_id("results")
    expect(results.get_by_role("link")).to_have_count(1)
    shoot(page, "search")
    results.get_by_role("link", name=re.compile(best.unit)).click()

    expect(page).to_have_url(re.compile(rf"/public/units/{best.unit}$"))
    expect(page.get_by_role("heading", level=1)).to_have_text(f"{best.name}（{best.unit}）")
    expect(page.get_by_test_id("summary")).to_contain_text(f"第 {best.rank} 名")
    history = page.get_by_test_id("history")
    expect(history).to_be_visible()
    expect(history.get_by_role("row").nth(1)).to_contain_text(to_text(best.score))
    trend = page.locator("canvas[data-chart='trend']")
    expect(trend).to_have_attribute("data-drawn", "done")
    expect(trend).to_be_visible()
    bars = page.locator("canvas[data-chart='rankings']")
    expect(bars).to_have_attribute("data-drawn", "done")
    expect(page.get_by_test_id("groups")).to_contain_text("经济发展")
    # the line chart stands beside its table
    t, c = history.bounding_box(), trend.bounding_box()
    assert t and c and t["x"] + t["width"] <= c["x"], (t, c)
    scores = page.evaluate("() => Chart.getChart(document.querySelector(\"canvas[data-chart='trend']\"))"
                           ".data.datasets[0].data")
    assert scores == [float(best.score)]
    expect(page.get_by_test_id("verify-command")).to_contain_text("appraise public verify FILE --root-key ")
    shoot(page, "unit-page")

    with page.expect_download() as info:
        page.get_by_test_id("proof").click()
    saved = tmp_path / info.value.suggested_filename
    info.value.save_as(saved)
    assert saved.suffix == ".pb"
    checked = pubs.verify_proof(saved.read_bytes(), county.root)
    assert checked.publication.digest == county.final.digest
    # the command the page shows, run as shown (FILE: the download), as a separate process
    shown = page.get_by_test_id("verify-command").inner_text().split()
    assert shown[:4] == ["appraise", "public", "verify", "FILE"] and shown[4] == "--root-key"
    done = subprocess.run([sys.executable, "-m", "nodes.cli", "public", "verify", str(saved), *shown[4:], "--json"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    verdict = json.loads(done.stdout)
    assert verdict["ok"] and verdict["digest"] == county.final.digest and verdict["units"] == 2


def test_without_javascript_the_tables_hold_the_figures(
        county: PublishedCounty, public_contexts: Callable[..., tuple[Any, Guard]], shoot: Shoot) -> None:
    assert county.final is not None
    f = max(county.final.units, key=lambda f: f.rank)
    context, _ = public_contexts(java_script_enabled=False)
    page = context.new_page()
    page.goto(f"/public/units/{f.unit}")
    expect(page.get_by_test_id("history")).to_be_visible()
    expect(page.get_by_test_id("history")).to_contain_text(to_text(f.score))
    expect(page.get_by_test_id("groups")).to_be_visible()
    expect(page.locator("figure.ranking__chart").first).to_be_hidden()  # no chart without script, no gap either
    shoot(page, "unit-page-no-js")
    page.goto("/public")
    expect(page.get_by_role("table").first).to_contain_text(f.name)
    shoot(page, "public-index-no-js")


def test_the_public_pages_pass_the_accessibility_audit(
        county: PublishedCounty, public_contexts: Callable[..., tuple[Any, Guard]]) -> None:
    """axe-core, WCAG 2.1 A and AA, as tests/browser/test_accessibility.py runs it (this context alone
    bypasses the CSP to inject it)."""
    from tests.browser.test_accessibility import AXE, audit

    assert county.final is not None and AXE.is_file()
    unit = county.final.units[0]
    context, _ = public_contexts(bypass_csp=True)
    page = context.new_page()
    found = {}
    for path in ("/public", f"/public/search?q={unit.unit[:6]}", f"/public/units/{unit.unit}",
                 f"/public/2026/{quote(county.final.framework.unit_class)}?period=2026-Y", "/public?lang=en"):
        assert page.goto(path).status == 200, path
        if "units" in path:
            expect(page.locator("canvas[data-chart='trend']")).to_have_attribute("data-drawn", "done")
        bad = audit(page)
        if bad:
            found[path] = bad
    assert not found, found
