"""The dashboard in a real browser (chromium, 1366×768, zh-CN), against 成都市's real gateway: the
rankings table and the bar chart beside it (CJK labels in the served Noto Sans SC), a click through to
the drill-down (锦江区 answering over gRPC), English and back, and the page without JavaScript. Every
step is a screenshot under artefacts/screenshots/; nothing is fetched from anywhere but the gateway, and
the console stays free of errors (CSP violations included): see conftest.py."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.harness import VIEWPORT, Gateway, Guard

Shoot = Callable[[Any, str], Path]


def chart_labels(page: Any) -> list[str]:
    return list(page.evaluate("() => Chart.getChart(document.querySelector('canvas[data-chart]')).data.labels"))


@pytest.fixture
def page_context(contexts: Callable[..., tuple[Any, Guard]], gateway: Gateway) -> tuple[Any, Guard]:
    """The dashboard shows computed results, for results.interim only: the office's bearer token here
    (the journeys sign people in)."""
    return contexts(extra_http_headers={"Authorization": f"Bearer {gateway.token}"})


def test_dashboard_rankings_chart_drilldown_and_languages(page: Any, guard: Guard, shoot: Shoot) -> None:
    page.goto("/dashboard")
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    expect(page.get_by_role("heading", level=1)).to_contain_text("成都市（5101，市级）")
    for landmark in ("banner", "main", "contentinfo"):
        expect(page.get_by_role(landmark)).to_have_count(1)
    expect(page.get_by_role("navigation", name="主导航").get_by_role("link", name="考评总览")).to_have_attribute(
        "aria-current", "page")
    # htmx is loaded, configured to inject no <style> (the CSP would refuse it) and to eval nothing.
    assert page.evaluate("() => htmx.config.includeIndicatorStyles === false && htmx.config.allowEval === false")
    table = page.get_by_role("table", name=re.compile("2026 年度排名表"))
    expect(table.get_by_role("row")).to_have_count(3)  # the header row and two counties
    expect(table.get_by_role("row").nth(1)).to_contain_text("锦江区（510104）")
    expect(table.get_by_role("row").nth(2)).to_contain_text("青羊区（510105）")
    canvas = page.locator("canvas[data-chart='rankings']")
    expect(canvas).to_have_attribute("data-drawn", "done")
    expect(canvas).to_have_attribute("aria-label", re.compile("柱状图"))
    assert chart_labels(page) == ["锦江区", "青羊区"]  # in rank order, as in the table
    # At 1366×768 the chart stands beside the table, not below it, and nothing scrolls sideways.
    t, c = table.bounding_box(), canvas.bounding_box()
    assert t and c and t["x"] + t["width"] <= c["x"] and abs(t["y"] - c["y"]) < 120, (t, c)
    assert page.evaluate("() => document.documentElement.scrollWidth") <= VIEWPORT["width"]
    # The CJK text is in the web font the gateway serves (the subsets its unicode-ranges select).
    assert page.evaluate("() => document.fonts.check('16px \"Noto Sans SC\"', '成都市锦江区青羊区')")
    fonts = [u for u in guard.requested if re.fullmatch(r"/static/vendor/noto-sans-sc/files/[\w-]+\.woff2", u)]
    assert fonts, guard.requested
    shoot(page, "dashboard")

    # Keyboard: the first Tab reaches the skip link, shown while focused.
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="跳到正文")
    expect(skip).to_be_focused()
    expect(skip).to_be_in_viewport()
    shoot(page, "skip-link")

    page.get_by_role("navigation", name=re.compile("指标下钻")).get_by_role("link", name="地区生产总值").click()
    expect(page).to_have_url(re.compile(r"indicator=A1"))
    drill = page.locator("#drill")
    expect(drill.get_by_role("heading")).to_contain_text("地区生产总值（A1）")
    rows = drill.get_by_role("table").first.get_by_role("row")
    expect(rows.filter(has_text="锦官驿街道（510104017）")).to_contain_text("1200")  # from 锦江区, over gRPC
    expect(rows.filter(has_text="东湖街道（510104018）")).to_contain_text("乡镇")
    expect(drill).to_contain_text("未能取得")  # 青羊区 runs no node: named as missing
    shoot(page, "drilldown")

    page.get_by_role("link", name="English").click()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page).to_have_url(re.compile(r"indicator=A1.*lang=en"))  # the same page, in English
    expect(page.get_by_role("heading", level=1)).to_contain_text("成都市 (5101, city): performance appraisal")
    expect(page.get_by_role("columnheader", name="Rank")).to_be_visible()
    expect(page.locator("#drill")).to_contain_text("reported from below")
    expect(page.locator("canvas[data-chart='rankings']")).to_have_attribute("data-drawn", "done")
    cookie = next(c for c in page.context.cookies() if c["name"] == "lang")
    assert cookie["value"] == "en" and cookie["sameSite"] == "Lax" and cookie["path"] == "/"
    shoot(page, "english")

    page.goto("/dashboard")  # no ?lang=: the cookie remembers
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.get_by_role("link", name="中文")).to_be_visible()
    page.get_by_role("link", name="中文").click()
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    expect(page.get_by_role("columnheader", name="名次")).to_be_visible()
    expect(page.locator("canvas[data-chart='rankings']")).to_have_attribute("data-drawn", "done")
    shoot(page, "back-to-chinese")


def test_the_guard_fails_a_page_that_reaches_elsewhere_or_breaks_the_csp(page: Any, guard: Guard) -> None:
    """The offline rules themselves can fail: a CDN request is aborted and recorded, and an inline style
    on a gateway page is a CSP violation in the console."""
    page.goto("/dashboard")
    expect(page.locator("canvas[data-chart='rankings']")).to_have_attribute("data-drawn", "done")
    assert guard.failures() == []
    page.evaluate("() => { const s = document.createElement('style'); s.textContent = 'p {}'; document.head.append(s); }")
    page.wait_for_function("() => true")
    page.goto("about:blank")
    page.set_content('<img src="https://cdn.jsdelivr.net/npm/htmx.org/dist/htmx.min.js">')
    page.wait_for_load_state("load")
    assert any("cdn.jsdelivr.net" in u for u in guard.foreign), guard.foreign
    assert any("Content Security Policy" in e for e in guard.errors), guard.errors
    guard.clear()  # seen: this test's page broke the rules on purpose


def test_the_page_reads_without_javascript_and_follows_accept_language(contexts: Callable[..., tuple[Any, Guard]],
                                                                       gateway: Gateway, shoot: Shoot) -> None:
    """No script: the rankings are a plain table (the chart is an extra). A browser asking for English
    first (Accept-Language, no cookie) gets English."""
    for locale, js, lang, header in (("zh-CN", False, "zh-CN", "名次"), ("en-US", True, "en", "Rank")):
        context, _ = contexts(locale=locale, java_script_enabled=js,
                              extra_http_headers={"Authorization": f"Bearer {gateway.token}"})
        page = context.new_page()
        page.goto("/dashboard")
        expect(page.locator("html")).to_have_attribute("lang", lang)
        expect(page.get_by_role("columnheader", name=header)).to_be_visible()
        expect(page.get_by_role("row").filter(has_text="锦江区")).to_be_visible()
        canvas = page.locator("canvas[data-chart='rankings']")
        if js:
            expect(canvas).to_have_attribute("data-drawn", "done")
        else:
            expect(canvas).not_to_have_attribute("data-drawn", re.compile(".*"))
            expect(page.locator("figure.ranking__chart")).to_be_hidden()  # no empty box in its place
        shoot(page, f"{locale}-{'js' if js else 'no-js'}")
