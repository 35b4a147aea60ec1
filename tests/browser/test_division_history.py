"""区划沿革 on the public results site, in a real browser (chromium, 1366×768, zh-CN), no login.

天全县 merged 思经乡 and 鱼泉乡 into 思经镇 from 2020-01-01. Its 2019 results were published for the two
乡, its 2020 results for 思经镇. A citizen opens 思经镇's page and reads where it came from. They follow
the link to 思经乡's page, see its 2019 result under its own name and what it became, and go back. The
gateway under test is 天全县's real node (SQLite): the change list signed with its key, frameworks
derived over each cycle's tree, townships' signed values, 2020 growth carried from 2019. It is served by
uvicorn in a thread of its own. Screenshots are under artefacts/screenshots/; nothing is fetched from
anywhere but the gateway, and the console stays free of errors (conftest.py)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import VENDOR_STAMP, context_maker
from tests.browser.harness import VIEWPORT, Guard, InThread, served

Shoot = Callable[[Any, str], Path]


class MergedTownships(InThread):
    """天全县's gateway after its 2019 and 2020 results were published around the 思经镇 merger."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.url = ""
        super().__init__()

    async def _serve(self) -> None:
        from aggregator.lineage import Merge
        from gateway.app import create_app
        from nodes.runtime import gateway_services
        from tests.test_division_wiring import BASE_TIANQUAN, TIANQUAN, _deliver, _province, _two_cycles

        assert self._stop is not None
        p = await _province(self.workdir, TIANQUAN, BASE_TIANQUAN, date(2010, 1, 1))
        try:
            tq = p.nodes["511825"]
            await tq.divisions.issue([Merge(effective=date(2020, 1, 1), issuer="511825",
                                            units=("511825201", "511825202"), code="511825102", name="思经镇")],
                                     actor="office-511825")
            await _deliver(p, "511825")
            await _two_cycles(p, self.workdir, "511825", {
                "2019": {"511825100": ("200", "30000", "10"), "511825201": ("40", "10000", "2"),
                         "511825202": ("60", "20000", "3")},
                "2020": {"511825100": ("210", "31000", "10"), "511825102": ("110", "17600", "5")}})
            async with served(create_app(gateway_services(tq))) as url:
                self.url = url
                self._ready.set()
                await self._stop.wait()
        finally:
            for store in p.stores.values():
                await store.close()


@pytest.fixture(scope="module")
def county(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MergedTownships]:
    if not VENDOR_STAMP.is_file():
        pytest.fail("gateway/static/vendor/ is empty: run ./dev setup (or python scripts/fetch_assets.py) first")
    with MergedTownships(tmp_path_factory.mktemp("division-history")) as c:
        yield c


@pytest.fixture
def contexts(browser: Any, county: MergedTownships,
             request: pytest.FixtureRequest) -> Iterator[Callable[..., tuple[Any, Guard]]]:
    with context_maker(browser, request, county.url) as make:
        yield make


def test_a_citizen_follows_a_merged_township_back_to_the_units_it_came_from(
        county: MergedTownships, contexts: Callable[..., tuple[Any, Guard]], shoot: Shoot) -> None:
    context, _ = contexts()
    page = context.new_page()
    page.goto("/public/units/511825102")
    expect(page.get_by_role("heading", level=1)).to_have_text("思经镇（511825102）")
    story = page.get_by_test_id("story")
    expect(story.get_by_role("heading", name="区划沿革")).to_be_visible()
    expect(story.get_by_role("listitem").nth(1)).to_have_text(re.compile(r"^2020-01-01 并入本单位：\s*思经乡（511825201）$"))
    expect(story.get_by_role("link")).to_have_count(2)
    assert page.evaluate("() => document.documentElement.scrollWidth") <= VIEWPORT["width"]
    shoot(page, "merged-town")

    story.get_by_role("link", name="思经乡（511825201）").click()
    expect(page).to_have_url(f"{county.url}/public/units/511825201")
    expect(page.get_by_role("heading", level=1)).to_have_text("思经乡（511825201）")
    history = page.get_by_test_id("history")
    expect(history.get_by_role("row")).to_have_count(2)  # the header and its one year, 2019
    expect(history).to_contain_text("2019 · 2019-Y")
    back = page.get_by_test_id("story")
    expect(back).to_contain_text("2020-01-01 并入")
    expect(back).to_contain_text("2020-01-01 起不再设立")
    shoot(page, "predecessor")

    back.get_by_role("link", name="思经镇（511825102）").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("思经镇（511825102）")
