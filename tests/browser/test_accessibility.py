"""Every page of the web application passes an automated accessibility audit: axe-core (fetched from the
npm registry with the pages' other assets, pinned by sha512) run in Chromium on each page as the person
who uses it, against WCAG 2.1 A and AA (labels, names, landmarks, contrast, language, tables, ARIA). A
violation of serious or critical impact fails the test, naming the rule, the page and the elements.

The page's CSP forbids the inline script axe is injected as, so this context alone bypasses it; every
other browser test runs under the real CSP."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.browser.conftest import VENDOR_STAMP
from tests.browser.harness import ROOT, Federation

AXE = ROOT / "gateway" / "static" / "vendor" / "axe-core" / "axe.min.js"
COUNTY = "510104"
PAGES = {
    "office": ["/home", "/tasks?cycle=2026", "/users", "/frameworks?cycle=2026", "/review?cycle=2026", "/dashboard",
               "/entry?cycle=2026&period=2026-Y", "/audit", "/publication?cycle=2026", "/appeals",
               "/feedback?cycle=2026", "/feedback/2026/510104017", "/rectification?cycle=2026", "/comments",
               "/use?cycle=2026"],
    "tjj": ["/home", "/entry?cycle=2026&period=2026-Y", "/account/password"],
    "pingyi": ["/opinions?cycle=2026&period=2026-Y"],
    "danwei": ["/home", "/confirm?cycle=2026", "/appeals", "/rectification?cycle=2026", "/comments"],
    "shenhe": ["/appeals"],
    "shenji": ["/publication?cycle=2026", "/use?cycle=2026"],
}


def publicise(federation: Federation, context: Any) -> None:
    """The county's results in publicity (public too), so the issue-11 pages show what they hold."""
    auth = {"Authorization": f"Bearer {federation.demo.fed.tokens[COUNTY]}"}
    frameworks = context.request.get("/api/v1/frameworks?cycle=2026", headers=auth).json()
    for klass in sorted({f["class"] for f in frameworks if f["role"] in ("issued", "internal")}):
        r = context.request.post("/api/v1/publications/publicity", headers=auth, data={
            "cycle": "2026", "period": "2026-Y", "class": klass, "opens_at": int(time.time()) - 60,
            "closes_at": int(time.time()) + 7 * 86400, "public": True})
        assert r.status == 201, r.text()


def audit(page: Any) -> list[dict[str, Any]]:
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("""async () => {
        const r = await axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}});
        return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                       nodes: v.nodes.slice(0, 5).map(n => n.target.join(' '))}));
    }""")
    return [v for v in result if v["impact"] in ("serious", "critical")]


def test_every_page_passes_an_accessibility_audit(federation: Federation,
                                                  federation_contexts: Any) -> None:
    if not AXE.is_file():
        pytest.fail(f"{AXE} is missing: run ./dev setup (or python scripts/fetch_assets.py); stamp {VENDOR_STAMP}")
    found: dict[str, list[dict[str, Any]]] = {}
    publicise(federation, federation_contexts(COUNTY)[0])
    for login, paths in PAGES.items():
        context, _ = federation_contexts(COUNTY, bypass_csp=True)
        page = context.new_page()
        page.goto("/login")
        page.get_by_label("用户名").fill(login)
        page.get_by_label("密码").fill(federation.password(login))
        page.get_by_role("button", name="登录").click()
        page.wait_for_url("**/home")
        if login == "office":  # the audit itself works: an unlabelled field added to the page is found
            page.evaluate("() => document.querySelector('main').insertAdjacentHTML('beforeend', '<input id=probe>')")
            assert "label" in {v["id"] for v in audit(page)}
        for path in [*paths, "/login"] if login == "office" else paths:
            page.goto(path)
            bad = audit(page)
            if bad:
                found[f"{login} {path}"] = bad
    assert not found, json.dumps(found, ensure_ascii=False, indent=1)
