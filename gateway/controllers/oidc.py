"""/login/oidc and its callback: signing in through the OpenID Connect provider (统一身份认证平台).

The first leg sends the browser to the provider with a fresh state, nonce and PKCE challenge, and
keeps them in a sealed, HttpOnly, SameSite=Lax cookie on /login/oidc that lives ten minutes
(gateway/oidc.py). The callback accepts only the state that cookie holds, exchanges the code, has the
ID token verified, and opens a session for the account bound to its ``sub`` exactly as a password
sign-in does (gateway/controllers/session.py). Whatever goes wrong, the provider's own error
included, ends on the sign-in page with the reason in zh-CN and English, and as ``login.refused``
(via oidc, with the reason) in the audit log; never a 500.
"""

from __future__ import annotations

import hmac
import re
from typing import Any

from litestar import Controller, Request, get
from litestar.datastructures import Cookie
from litestar.di import NamedDependency
from litestar.response import Redirect, Template

from gateway.controllers.session import login_form, remote_of, secure_cookie, signed_in_response
from gateway.deps import node_state
from gateway.oidc import FLOW_SECONDS, Flow, OidcFailure, RelyingParty
from gateway.pages import local_next
from nodes.services.accounts import AccountService, SignInRefused
from nodes.services.context import NodeContext

_ERROR = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")


def _flow_cookie(request: Request[Any, Any, Any]) -> str:
    return f"fa_oidc_{node_state(request)['node_code']}"


def _party(request: Request[Any, Any, Any]) -> RelyingParty | None:
    rp: RelyingParty | None = node_state(request).get("oidc")
    return rp


def _provider_error(error: str, description: str) -> OidcFailure:
    code = error if _ERROR.match(error) else "invalid"
    if code == "access_denied":
        return OidcFailure("provider.access_denied", "已在统一身份认证平台取消或拒绝登录 "
                           "(sign-in was cancelled or refused at the identity provider)", 401, description[:200])
    return OidcFailure(f"provider.{code}", f"统一身份认证平台未完成登录（{code}），请重新登录 "
                       f"(the identity provider did not sign you in: {code})", 401, description[:200])


class OidcController(Controller):
    include_in_schema = False

    async def _refused(self, request: Request[Any, Any, Any], node: NodeContext, accounts: AccountService,
                       failure: OidcFailure, target: str = "") -> Template:
        await accounts.refuse_oidc(failure.reason, remote_of(request), detail=failure.detail)
        t = await login_form(request, node, accounts, status=failure.status, error=str(failure),
                             code=f"auth.oidc.{failure.reason}", target=target)
        t.cookies.append(Cookie(key=_flow_cookie(request), value="", path="/login/oidc", max_age=0))
        return t

    @get("/login/oidc")
    async def begin(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                    accounts: NamedDependency[AccountService]) -> Template | Redirect:
        rp = _party(request)
        target = local_next(request.query_params.get("next"))
        if rp is None:
            return await login_form(request, node_context, accounts, status=404, code="auth.oidc.off",
                                    error="本节点未启用统一身份认证登录 (OpenID Connect sign-in is not set up here)")
        try:
            url, flow = await rp.begin(target)
        except OidcFailure as f:
            return await self._refused(request, node_context, accounts, f, target)
        r = Redirect(path=url, status_code=303)
        r.cookies.append(Cookie(key=_flow_cookie(request), value=rp.seal(flow), httponly=True, samesite="lax",
                                path="/login/oidc", secure=secure_cookie(request, accounts), max_age=FLOW_SECONDS))
        return r

    @get("/login/oidc/callback")
    async def callback(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                       accounts: NamedDependency[AccountService]) -> Template | Redirect:
        rp = _party(request)
        q = request.query_params
        flow: Flow | None = rp.unseal(request.cookies.get(_flow_cookie(request), "")) if rp is not None else None
        target = flow.next if flow is not None else ""
        try:
            if rp is None:
                raise OidcFailure("off", "本节点未启用统一身份认证登录 (OpenID Connect sign-in is not set up here)", 404)
            error = str(q.get("error") or "")
            if error:
                raise _provider_error(error, str(q.get("error_description") or ""))
            state = str(q.get("state") or "")
            if flow is None or not state or not hmac.compare_digest(
                    state.encode("utf-8", "surrogateescape"), flow.state.encode()):
                raise OidcFailure("state", "登录请求已过期或并非从本页发起，请重新登录 "
                                  "(the sign-in request expired or did not start in this browser; start again)", 400,
                                  "no flow cookie" if flow is None else "state differs")
            code = str(q.get("code") or "")
            if not code or len(code) > 2000:
                raise OidcFailure("no_code", "统一身份认证平台未返回授权码，请重新登录 (the provider sent no code)", 400)
            identity = await rp.finish(code, flow)
            session = await accounts.sign_in_subject(identity.subject, remote_of(request))
        except OidcFailure as f:
            return await self._refused(request, node_context, accounts, f, target)
        except SignInRefused as e:  # an unbound or disabled subject: sign_in_subject has audited it
            t = await login_form(request, node_context, accounts, status=403, error=str(e), code=e.code,
                                 target=target)
            t.cookies.append(Cookie(key=_flow_cookie(request), value="", path="/login/oidc", max_age=0))
            return t
        r = signed_in_response(request, accounts, session, target)
        r.cookies.append(Cookie(key=_flow_cookie(request), value="", path="/login/oidc", max_age=0))
        return r
