"""The pages' language (gateway/i18n.py) through the real gateway: ?lang= beats the cookie, which beats
Accept-Language, which beats the zh-CN default; ?lang= sets the cookie (SameSite=Lax, path /); a cached
page is never served in the other language; every key a template uses is in both catalogues."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from aggregator.framework import LEVEL_ZH
from gateway import i18n
from gateway.app import create_app
from gateway.controllers.dashboard import SOURCE_ZH
from nodes.runtime import gateway_services
from tests.support.nodes import make_county

TEMPLATES = Path(__file__).resolve().parents[1] / "gateway" / "templates"


@pytest.mark.parametrize(("query", "cookie", "accept", "want"), [
    (None, None, None, "zh-CN"),
    (None, None, "en-GB,en;q=0.9", "en"),
    (None, None, "fr-FR, en;q=0.5, zh-CN;q=0.8", "zh-CN"),  # the best weight among ours
    (None, None, "de, fr;q=0.9", "zh-CN"),  # nothing we speak: the default
    (None, None, "zh-Hans;q=0, en;q=0.1", "en"),  # q=0 means "not this"
    (None, None, "zh;q=abc, en;q=0.5", "en"),  # a malformed weight: that range is ignored
    (None, None, "zh;q=2, en;q=0.5", "en"),  # as is one outside 0..1
    (None, "en", "zh-CN", "en"),
    ("zh-CN", "en", "en", "zh-CN"),
    ("fr", "en", None, "en"),  # an unknown ?lang= is ignored
])
def test_negotiation_order(query: str | None, cookie: str | None, accept: str | None, want: str) -> None:
    assert i18n.negotiate(query, cookie, accept) == want


def test_every_key_the_templates_use_is_in_both_catalogues() -> None:
    used = set()
    for path in TEMPLATES.glob("*.j2"):
        used |= set(re.findall(r"""\bt\(\s*["']([\w.]*\w)["']""", path.read_text(encoding="utf-8")))
    # Built from data: t("level." ~ key) and t("source." ~ key), for every level and source there is.
    used |= {f"level.{k}" for k in LEVEL_ZH} | {f"source.{k}" for k in SOURCE_ZH}
    assert {"dash.rankings", "drill.dropped", "skip"} <= used
    assert used <= set(i18n.CATALOGUE["zh-CN"]), used - set(i18n.CATALOGUE["zh-CN"])
    assert i18n.CATALOGUE["zh-CN"].keys() == i18n.CATALOGUE["en"].keys()


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[AsyncTestClient[Any]]:
    node, _fed = await make_county(tmp_path)
    async with AsyncTestClient(app=create_app(gateway_services(node))) as c:
        c.headers["Authorization"] = f"Bearer {node.context.cfg.admin_token}"  # the dashboard is results.interim
        yield c
    await node.context.store.close()


def lang_of(html: str) -> str:
    m = re.search(r'<html lang="([^"]+)">', html)
    assert m, html[:200]
    return m.group(1)


async def test_lang_query_sets_the_cookie_and_the_cache_keeps_languages_apart(client: AsyncTestClient[Any]) -> None:
    first = await client.get("/dashboard")
    assert first.status_code == 200 and lang_of(first.text) == "zh-CN" and "名次" in first.text
    assert "set-cookie" not in first.headers and "Accept-Language" in first.headers["vary"]
    # The same URL, cached a moment ago in Chinese, asked for in English by its header: English.
    english = await client.get("/dashboard", headers={"accept-language": "en-US,en;q=0.9"})
    assert lang_of(english.text) == "en" and "Rank" in english.text and "名次" not in english.text
    switched = await client.get("/dashboard", params={"lang": "en"})
    cookie = switched.headers["set-cookie"]
    assert cookie.startswith("lang=en;") and "SameSite=Lax" in cookie and "Path=/" in cookie
    assert lang_of(switched.text) == "en"
    assert 'href="/dashboard?lang=zh-CN"' in switched.text  # the switch back, to this same page
    # The cookie (the test client keeps it) now decides, over the browser's Accept-Language.
    again = await client.get("/dashboard", headers={"accept-language": "zh-CN"})
    assert lang_of(again.text) == "en" and "set-cookie" not in again.headers
    back = await client.get("/dashboard", params={"lang": "zh-CN", "cycle": "2026"})
    assert lang_of(back.text) == "zh-CN" and back.headers["set-cookie"].startswith("lang=zh-CN;")
    assert 'href="/dashboard?cycle=2026&amp;lang=en"' in back.text  # other parameters kept
    assert (await client.get("/api/v1/status")).status_code == 200  # JSON answers are unaffected
