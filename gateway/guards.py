"""Access decisions live here and nowhere else (docs/design.md §5a).

Who a request acts as: the node's bearer token (machines and scripts: every capability), else a
browser session cookie (a person, with roles and a scope), else nobody (the public). A route states
the capability it needs with ``require("values.review")``; this module answers 401 to nobody, 403
with what is missing to anyone else, and checks CSRF on every unsafe request a session makes (the
session's synchroniser token in ``X-CSRF-Token`` or the form field ``_csrf``, and a same-origin
``Origin`` when the browser sends one). What a body names (units, indicators) is checked by
:func:`check_scope`, which handlers call before handing the body to a service.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from gateway.deps import node_state
from nodes.accounts import CAPABILITIES, ROLES, SYSTEM, Principal

PRINCIPAL_KEY = "principal"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "_csrf"
Guard = Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], Coroutine[Any, Any, None]]


class Forbidden(PermissionDeniedException):
    """403 with a code the problem handler and the error page show."""

    def __init__(self, detail: str, code: str = "auth.forbidden") -> None:
        super().__init__(detail=detail)
        self.code = code


class PasswordChangeRequired(Forbidden):
    def __init__(self) -> None:
        super().__init__("请先修改由他人设置的一次性密码 (change the one-time password first)", "auth.must_change")


def session_cookie(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """One cookie name per node: browsers share cookies between ports of one host (the demo's nodes)."""
    return f"fa_session_{node_state(connection)['node_code']}"


def _bearer(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal | None:
    header = connection.headers.get("authorization", "")
    if not header:
        return None
    scheme, _sep, supplied = header.partition(" ")
    token: str = node_state(connection)["admin_token"]
    # compare_digest refuses non-ASCII str; compare bytes so any header is a clean refusal.
    if scheme.lower() != "bearer" or not supplied.strip() or not hmac.compare_digest(
            supplied.strip().encode("utf-8", "surrogateescape"), token.encode()):
        raise NotAuthorizedException("管理令牌不正确 (wrong bearer token)")
    return SYSTEM


async def current(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal | None:
    """The request's principal, resolved once per request."""
    state = connection.state
    if PRINCIPAL_KEY in state:
        found: Principal | None = state[PRINCIPAL_KEY]
        return found
    who = _bearer(connection)
    if who is None:
        token = connection.cookies.get(session_cookie(connection), "")
        if token:
            who = await node_state(connection)["accounts"].resolve(token)
    state[PRINCIPAL_KEY] = who
    return who


async def _check_csrf(connection: ASGIConnection[Any, Any, Any, Any], who: Principal) -> None:
    if who.via == "token" or connection.scope.get("method", "GET") in SAFE_METHODS:
        return  # a bearer token is not sent by a browser on its own: nothing to forge
    origin = connection.headers.get("origin")
    if origin is not None and origin != "null":
        host = connection.headers.get("host", "")
        if origin.split("://", 1)[-1] != host:
            raise Forbidden("跨站请求被拒绝 (cross-origin request refused)", "auth.csrf")
    supplied = connection.headers.get(CSRF_HEADER, "")
    if not supplied and isinstance(connection, Request):
        ctype = connection.headers.get("content-type", "")
        if ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            supplied = str((await connection.form()).get(CSRF_FIELD, ""))
    if not supplied or not hmac.compare_digest(supplied.encode("utf-8", "surrogateescape"), who.csrf.encode()):
        raise Forbidden("页面已过期或请求来源不明，请刷新页面后重试 (missing or wrong CSRF token; reload the page)",
                        "auth.csrf")


def require(capability: str, *, allow_must_change: bool = False) -> Guard:
    """A route guard: the principal must hold ``capability`` (nodes/accounts.py CAPABILITIES)."""
    if capability not in CAPABILITIES:
        raise ValueError(capability)
    roles = "、".join(ROLES[r] for r in sorted(CAPABILITIES[capability]))

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        who = await current(connection)
        if who is None:
            raise NotAuthorizedException("请先登录 (sign in first)")
        await _check_csrf(connection, who)
        if who.must_change and not allow_must_change:
            raise PasswordChangeRequired
        if not who.can(capability):
            raise Forbidden(f"{who.label} 无权执行此操作，需要角色：{roles} (your roles do not allow {capability})")

    guard.__name__ = f"require_{capability.replace('.', '_')}"
    return guard


async def signed_in(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Any person or the token (pages every role sees: home, own password)."""
    who = await current(connection)
    if who is None:
        raise NotAuthorizedException("请先登录 (sign in first)")
    await _check_csrf(connection, who)


def check_scope(who: Principal, units: Iterable[str] = (), indicators: Iterable[str] = ()) -> None:
    """What a body names must lie inside the principal's scope; the first thing outside is named."""
    for u in units:
        if not who.covers_unit(u):
            raise Forbidden(f"{who.label} 的权限范围不含单位 {u[:16]} (unit outside your scope)", "auth.scope")
    for code in indicators:
        if not who.covers_indicator(code):
            raise Forbidden(f"{who.label} 的权限范围不含指标 {code[:32]} (indicator outside your scope)", "auth.scope")


def check_assigned(who: Principal, assignee: str) -> None:
    """Work assigned to one person (an appeal's reviewer): only that person acts on it, not the token."""
    if who.system or who.login != assignee:
        raise Forbidden(f"{who.label} 不是绩效办为此指定的复核人 (only the reviewer the office assigned may decide)",
                        "appeals.not_assigned")


def actor(request: Request[Any, Any, Any]) -> Principal:
    """The principal a guarded handler acts for (its guard has resolved it)."""
    who: Principal | None = request.state.get(PRINCIPAL_KEY)
    if who is None:
        raise NotAuthorizedException("请先登录 (sign in first)")
    return who


admin_guard = require("revocations.manage")  # machine-only routes of old: the token or an office session


def check_capability(who: Principal, capability: str) -> None:
    """For a route whose body says what it does (an update that is the unit's or the office's act):
    the principal must hold the capability that act needs, as ``require`` would have checked."""
    if not who.can(capability):
        roles = "、".join(ROLES[r] for r in sorted(CAPABILITIES[capability]))
        raise Forbidden(f"{who.label} 无权执行此操作，需要角色：{roles} (your roles do not allow {capability})")


async def public_form(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """A form anyone may post without signing in (公众评议): no session, so no CSRF token, but a post
    a browser makes from another site's page is refused by its ``Origin`` (the form carries a token of
    its own, checked by the service)."""
    if connection.scope.get("method", "GET") in SAFE_METHODS:
        return
    origin = connection.headers.get("origin")
    if origin is not None and (origin == "null" or origin.split("://", 1)[-1] != connection.headers.get("host", "")):
        raise Forbidden("跨站请求被拒绝 (cross-origin request refused)", "auth.csrf")
