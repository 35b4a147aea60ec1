"""What every page shares: the layout's context (the node, the person signed in, the CSRF token, the
navigation their roles open) and form bodies read into msgspec schemas.

Pages are server-rendered (Jinja2, autoescaped); forms post back to the page that showed them, with
the session's CSRF token in a hidden field (gateway/guards.py checks it). A refusal from a service is
shown on the same page, beside what the person typed, with the status it would have over the API.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
from litestar import Request
from litestar.response import Redirect, Template

from aggregator.errors import BadInput
from aggregator.framework import LEVEL_ZH
from gateway.guards import CSRF_FIELD, PRINCIPAL_KEY, current
from gateway.i18n import language
from nodes.accounts import ROLES, Principal
from nodes.services.context import NodeContext

S = TypeVar("S", bound=msgspec.Struct)

# (capability, path, zh, en): the navigation, in the order of the year's work
NAV: tuple[tuple[str | None, str, str, str], ...] = (
    (None, "/home", "我的工作台", "My work"),
    ("tasks.view", "/tasks", "任务书", "Task book"),
    ("values.enter", "/entry", "数据填报", "Data entry"),
    ("values.confirm", "/confirm", "数据确认", "Confirm"),
    ("values.review", "/review", "审核", "Review"),
    ("opinions.enter", "/opinions", "评估意见", "Opinions"),
    ("tasks.view", "/frameworks", "指标体系", "Frameworks"),
    ("results.interim", "/dashboard", "考评总览", "Overview"),
    ("publication.view", "/publication", "结果公示", "Publication"),
    ("appeals.view", "/appeals", "申诉复核", "Appeals"),
    ("feedback.view", "/feedback", "绩效报告", "Feedback reports"),
    ("rectification.view", "/rectification", "整改", "Rectification"),
    ("comments.answer", "/comments", "公众评议", "Public comments"),
    ("use.view", "/use", "结果运用", "Results use"),
    (None, "/public", "结果查询", "Public results"),
    ("users.manage", "/users", "用户管理", "Users"),
    ("audit.read", "/audit", "审计日志", "Audit log"),
)


def nav_for(who: Principal | None, lang: str = "zh-CN") -> list[dict[str, str]]:
    pick = 3 if lang == "en" else 2
    if who is None:
        return [{"href": "/public", "label": "Public results" if lang == "en" else "结果查询"},
                {"href": "/login", "label": "Sign in" if lang == "en" else "登录"}]
    return [{"href": n[1], "label": str(n[pick])} for n in NAV if n[0] is None or who.can(n[0])]


def who_for_page(who: Principal | None) -> dict[str, Any] | None:
    if who is None:
        return None
    return {"login": who.login, "name": who.name, "label": who.label, "org": who.org,
            "roles": [ROLES[r] for r in sorted(who.roles) if r in ROLES], "system": who.system}


async def page(request: Request[Any, Any, Any], template: str, node: NodeContext, status: int = 200,
               **context: Any) -> Template:
    await current(request)
    return page_now(request, template, node, status, **context)


def page_now(request: Request[Any, Any, Any], template: str, node: NodeContext, status: int = 200,
             **context: Any) -> Template:
    """The same, for a request whose principal is resolved already (or never will be: the error pages)."""
    who: Principal | None = request.state.get(PRINCIPAL_KEY)
    me = node.me
    return Template(template_name=template, status_code=status, context={
        "me": {"name": me.name, "code": me.code, "level": LEVEL_ZH.get(me.level, me.level), "level_key": me.level},
        "user": who_for_page(who), "csrf": who.csrf if who else "", "csrf_field": CSRF_FIELD,
        "nav": nav_for(who, language(request)), "path": request.url.path, **context})


ANSWERS = ["text/html", "application/problem+json", "application/json"]


def is_page(request: Request[Any, Any, Any]) -> bool:
    """A person's browser asked for a page (not the JSON API, the schema, metrics or a static file).
    A client that asks a page's URL for JSON rather than HTML (``Accept: application/problem+json``: a
    script with a session) gets the refusal as problem+json, as the API answers it."""
    if request.url.path.startswith(("/api/", "/schema", "/metrics", "/health", "/static")):
        return False
    return request.accept.best_match(ANSWERS, default="text/html") == "text/html"


def local_next(target: str | None, default: str = "/home") -> str:
    """Only a path on this gateway (no scheme, no host, no //evil.example): no open redirect."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    return target[:500]


def see_other(path: str) -> Redirect:
    return Redirect(path=path, status_code=303)


async def form_of(request: Request[Any, Any, Any], schema: type[S], lists: tuple[str, ...] = ()) -> S:
    """The posted form as ``schema``; fields in ``lists`` keep every value (checkboxes, multi-selects)."""
    form = await request.form()
    raw: dict[str, Any] = {}
    for key in form:
        if key == CSRF_FIELD:
            continue
        raw[key] = [str(v) for v in form.getall(key)] if key in lists else str(form.get(key))
    try:
        return msgspec.convert(raw, schema, strict=False)
    except msgspec.ValidationError as e:
        raise BadInput(f"表单内容不符：{e} (form field invalid)", code="form.invalid") from None
