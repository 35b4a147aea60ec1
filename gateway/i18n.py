"""The pages' two languages: a small catalogue, zh-CN first (the offices' language and the default),
English for everyone else, and which one a request gets.

The language is ``?lang=en|zh-CN`` when given (and then remembered in a ``lang`` cookie, SameSite=Lax,
path /), else that cookie, else the best of Accept-Language, else zh-CN. Templates call ``t(key, **values)``
(a Jinja global; the request in the template's context says the language) and ``lang()`` for
``<html lang>``. The text ``t`` returns is plain text, autoescaped like any other; values are formatted
into it with ``str.format``. Both languages have exactly the same keys (checked on import), so a page
never shows a key or half a translation. The response cache keys on the language too
(gateway/response_cache.py), and HTML answers say ``Vary: Cookie, Accept-Language``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, urlencode

from jinja2 import pass_context
from jinja2.runtime import Context
from litestar.connection import ASGIConnection
from litestar.datastructures import MutableScopeHeaders
from litestar.types import Message, Scope

LANGUAGES = ("zh-CN", "en")
DEFAULT = "zh-CN"
COOKIE = "lang"
COOKIE_MAX_AGE = 365 * 24 * 3600
STATE_KEY = "fedappraisal_lang"
NAMES = {"zh-CN": "中文", "en": "English"}

CATALOGUE: dict[str, dict[str, str]] = {
    "zh-CN": {
        "site.title": "绩效考评",
        "site.platform": "联邦式政府绩效考评平台",
        "skip": "跳到正文",
        "nav.label": "主导航",
        "nav.dashboard": "考评总览",
        "lang.switch": "切换语言",
        "user.signed_in": "当前用户：{name}",
        "user.sign_in": "登录",
        "node.label": "{name}（{code}，{level}级）",
        "unit": "{name}（{code}）",
        "dash.heading": "{name}绩效考评",
        "dash.rankings": "{cycle} 年度排名 · {period}",
        "dash.version": "指标体系版本：",
        "dash.version_label": "{issuer}（{code}）{cycle} 年度{cls}指标体系 · 第 {version} 版 · {short}",
        "dash.version_short": "第 {version} 版{cls} · {short}",
        "dash.class": "「{cls}」",
        "dash.interim": "中期考评：按时间进度或分期目标评分",
        "dash.not_graded": "，不评定等次",
        "dash.rank": "名次",
        "dash.unit": "被考评单位",
        "dash.score": "得分",
        "dash.grade": "等次",
        "dash.not_assessed": "未参评：未报送任何数据",
        "dash.no_results": "本版本暂无结果",
        "dash.table_caption": "{cycle} 年度排名表（{period}）",
        "dash.chart_label": "{cycle} 年度得分柱状图（{period}）；同样的数据见旁边的排名表",
        "dash.chart_title": "得分",
        "dash.drilldown": "指标下钻",
        "dash.drilldown_hint": "选择一项指标，查看其逐级数值：",
        "dash.no_framework": "暂无指标体系",
        "dash.other_versions": "其他版本：",
        "drill.heading": "{name}（{code}）",
        "drill.note": "；下级各按其钉住此版本的指标体系作答",
        "drill.level": "层级",
        "drill.unit": "单位",
        "drill.value": "数值",
        "drill.source": "来源",
        "drill.missing": "未能取得（不可达，或未持有此版本）：",
        "drill.dropped": "已剔除 {n} 行无法核验的下级应答（未被已签名的指标体系列明，或格式有误）：",
        "drill.dropped_unit": "所报单位",
        "drill.dropped_reason": "原因",
        "drill.dropped_by": "剔除节点",
        "drill.dropped_via": "应答节点",
        "drill.json": "JSON 数据",
        "source.rolled_up": "逐级汇总",
        "source.reported": "下级报送",
        "source.entered": "本级填报",
        "level.province": "省",
        "level.city": "市",
        "level.county": "县",
        "level.township": "乡镇",
        "footer.api": "接口：",
        "footer.status": "节点状态",
        "footer.frameworks": "指标体系",
        "footer.audit": "审计日志：审计/纪检与绩效办登录后查阅",
    },
    "en": {
        "site.title": "Performance appraisal",
        "site.platform": "Federated government performance appraisal",
        "skip": "Skip to main content",
        "nav.label": "Main",
        "nav.dashboard": "Overview",
        "lang.switch": "Language",
        "user.signed_in": "Signed in as {name}",
        "user.sign_in": "Sign in",
        "node.label": "{name} ({code}, {level})",
        "unit": "{name} ({code})",
        "dash.heading": "{name}: performance appraisal",
        "dash.rankings": "{cycle} rankings · {period}",
        "dash.version": "Framework version: ",
        "dash.version_label": "{issuer} ({code}) {cycle} framework{cls} · version {version} · {short}",
        "dash.version_short": "version {version}{cls} · {short}",
        "dash.class": " for {cls}",
        "dash.interim": "Interim period: scored against interim targets",
        "dash.not_graded": "; not graded",
        "dash.rank": "Rank",
        "dash.unit": "Unit",
        "dash.score": "Score",
        "dash.grade": "Grade",
        "dash.not_assessed": "Not assessed: reported nothing",
        "dash.no_results": "No results under this version yet",
        "dash.table_caption": "{cycle} rankings ({period})",
        "dash.chart_label": "Bar chart of the {cycle} scores ({period}); the rankings table beside it holds the same figures",
        "dash.chart_title": "Score",
        "dash.drilldown": "Drill-down",
        "dash.drilldown_hint": "Choose an indicator to see its figures level by level:",
        "dash.no_framework": "No framework held for this cycle",
        "dash.other_versions": "Other versions: ",
        "drill.heading": "{name} ({code})",
        "drill.note": "; each level below answers under its own framework pinning this one",
        "drill.level": "Level",
        "drill.unit": "Unit",
        "drill.value": "Value",
        "drill.source": "Source",
        "drill.missing": "Missing (unreachable, or not holding this version): ",
        "drill.dropped": "{n} rows dropped from answers from below (not named by a signed framework, or malformed):",
        "drill.dropped_unit": "Unit reported",
        "drill.dropped_reason": "Reason",
        "drill.dropped_by": "Dropped by",
        "drill.dropped_via": "Answer from",
        "drill.json": "JSON data",
        "source.rolled_up": "rolled up",
        "source.reported": "reported from below",
        "source.entered": "entered here",
        "level.province": "province",
        "level.city": "city",
        "level.county": "county",
        "level.township": "township",
        "footer.api": "API: ",
        "footer.status": "Node status",
        "footer.frameworks": "Frameworks",
        "footer.audit": "the audit log: auditors and the office, once signed in",
    },
}

if CATALOGUE["zh-CN"].keys() != CATALOGUE["en"].keys():  # pragma: no cover - a catalogue edit gone wrong
    raise RuntimeError(f"i18n: keys differ: {sorted(CATALOGUE['zh-CN'].keys() ^ CATALOGUE['en'].keys())}")

# The dashboard is the only page in every node's navigation; pages may pass their own ``nav`` list.
DEFAULT_NAV = ({"href": "/dashboard", "key": "nav.dashboard"},)


def supported(value: str | None) -> str | None:
    """The catalogue's language for a ``lang`` value or one Accept-Language range, or None."""
    if not value:
        return None
    v = value.strip().lower()
    if v == "zh" or v.startswith(("zh-cn", "zh-hans", "zh-sg")):
        return "zh-CN"
    if v == "en" or v.startswith("en-"):
        return "en"
    return None


def from_accept_language(header: str | None) -> str | None:
    """The best-weighted supported language of an Accept-Language header (RFC 9110 §12.5.4)."""
    best: tuple[float, int, str] | None = None
    for i, part in enumerate((header or "").split(",")[:32]):
        tag, _, params = part.partition(";")
        q = 1.0
        m = re.search(r"q\s*=\s*([^;,\s]*)", params)
        if m:
            try:
                q = float(m.group(1))
            except ValueError:
                continue  # a malformed weight: this range is ignored
            if not 0 <= q <= 1:
                continue
        lang = supported(tag)
        if lang is not None and q > 0 and (best is None or (q, -i) > best[:2]):
            best = (q, -i, lang)
    return best[2] if best else None


def negotiate(query: str | None, cookie: str | None, accept_language: str | None) -> str:
    return supported(query) or supported(cookie) or from_accept_language(accept_language) or DEFAULT


def asked(scope: Scope) -> str | None:
    """The language ``?lang=`` names, if it names one of ours."""
    raw = scope.get("query_string", b"").decode("latin-1")
    for key, value in parse_qsl(raw):
        if key == "lang":
            return supported(value)
    return None


def language(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """This request's language (worked out once, kept in the request's state)."""
    state = connection.scope["state"]
    lang = state.get(STATE_KEY)
    if lang is None:
        lang = negotiate(connection.query_params.get("lang"), connection.cookies.get(COOKIE),
                         connection.headers.get("accept-language"))
        state[STATE_KEY] = lang
    return str(lang)


def translate(lang: str, key: str, **values: object) -> str:
    text = CATALOGUE[lang][key]
    return text.format(**values) if values else text


def _request(context: Context) -> ASGIConnection[Any, Any, Any, Any] | None:
    request = context.get("request")
    return request if isinstance(request, ASGIConnection) else None


@pass_context
def t(context: Context, key: str, **values: object) -> str:
    request = _request(context)
    return translate(language(request) if request is not None else DEFAULT, key, **values)


@pass_context
def lang(context: Context) -> str:
    request = _request(context)
    return language(request) if request is not None else DEFAULT


@pass_context
def switch_language(context: Context) -> dict[str, str]:
    """The header's link to this same page in the other language: {href, lang, name}."""
    request = _request(context)
    current = language(request) if request is not None else DEFAULT
    other = next(code for code in LANGUAGES if code != current)
    if request is None:
        return {"href": "?" + urlencode({"lang": other}), "lang": other, "name": NAMES[other]}
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "lang"]
    return {"href": request.url.path + "?" + urlencode([*query, ("lang", other)]), "lang": other, "name": NAMES[other]}


@pass_context
def tr(context: Context, zh: str, en: str, **values: object) -> str:
    """Both languages in the template itself, side by side (the pages of issue 10): they cannot drift
    apart the way two catalogue entries can. Formatted like ``t``."""
    request = _request(context)
    text = en if (language(request) if request is not None else DEFAULT) == "en" else zh
    return text.format(**values) if values else text


def template_globals() -> Mapping[str, Callable[..., Any] | object]:
    return {"t": t, "tr": tr, "lang": lang, "switch_language": switch_language, "default_nav": DEFAULT_NAV}


async def remember_language(message: Message, scope: Scope) -> None:
    """Litestar ``before_send`` hook: ``?lang=`` sets the ``lang`` cookie; HTML answers vary by language."""
    if message["type"] != "http.response.start":
        return
    headers = MutableScopeHeaders.from_message(message=message)
    chosen = asked(scope)
    if chosen is not None:
        cookie: SimpleCookie = SimpleCookie()
        cookie[COOKIE] = chosen
        cookie[COOKIE].update({"path": "/", "samesite": "Lax", "max-age": str(COOKIE_MAX_AGE), "httponly": "1"})
        headers.add("Set-Cookie", cookie[COOKIE].OutputString())
    if headers.get("content-type", "").startswith("text/html"):
        headers.add("Vary", "Cookie, Accept-Language")
