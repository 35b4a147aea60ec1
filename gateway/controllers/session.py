"""/login, /logout, /account/password: signing in and out, and one's own password.

The sign-in form is protected from login CSRF by a double-submit token (a cookie and a hidden field
that must match); once signed in, the session's own token takes over (gateway/guards.py). The
session cookie is HttpOnly, SameSite=Lax, named per node, and Secure over https (web.cookie_secure).
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency
from litestar.response import Redirect, Template

from aggregator.errors import BadInput
from gateway.deps import node_state
from gateway.guards import CSRF_FIELD, actor, session_cookie, signed_in
from gateway.pages import form_of, local_next, page, see_other
from nodes.services.accounts import AccountService, Session, SignInRefused
from nodes.services.context import NodeContext


class SignInForm(msgspec.Struct, forbid_unknown_fields=True):
    login: str = ""
    password: str = ""
    next: str = ""


class PasswordForm(msgspec.Struct, forbid_unknown_fields=True):
    current: str = ""
    new: str = ""
    again: str = ""


def _login_cookie(request: Request[Any, Any, Any]) -> str:
    return f"fa_login_{node_state(request)['node_code']}"


def secure_cookie(request: Request[Any, Any, Any], accounts: AccountService) -> bool:
    mode = accounts.settings.cookie_secure
    return mode == "always" or (mode == "auto" and request.url.scheme == "https")


def remote_of(request: Request[Any, Any, Any]) -> str:
    return request.client.host if request.client else "-"


async def login_form(request: Request[Any, Any, Any], node: NodeContext, accounts: AccountService, *,
                     status: int = 200, error: str = "", code: str = "", login: str = "", target: str = "") -> Template:
    """The sign-in page (also where a refused OpenID Connect sign-in ends, gateway/controllers/oidc.py)."""
    token = secrets.token_urlsafe(24)
    t = await page(request, "login.html.j2", node, status=status, login_csrf=token, error=error, error_code=code,
                   login=login, next=local_next(target or request.query_params.get("next")),
                   oidc=node_state(request).get("oidc_name", ""))
    t.cookies.append(Cookie(key=_login_cookie(request), value=token, httponly=True, samesite="strict",
                            path="/login", secure=secure_cookie(request, accounts), max_age=3600))
    return t


def signed_in_response(request: Request[Any, Any, Any], accounts: AccountService, session: Session,
                       target: str | None) -> Redirect:
    """Where a sign-in ends, however it was made: the session cookie set, the sign-in form's own cookie gone."""
    r = see_other("/account/password" if session.principal.must_change else local_next(target))
    r.cookies.append(Cookie(key=session_cookie(request), value=session.token, httponly=True, samesite="lax",
                            path="/", secure=secure_cookie(request, accounts),
                            max_age=3600 * accounts.settings.session_hours))
    r.cookies.append(Cookie(key=_login_cookie(request), value="", path="/login", max_age=0))
    return r


class SessionController(Controller):
    include_in_schema = False

    @get("/login")
    async def login_page(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                         accounts: NamedDependency[AccountService]) -> Template:
        return await login_form(request, node_context, accounts)

    @post("/login")
    async def login(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                    accounts: NamedDependency[AccountService]) -> Template | Redirect:
        form = await request.form()
        expected = request.cookies.get(_login_cookie(request), "")
        supplied = str(form.get(CSRF_FIELD, ""))
        data = await form_of(request, SignInForm)
        if not expected or not hmac.compare_digest(expected.encode(), supplied.encode("utf-8", "surrogateescape")):
            return await login_form(request, node_context, accounts, status=403, code="auth.csrf",
                                    error="登录页已过期，请重新输入 (the sign-in page expired; try again)",
                                    login=data.login[:64], target=data.next)
        try:
            session = await accounts.sign_in(data.login, data.password, remote_of(request))
        except SignInRefused as e:
            return await login_form(request, node_context, accounts, status=401, error=str(e), code=e.code,
                                    login=data.login[:64], target=data.next)
        return signed_in_response(request, accounts, session, data.next)

    @post("/logout", guards=[signed_in])
    async def logout(self, request: Request[Any, Any, Any], accounts: NamedDependency[AccountService]) -> Redirect:
        who = actor(request)
        token = request.cookies.get(session_cookie(request), "")
        if token:
            await accounts.sign_out(token, who)
        r = see_other("/login")
        r.cookies.append(Cookie(key=session_cookie(request), value="", path="/", max_age=0))
        return r

    @get("/account/password", guards=[signed_in])
    async def password_page(self, request: Request[Any, Any, Any],
                            node_context: NamedDependency[NodeContext]) -> Template:
        return await page(request, "password.html.j2", node_context, must_change=actor(request).must_change)

    @post("/account/password", guards=[signed_in])
    async def change_password(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                              accounts: NamedDependency[AccountService]) -> Template | Redirect:
        who = actor(request)
        data = await form_of(request, PasswordForm)
        try:
            if data.new != data.again:
                raise BadInput("两次输入的新密码不一致 (the two new passwords differ)", code="users.password_mismatch")
            await accounts.change_password(who, data.current, data.new)
        except BadInput as e:
            return await page(request, "password.html.j2", node_context, status=422, error=str(e), error_code=e.code,
                              must_change=who.must_change)
        return see_other("/home")
