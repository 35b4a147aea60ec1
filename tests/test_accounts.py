"""Accounts, roles, scopes and sessions (issue 10): Argon2 passwords, one-time passwords that must be
changed, lock-out after repeated failures, sessions that expire, CSRF on every unsafe request a
session makes, 403 naming what is missing, the person in every audit entry and in the signed
approval, and `appraise users`. Real node services on a real SQLite store; the gateway through
Litestar's test client (the browser journeys are in tests/browser/)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from typer.testing import CliRunner

from aggregator.errors import AppraisalError
from gateway.app import create_app
from nodes.accounts import SYSTEM, Principal
from nodes.cli import app as cli
from nodes.clock import FixedClock
from nodes.config import load_config
from nodes.launcher import Federation, load_topology
from nodes.runtime import NodeServices as Node
from nodes.runtime import build_services, gateway_services
from nodes.services.accounts import SignInRefused
from nodes.store import Store
from tests.support.nodes import make_county

T0 = 1_790_000_000


@pytest.fixture
async def county(tmp_path: Path) -> AsyncIterator[tuple[Node, Federation]]:
    node, fed = await make_county(tmp_path, review="manual")
    yield node, fed
    await node.context.store.close()


async def audit_of(node: Node, action: str) -> list[Any]:
    async with node.context.store.read() as r:
        return [e for e in await r.audit.entries() if e.action == action]


async def test_one_time_password_lockout_reset_and_disable(tmp_path: Path) -> None:
    clock = FixedClock(T0)
    base, _fed = await make_county(tmp_path)
    node = build_services(base.context.cfg, base.context.store, clock)
    accounts = node.accounts
    secret = await accounts.add("wang.office", "王芳", ["office"], SYSTEM)
    assert len(secret) >= 16
    s = await accounts.sign_in("wang.office", secret, "10.0.0.1")
    assert s.principal.must_change and s.principal.roles == {"office"} and s.principal.via == "password"
    # the stored hash is Argon2id, never the password
    u = await accounts.get("wang.office")
    assert u.password_hash.startswith("$argon2id$") and secret not in u.password_hash
    who = s.principal
    await accounts.change_password(who, secret, "新的密码-correct-horse")
    assert not (await accounts.get("wang.office")).must_change
    with pytest.raises(SignInRefused):
        await accounts.sign_in("wang.office", secret, "10.0.0.1")  # the one-time password is gone
    # four more wrong ones make five in a row: locked, and then even the right one is refused unchecked
    for _ in range(3):
        with pytest.raises(SignInRefused) as wrong:
            await accounts.sign_in("wang.office", "nope-nope-nope", "10.0.0.9")
        assert wrong.value.code == "auth.failed"
    with pytest.raises(SignInRefused) as locked:
        await accounts.sign_in("wang.office", "nope-nope-nope", "10.0.0.9")
    assert locked.value.code == "auth.locked"
    with pytest.raises(SignInRefused) as still:
        await accounts.sign_in("wang.office", "新的密码-correct-horse", "10.0.0.1")
    assert still.value.code == "auth.locked" and "15" in str(still.value)
    clock.advance(15 * 60 + 1)  # the lock ends by itself
    s2 = await accounts.sign_in("wang.office", "新的密码-correct-horse", "10.0.0.1")
    assert await accounts.resolve(s2.token) is not None
    # a reset gives a new one-time password, unlocks and ends every session
    fresh = await accounts.reset("wang.office", SYSTEM)
    assert await accounts.resolve(s2.token) is None
    assert (await accounts.sign_in("wang.office", fresh, "10.0.0.1")).principal.must_change
    # disabled: no sign-in, and its sessions end
    await accounts.add("li.review", "李四", ["reviewer"], SYSTEM, password="li-si-password-1")
    s3 = await accounts.sign_in("li.review", "li-si-password-1", "10.0.0.2")
    await accounts.set_disabled("li.review", True, who)
    assert await accounts.resolve(s3.token) is None
    with pytest.raises(SignInRefused):
        await accounts.sign_in("li.review", "li-si-password-1", "10.0.0.2")
    # every step is in the audit log, with who did it
    assert [(e.actor, e.subject) for e in await audit_of(node, "users.add")] == [("admin", "wang.office"),
                                                                                  ("admin", "li.review")]
    assert [e.actor for e in await audit_of(node, "users.disable")] == ["wang.office"]
    refused = [json.loads(e.detail) for e in await audit_of(node, "login.refused")]
    assert {"reason": "password", "failures": 1, "login": "wang.office", "sender": "http:10.0.0.1",
            "count": 1} in refused
    assert any(d["reason"] == "locked" for d in refused) and any(d["reason"] == "disabled" for d in refused)
    assert len(await audit_of(node, "login.locked")) == 1
    # guesses from one address are counted, not written one by one: a flood adds a bounded number of entries
    before = len(await audit_of(node, "login.refused"))
    for i in range(12):
        with pytest.raises(SignInRefused):
            await accounts.sign_in(f"nobody{i}", "guess-guess-guess", "10.6.6.6")
    assert len(await audit_of(node, "login.refused")) == before + 1
    async with base.context.store.read() as r:
        counted = {(c.sender, c.code): c.total for c in await r.audit.counters()}
    assert counted[("http:10.6.6.6", "unknown")] == 12
    await base.context.store.close()


async def test_sessions_expire_when_idle_and_absolutely(tmp_path: Path) -> None:
    clock = FixedClock(T0)
    base, _ = await make_county(tmp_path)
    accounts = build_services(base.context.cfg, base.context.store, clock).accounts
    await accounts.add("zhao", "赵六", ["auditor"], SYSTEM, password="zhao-liu-password")
    s = await accounts.sign_in("zhao", "zhao-liu-password", "-")
    clock.advance(119 * 60)
    assert await accounts.resolve(s.token) is not None  # and that request counts as activity
    clock.advance(119 * 60)
    assert await accounts.resolve(s.token) is not None
    clock.advance(121 * 60)
    assert await accounts.resolve(s.token) is None  # idle over two hours
    s = await accounts.sign_in("zhao", "zhao-liu-password", "-")
    for _ in range(13):
        clock.advance(60 * 60)
        alive = await accounts.resolve(s.token)
    assert alive is None  # twelve hours after sign-in, however busy
    assert await accounts.resolve("not-a-token") is None and await accounts.resolve("x" * 500) is None
    await base.context.store.close()


async def test_accounts_refuse_bad_input_by_name(county: tuple[Node, Federation]) -> None:
    accounts = county[0].accounts
    cases: list[tuple[dict[str, Any], str]] = [
        ({"login": "Admin", "name": "x", "roles": ["office"]}, "users.login"),
        ({"login": "admin", "name": "x", "roles": ["office"]}, "users.login"),
        ({"login": "ok.name", "name": " ", "roles": ["office"]}, "users.name"),
        ({"login": "ok.name", "name": "x", "roles": []}, "users.role"),
        ({"login": "ok.name", "name": "x", "roles": ["king"]}, "users.role"),
        ({"login": "ok.name", "name": "x", "roles": ["office"], "password": "short"}, "users.password"),
        ({"login": "ok.name", "name": "x", "roles": ["office"], "password": "ok.name"}, "users.password"),
        ({"login": "ok.name", "name": "x", "roles": ["provider"], "units": ["510703001"]}, "users.scope"),
    ]
    for kw, code in cases:
        with pytest.raises(AppraisalError) as e:
            await accounts.add(kw.pop("login"), kw.pop("name"), kw.pop("roles"), SYSTEM, **kw)
        assert e.value.code == code, (kw, e.value)
    await accounts.add("ok.name", "x", ["office"], SYSTEM)
    with pytest.raises(AppraisalError) as taken:
        await accounts.add("ok.name", "y", ["office"], SYSTEM)
    assert taken.value.code == "users.exists"
    assert [u.login for u in await accounts.list()] == ["ok.name"]


def no_redirects(client: AsyncTestClient[Any]) -> AsyncTestClient[Any]:
    client.follow_redirects = False  # httpx's own attribute: see each 303 as the browser gets it
    return client


def _csrf(html: str) -> str:
    m = re.search(r'name="_csrf" value="([^"]+)"', html)
    assert m, html[:2000]
    return m.group(1)


async def sign_in(client: AsyncTestClient[Any], login: str, password: str) -> str:
    """Signs in through the form, as a browser does; returns the session's CSRF token."""
    page = await client.get("/login")
    r = await client.post("/login", data={"_csrf": _csrf(page.text), "login": login, "password": password,
                                          "next": "/home"})
    assert r.status_code == 303, r.text
    home = await client.get(r.headers["location"])
    assert home.status_code == 200, home.text
    return _csrf(home.text)


@pytest.fixture
async def web(county: tuple[Node, Federation]) -> AsyncIterator[tuple[AsyncTestClient[Any], Node]]:
    node = county[0]
    async with no_redirects(AsyncTestClient(app=create_app(gateway_services(node)))) as client:
        yield client, node


async def test_sign_in_sets_a_safe_cookie_and_pages_follow_roles(web: tuple[AsyncTestClient[Any], Node]) -> None:
    client, node = web
    await node.accounts.add("wang", "王芳", ["office"], SYSTEM, password="wang-fang-password")
    await node.accounts.add("tjj", "统计局张三", ["provider"], SYSTEM, org="区统计局", units=["510104017"],
                            indicators=["A1"], password="tjj-password-1")
    # nobody: a page redirects to the sign-in page and comes back after; the API answers 401
    r = await client.get("/users")
    assert r.status_code == 303 and r.headers["location"] == "/login?next=%2Fusers"
    assert (await client.get("/api/v1/audit")).status_code == 401
    # a wrong password: the form again, 401, one message that does not say which part was wrong
    page = await client.get("/login")
    r = await client.post("/login", data={"_csrf": _csrf(page.text), "login": "wang", "password": "wrong-wrong"})
    assert r.status_code == 401 and "用户名或密码错误" in r.text
    # the sign-in form's own CSRF token is required (no login CSRF)
    r = await client.post("/login", data={"_csrf": "forged", "login": "wang", "password": "wang-fang-password"})
    assert r.status_code == 403 and "auth.csrf" in r.text
    page = await client.get("/login")
    r = await client.post("/login", data={"_csrf": _csrf(page.text), "login": "wang",
                                          "password": "wang-fang-password", "next": "//evil.example/x"})
    assert r.status_code == 303 and r.headers["location"] == "/home"  # no open redirect
    cookie = next(v for k, v in r.headers.multi_items() if k == "set-cookie" and v.startswith("fa_session_510104="))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    home = await client.get("/home")
    assert "王芳（wang）" in home.text and 'href="/users"' in home.text
    csrf = _csrf(home.text)
    # an unsafe request of a session needs its CSRF token, and a same-origin Origin if one is sent
    r = await client.post("/users", data={"login": "x.y", "name": "x", "roles": "auditor"})
    assert r.status_code == 403 and 'data-code="auth.csrf"' in r.text
    r = await client.post("/users", data={"_csrf": csrf, "login": "x.y", "name": "x", "roles": "auditor"},
                          headers={"origin": "http://evil.example"})
    assert r.status_code == 403
    r = await client.post("/users", data={"_csrf": csrf, "login": "shen.audit", "name": "沈审计", "roles": "auditor"})
    assert r.status_code == 201 and 'data-testid="secret"' in r.text
    assert [e.actor for e in await audit_of(node, "users.add")][-1] == "wang"
    # the provider: no user management (403 naming the role needed), in the page and over the API
    await client.post("/logout", data={"_csrf": csrf})
    assert (await client.get("/home")).status_code == 303
    csrf = await sign_in(client, "tjj", "tjj-password-1")
    r = await client.get("/users")
    assert r.status_code == 403 and "绩效办" in r.text and 'data-code="auth.forbidden"' in r.text
    # the same page's URL asked for JSON (a script with the session): the refusal as problem+json
    r = await client.get("/users", headers={"accept": "application/problem+json"})
    assert r.status_code == 403 and r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "auth.forbidden" and "绩效办" in r.json()["detail"]
    r = await client.get("/api/v1/audit")
    assert r.status_code == 403 and r.json()["code"] == "auth.forbidden"
    r = await client.post("/api/v1/admin/reviews", headers={"x-csrf-token": csrf},
                          json={"node": "510104017", "bundle_id": "0" * 64, "decision": "approve"})
    assert r.status_code == 403 and r.json()["code"] == "auth.forbidden"
    # inside the role, outside the scope: 403 naming the unit
    r = await client.post("/api/v1/admin/values", headers={"x-csrf-token": csrf},
                          json={"cycle": "2026", "period": "2026-Y", "values": {"A1": "1"}})
    assert r.status_code == 403 and r.json()["code"] == "auth.scope" and "510104" in r.json()["detail"]


async def test_a_reviewers_approval_names_the_person_of_the_session(county: tuple[Node, Federation]) -> None:
    from tests.support.receivers import Memory
    from tests.test_review import TOWNS, me_of, report

    node, fed = county
    await node.accounts.add("li.review", "李四", ["reviewer"], SYSTEM, password="li-si-password-1")
    bundle = await report(node, me_of(fed, TOWNS[0]), Memory(), 1500)
    async with no_redirects(AsyncTestClient(app=create_app(gateway_services(node)))) as client:
        csrf = await sign_in(client, "li.review", "li-si-password-1")
        r = await client.post("/api/v1/admin/reviews", headers={"x-csrf-token": csrf},
                              json={"node": TOWNS[0], "bundle_id": bundle, "decision": "approve",
                                    "reviewer": "随便写的名字"})
        assert r.status_code == 400  # free text is no longer a field
        r = await client.post("/api/v1/admin/reviews", headers={"x-csrf-token": csrf},
                              json={"node": TOWNS[0], "bundle_id": bundle, "decision": "approve"})
        assert r.status_code == 201, r.text
    async with node.context.store.read() as rd:
        row = await rd.bundles.get(bundle)
    assert row is not None and row.reviewer == "李四（li.review）"
    approved = await audit_of(node, "review.approve")
    assert approved[-1].actor == "li.review" and json.loads(approved[-1].detail)["reviewer"] == "李四（li.review）"


def test_appraise_users_commands(tmp_path: Path) -> None:
    fed = Federation(tmp_path / "fed", load_topology())
    fed.prepare()
    config = str(fed.node_dir("5101") / "node.yaml")
    runner = CliRunner()
    r = runner.invoke(cli, ["users", "add", "--config", config, "wang", "--name", "王芳", "--role", "office"])
    assert r.exit_code == 0, r.output
    secret = r.output.rsplit(": ", 1)[1].strip()
    assert len(secret) >= 16
    r = runner.invoke(cli, ["users", "add", "--config", config, "wang", "--name", "x", "--role", "office"])
    assert r.exit_code == 1 and "users.exists" in r.output
    r = runner.invoke(cli, ["users", "add", "--config", config, "tjj", "--name", "张三", "--role", "provider",
                            "--org", "市统计局", "--unit", "510104", "--indicator", "A1"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["users", "list", "--config", config])
    assert r.exit_code == 0 and "wang" in r.output and "市统计局" in r.output and "510104" in r.output
    assert runner.invoke(cli, ["users", "disable", "--config", config, "tjj"]).exit_code == 0
    r = runner.invoke(cli, ["users", "reset", "--config", config, "wang"])
    assert r.exit_code == 0 and r.output.rsplit(": ", 1)[1].strip() != secret
    assert runner.invoke(cli, ["users", "reset", "--config", config, "nobody"]).exit_code == 1

    async def check() -> None:
        cfg = load_config(Path(config))
        store = await Store.open(cfg.store_url)
        accounts = build_services(cfg, store).accounts
        users = {u.login: u for u in await accounts.list()}
        assert users["tjj"].disabled and users["wang"].must_change
        async with store.read() as r:
            actors = {e.actor for e in await r.audit.entries() if e.action.startswith("users.")}
        await store.close()
        assert len(actors) == 1 and next(iter(actors)).startswith("cli:")

    asyncio.run(check())


def test_principal_scope_rules() -> None:
    p = Principal(login="x", name="x", roles=frozenset({"provider"}), units=frozenset({"510104017"}),
                  indicators=("A",))
    assert p.covers_unit("510104017") and not p.covers_unit("510104018")
    assert p.covers_indicator("A1") and p.covers_indicator("A") and not p.covers_indicator("B3")
    assert p.can("values.enter") and not p.can("values.review") and not p.can("users.manage")
    assert SYSTEM.can("users.manage") and SYSTEM.covers_unit("anything")
