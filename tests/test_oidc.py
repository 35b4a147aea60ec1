"""Signing in through OpenID Connect (统一身份认证), against a real OpenID provider started here.

The provider is oidc-provider-mock (PyPI), a Flask application built on authlib's own server
components: discovery, JWKS, an authorization endpoint whose form signs in any ``sub`` or denies,
and a token endpoint that issues RS256 ID tokens. It runs on werkzeug's threaded server on a free
port of 127.0.0.1. Two Flask hooks of our own are added to it: one records what arrives at its token
endpoint (to check our PKCE verifier and client authentication), one can re-sign the ID token it is
about to send, with other claims or another key (the provider "lets us" forge what a hostile or
broken provider would send). The gateway is a real county node's (tests/support/nodes.py), driven
through Litestar's test client as a browser, redirects not followed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import threading
import time
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import authlib.deprecate
import httpx
import pytest
import werkzeug.serving
import yaml
from joserfc import jwt
from joserfc.jwk import RSAKey, import_key
from litestar.testing import AsyncTestClient

from gateway.app import create_app
from nodes.accounts import SYSTEM
from nodes.clock import FixedClock
from nodes.config import INVALID, UNKNOWN_KEY, load_config
from nodes.launcher import Federation, load_topology
from nodes.runtime import NodeServices as Node
from nodes.runtime import build_services, gateway_services
from nodes.yamlfile import FileError
from tests.support.nodes import make_county

# The provider's own ID-token code still takes authlib's legacy get_jwt_config path (in its thread).
pytestmark = pytest.mark.filterwarnings(r"ignore:get_jwt_config\(self, grant\) is deprecated:DeprecationWarning")

GATEWAY = "http://testserver.local"  # Litestar's test client's base URL: the gateway as browsers reach it
CLIENT_ID = "jxb-gateway"
SECRET = "s3cret-from-the-platform"


@dataclass
class Provider:
    url: str
    token_requests: list[dict[str, str]] = field(default_factory=list)
    tamper: Callable[[dict[str, Any]], dict[str, Any]] | None = None  # re-sign the next ID tokens' claims
    sign_with: Any = None  # … with this key instead of the provider's own


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", authlib.deprecate.AuthlibDeprecationWarning)  # it imports authlib.jose
        import flask
        import oidc_provider_mock
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    app = oidc_provider_mock.app(require_nonce=True, user_claims=[
        oidc_provider_mock.User(sub="510104-wang-0001", claims={"name": "王芳"})])

    @app.before_request
    def record() -> None:
        if flask.request.path == "/oauth2/token":
            me.token_requests.append({**flask.request.form.to_dict(),
                                      "authorization": flask.request.headers.get("Authorization", "")})

    @app.after_request
    def resign(resp: flask.Response) -> flask.Response:
        if flask.request.path != "/oauth2/token" or me.tamper is None or resp.status_code != 200:
            return resp
        body = resp.get_json()
        own = import_key(flask.g.oidc_provider_mock_storage.jwk.as_dict(is_private=True))
        claims = me.tamper(dict(jwt.decode(body["id_token"], own).claims))
        body["id_token"] = jwt.encode({"alg": "RS256", "typ": "JWT"}, claims, me.sign_with or own)
        resp.set_data(json.dumps(body))
        return resp

    server = werkzeug.serving.make_server("127.0.0.1", 0, app, threaded=True)
    me = Provider(url=f"http://127.0.0.1:{server.server_port}")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield me
    finally:
        server.shutdown()
        thread.join(5)
        server.server_close()


@pytest.fixture(autouse=True)
def fresh(provider: Provider) -> None:
    provider.token_requests.clear()
    provider.tamper = None
    provider.sign_with = None


def oidc_section(tmp_path: Path, issuer: str, **over: str) -> dict[str, str]:
    (tmp_path / "oidc_secret").write_text(SECRET + "\n", encoding="utf-8")
    return {"issuer": issuer, "client_id": CLIENT_ID, "client_secret_file": str(tmp_path / "oidc_secret"),
            "name": "四川省统一身份认证平台", "redirect_base": GATEWAY, **over}


@pytest.fixture
async def county(tmp_path: Path, provider: Provider) -> AsyncIterator[Node]:
    node, _fed = await make_county(tmp_path, oidc=oidc_section(tmp_path, provider.url))
    await node.accounts.add("wang", "王芳", ["office"], SYSTEM, password="wang-fang-password",  # no one-time password
                            oidc_subject="510104-wang-0001")
    yield node
    await node.context.store.close()


@pytest.fixture
async def web(county: Node) -> AsyncIterator[AsyncTestClient[Any]]:
    async with AsyncTestClient(app=create_app(gateway_services(county))) as client:
        client.follow_redirects = False
        yield client


async def audit(node: Node, action: str) -> list[dict[str, Any]]:
    async with node.context.store.read() as r:
        return [{"actor": e.actor, "subject": e.subject, **json.loads(e.detail)}
                for e in await r.audit.entries() if e.action == action]


async def to_provider(web: AsyncTestClient[Any], provider: Provider, target: str = "/home") -> str:
    """The first leg: the gateway sends the browser to the provider's authorization endpoint."""
    r = await web.get("/login/oidc", params={"next": target})
    assert r.status_code == 303, r.text
    url = r.headers["location"]
    assert url.startswith(f"{provider.url}/oauth2/authorize?")
    return url


async def at_provider(url: str, form: dict[str, str]) -> str:
    """The person at the provider's page signs in as ``sub`` (or denies); returns where it sends the browser."""
    async with httpx.AsyncClient(follow_redirects=False, timeout=10) as browser:
        r = await browser.post(url, data=form)
    assert r.status_code == 302, r.text
    back = urlsplit(r.headers["location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == f"{GATEWAY}/login/oidc/callback"
    return f"{back.path}?{back.query}"


async def journey(web: AsyncTestClient[Any], provider: Provider, sub: str) -> httpx.Response:
    callback = await at_provider(await to_provider(web, provider), {"sub": sub})
    return await web.get(callback)


def refused_page(r: httpx.Response, status: int, code: str, text: str) -> None:
    assert r.status_code == status, r.text[:1500]
    assert f'data-code="{code}"' in r.text and text in r.text
    assert 'action="/login"' in r.text  # the sign-in page again, with the password form
    assert not any(k == "set-cookie" and v.startswith("fa_session_") for k, v in r.headers.multi_items())


async def test_a_bound_subject_signs_in_with_pkce_and_gets_a_session(web: AsyncTestClient[Any], county: Node,
                                                                     provider: Provider) -> None:
    login = await web.get("/login")
    assert "使用四川省统一身份认证平台登录" in login.text and 'href="/login/oidc?next=%2Fhome"' in login.text
    r = await web.get("/login/oidc", params={"next": "/users"})
    flow_cookie = next(v for k, v in r.headers.multi_items() if k == "set-cookie" and v.startswith("fa_oidc_510104="))
    assert "HttpOnly" in flow_cookie and "SameSite=lax" in flow_cookie and "Path=/login/oidc" in flow_cookie
    assert "Max-Age=600" in flow_cookie
    url = r.headers["location"]
    q = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert q["client_id"] == CLIENT_ID and q["response_type"] == "code" and q["scope"] == "openid profile"
    assert q["redirect_uri"] == f"{GATEWAY}/login/oidc/callback" and q["code_challenge_method"] == "S256"
    assert len(q["state"]) >= 32 and len(q["nonce"]) >= 32 and q["state"] != q["nonce"]

    r = await web.get(await at_provider(url, {"sub": "510104-wang-0001"}))
    assert r.status_code == 303 and r.headers["location"] == "/users", r.text[:1500]
    cookies = {v.split("=", 1)[0]: v for k, v in r.headers.multi_items() if k == "set-cookie"}
    session = cookies["fa_session_510104"]
    assert "HttpOnly" in session and "SameSite=lax" in session and "Path=/" in session
    assert cookies["fa_oidc_510104"].startswith('fa_oidc_510104="";') or "Max-Age=0" in cookies["fa_oidc_510104"]
    home = await web.get("/home")
    assert home.status_code == 200 and "王芳（wang）" in home.text
    # PKCE: the token request carried the verifier whose S256 is the challenge; the client authenticated (basic)
    [sent] = provider.token_requests
    challenge = base64.urlsafe_b64encode(hashlib.sha256(sent["code_verifier"].encode()).digest()).rstrip(b"=").decode()
    assert challenge == q["code_challenge"] and 43 <= len(sent["code_verifier"]) <= 128
    assert sent["grant_type"] == "authorization_code" and sent["redirect_uri"] == q["redirect_uri"]
    assert sent["authorization"] == "Basic " + base64.b64encode(f"{CLIENT_ID}:{SECRET}".encode()).decode()
    assert "client_secret" not in sent
    [entry] = await audit(county, "login")
    assert entry["actor"] == "wang" and entry["via"] == "oidc"
    assert await audit(county, "login.refused") == []


async def test_an_unbound_subject_is_refused_and_audited(web: AsyncTestClient[Any], county: Node,
                                                         provider: Provider) -> None:
    r = await journey(web, provider, "510104-stranger-9")
    refused_page(r, 403, "auth.unbound", "该统一身份认证账号未在本节点开通或已停用")
    assert (await web.get("/home")).status_code == 303  # still nobody: sent to the sign-in page
    [entry] = await audit(county, "login.refused")
    assert entry["subject"] == "510104-stranger-9" and entry["reason"] == "unbound_subject" and entry["via"] == "oidc"


async def test_the_providers_access_denied_ends_on_the_login_page(web: AsyncTestClient[Any], county: Node,
                                                                  provider: Provider) -> None:
    callback = await at_provider(await to_provider(web, provider), {"action": "deny"})
    assert "error=access_denied" in callback
    r = await web.get(callback)
    refused_page(r, 401, "auth.oidc.provider.access_denied", "已在统一身份认证平台取消或拒绝登录")
    assert provider.token_requests == []
    [entry] = await audit(county, "login.refused")
    assert entry["reason"] == "provider.access_denied" and entry["via"] == "oidc"


async def test_a_tampered_state_or_flow_cookie_is_refused(web: AsyncTestClient[Any], county: Node,
                                                          provider: Provider) -> None:
    callback = await at_provider(await to_provider(web, provider), {"sub": "510104-wang-0001"})
    base, _, state = callback.rpartition("state=")
    r = await web.get(f"{base}state={state[:-2]}xy")
    refused_page(r, 400, "auth.oidc.state", "登录请求已过期或并非从本页发起")
    # the right state, but the cookie altered (its MAC no longer holds) or absent (another browser)
    callback = await at_provider(await to_provider(web, provider), {"sub": "510104-wang-0001"})
    [jar] = [c for c in web.cookies.jar if c.name == "fa_oidc_510104"]
    assert jar.value is not None
    jar.value = jar.value[:-1] + ("A" if jar.value[-1] != "A" else "B")
    refused_page(await web.get(callback), 400, "auth.oidc.state", "登录请求已过期")
    assert "fa_oidc_510104" not in web.cookies  # the refusal ended the flow: now as from a browser without it
    refused_page(await web.get(callback), 400, "auth.oidc.state", "登录请求已过期")
    assert provider.token_requests == []  # no code was spent on any of them
    assert [e["reason"] for e in await audit(county, "login.refused")] == ["state"] * 3


async def test_a_code_issued_to_a_second_client_is_refused_at_the_token_endpoint(
        web: AsyncTestClient[Any], county: Node, provider: Provider) -> None:
    url = await to_provider(web, provider)
    r = await web.get(await at_provider(url.replace(f"client_id={CLIENT_ID}", "client_id=other-app"),
                                        {"sub": "510104-wang-0001"}))
    refused_page(r, 401, "auth.oidc.token_endpoint", "统一身份认证平台拒绝了登录凭据（invalid_grant）")
    [entry] = await audit(county, "login.refused")
    assert entry["reason"] == "token_endpoint" and entry["via"] == "oidc"


@pytest.mark.parametrize(("reason", "tamper", "foreign_key"), [
    ("aud", lambda c: {**c, "aud": ["other-app"]}, False),  # what the provider issued to a second client
    ("nonce", lambda c: {**c, "nonce": "replayed-from-another-sign-in"}, False),
    ("iss", lambda c: {**c, "iss": "https://tyrz.example.invalid"}, False),
    ("exp", lambda c: {**c, "iat": int(time.time()) - 7200, "exp": int(time.time()) - 3600}, False),
    ("signature", lambda c: c, True),  # the very claims, signed with a key the provider's JWKS does not hold
])
async def test_an_id_token_that_does_not_verify_is_refused(
        web: AsyncTestClient[Any], county: Node, provider: Provider, reason: str,
        tamper: Callable[[dict[str, Any]], dict[str, Any]], foreign_key: bool) -> None:
    provider.tamper = tamper
    provider.sign_with = RSAKey.generate_key(2048) if foreign_key else None
    r = await journey(web, provider, "510104-wang-0001")
    refused_page(r, 401, f"auth.oidc.id_token.{reason}", f"身份令牌未通过校验（{reason}）")
    assert (await web.get("/home")).status_code == 303
    [entry] = await audit(county, "login.refused")
    assert entry["reason"] == f"id_token.{reason}" and entry["via"] == "oidc"
    assert await audit(county, "login") == []


async def test_an_id_token_expired_by_the_nodes_clock_is_refused(county: Node, provider: Provider) -> None:
    later = build_services(county.context.cfg, county.context.store, FixedClock(int(time.time()) + 2 * 3600))
    async with AsyncTestClient(app=create_app(gateway_services(later))) as web:
        web.follow_redirects = False
        r = await journey(web, provider, "510104-wang-0001")  # the provider's tokens live an hour
    refused_page(r, 401, "auth.oidc.id_token.exp", "身份令牌未通过校验（exp）")


async def test_an_unreachable_provider_and_a_node_without_oidc(tmp_path: Path) -> None:
    node, _ = await make_county(tmp_path, oidc=oidc_section(tmp_path, "http://127.0.0.1:9"))  # nothing listens
    async with AsyncTestClient(app=create_app(gateway_services(node))) as web:
        web.follow_redirects = False
        refused_page(await web.get("/login/oidc"), 502, "auth.oidc.provider_unreachable", "统一身份认证平台暂时无法访问")
    [entry] = await audit(node, "login.refused")
    assert entry["reason"] == "provider_unreachable"
    await node.context.store.close()
    plain, _ = await make_county(tmp_path / "plain")
    async with AsyncTestClient(app=create_app(gateway_services(plain))) as web:
        web.follow_redirects = False
        assert "统一身份认证" not in (await web.get("/login")).text
        refused_page(await web.get("/login/oidc"), 404, "auth.oidc.off", "本节点未启用统一身份认证登录")
        refused_page(await web.get("/login/oidc/callback?code=x&state=y"), 404, "auth.oidc.off", "未启用")
    await plain.context.store.close()


def _csrf(html: str) -> str:
    m = re.search(r'name="_csrf" value="([^"]+)"', html)
    assert m, html[:2000]
    return m.group(1)


async def test_the_office_binds_a_subject_on_the_user_page(web: AsyncTestClient[Any], county: Node,
                                                           provider: Provider) -> None:
    await county.accounts.add("li", "李四", ["reviewer"], SYSTEM, password="li-si-password-1")
    form = await web.get("/login")
    r = await web.post("/login", data={"_csrf": _csrf(form.text), "login": "wang", "password": "wang-fang-password"})
    assert r.status_code == 303
    page = await web.get("/users/li")
    assert 'name="oidc_subject" value=""' in page.text
    csrf = _csrf(page.text)
    edit = {"_csrf": csrf, "name": "李四", "roles": "reviewer"}
    r = await web.post("/users/li", data={**edit, "oidc_subject": "510104-wang-0001"})  # 王芳's
    assert r.status_code == 409 and "users.subject_taken" in r.text
    r = await web.post("/users/li", data={**edit, "oidc_subject": "510104-li-0002"})
    assert r.status_code == 303
    r = await web.post("/users/li", data=edit)  # a form without the field leaves the binding alone
    assert r.status_code == 303 and (await county.accounts.get("li")).oidc_subject == "510104-li-0002"
    assert (await web.post("/logout", data={"_csrf": csrf})).status_code == 303
    r = await journey(web, provider, "510104-li-0002")
    assert r.status_code == 303 and "李四（li）" in (await web.get("/home")).text
    changes = await audit(county, "users.change")
    assert changes[0]["oidc_subject"] is True and "510104-li-0002" not in json.dumps(changes)


# --- node.yaml oidc:


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Federation:
    fed = Federation(tmp_path_factory.mktemp("oidc-config") / "fed", load_topology())
    fed.prepare()
    (fed.node_dir("510104") / "oidc_secret").write_text(SECRET + "\n", encoding="utf-8")
    return fed


def with_oidc(fed: Federation, file: str, **section: Any) -> Path:
    d = fed.node_dir("510104")
    data = yaml.safe_load((d / "node.yaml").read_text(encoding="utf-8"))
    data["oidc"] = {"issuer": "https://tyrz.sczwfw.gov.cn", "client_id": CLIENT_ID,
                    "client_secret_file": "oidc_secret", "redirect_base": "https://jxb.chengdu.gov.cn/", **section}
    data["oidc"] = {k: v for k, v in data["oidc"].items() if v is not None}
    path = d / f"{file}.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def test_the_oidc_section_loads_with_its_defaults(fed: Federation) -> None:
    cfg = load_config(with_oidc(fed, "oidc-ok"))
    assert cfg.oidc is not None
    assert (cfg.oidc.issuer, cfg.oidc.client_id, cfg.oidc.client_secret) == ("https://tyrz.sczwfw.gov.cn", CLIENT_ID,
                                                                               SECRET)
    assert cfg.oidc.redirect_uri == "https://jxb.chengdu.gov.cn/login/oidc/callback"
    assert (cfg.oidc.name, cfg.oidc.scopes) == ("统一身份认证", "openid profile")
    assert SECRET not in repr(cfg.oidc)
    assert load_config(fed.node_dir("510104") / "node.yaml").oidc is None


@pytest.mark.parametrize(("change", "key", "says"), [
    ({"issuer": "http://tyrz.sczwfw.gov.cn"}, "issuer", "issuer 应为 https:// 地址"),
    ({"issuer": "https://tyrz.sczwfw.gov.cn/?x=1"}, "issuer", "不含查询串"),
    ({"client_id": "two words"}, "client_id", "可见 ASCII"),
    ({"client_secret_file": "absent-secret"}, "client_secret_file", "无法读取客户端密钥文件"),
    ({"client_secret_file": None}, "client_secret_file", "缺少必填项"),
    ({"redirect_base": "jxb.chengdu.gov.cn"}, "redirect_base", "<redirect_base>/login/oidc/callback"),
    ({"scopes": "profile email"}, "scopes", "含 openid"),
    ({"name": ""}, "name", "登录按钮"),
])
def test_a_bad_oidc_setting_is_refused_naming_key_and_fix(fed: Federation, change: dict[str, Any], key: str,
                                                          says: str) -> None:
    with pytest.raises(FileError) as e:
        load_config(with_oidc(fed, f"oidc-bad-{key}", **change))
    assert e.value.code == INVALID and f": oidc.{key}: " in str(e.value) and says in str(e.value)


def test_a_misspelt_oidc_key_is_named(fed: Federation) -> None:
    with pytest.raises(FileError) as e:
        load_config(with_oidc(fed, "oidc-typo", client_secret_file=None, client_secert_file="oidc_secret"))
    assert e.value.code == UNKNOWN_KEY and "did you mean client_secret_file?" in str(e.value)
