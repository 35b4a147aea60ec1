"""/users: the office manages the node's accounts (add with roles and a scope, change, disable,
enable, reset to a one-time password shown once). Every change is audited with the office member's
login (nodes/services/accounts.py)."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.response import Redirect, Template

from aggregator.errors import AppraisalError
from gateway.deps import node_state
from gateway.guards import actor, require
from gateway.pages import form_of, page, see_other
from gateway.params import LoginPath
from gateway.problems import STATUS_BY_KIND
from nodes.accounts import ROLES, ROLES_EN
from nodes.repositories.users import UserRecord
from nodes.services.accounts import AccountService
from nodes.services.context import NodeContext


class UserForm(msgspec.Struct, forbid_unknown_fields=True):
    login: str = ""
    name: str = ""
    org: str = ""
    roles: list[str] = []
    units: list[str] = []
    indicators: str = ""  # comma- or space-separated codes or group prefixes
    oidc_subject: str | None = None  # the edit page's 统一身份认证 binding; absent: left as it is


def _codes(text: str) -> list[str]:
    return [c for c in text.replace("，", ",").replace(",", " ").split() if c]


def _row(u: UserRecord, now: int, names: dict[str, str]) -> dict[str, Any]:
    state = "停用" if u.disabled else ("锁定" if u.locked_until > now else ("待改密码" if u.must_change else "正常"))
    return {"login": u.login, "name": u.name, "org": u.org, "roles": [ROLES[r] for r in u.roles if r in ROLES],
            "role_keys": list(u.roles), "units": [names.get(x, x) for x in u.units], "unit_keys": list(u.units),
            "indicators": " ".join(u.indicators), "state": state, "disabled": u.disabled,
            "oidc": bool(u.oidc_subject), "oidc_subject": u.oidc_subject}


class UserController(Controller):
    include_in_schema = False
    guards = (require("users.manage"),)

    async def _list(self, request: Request[Any, Any, Any], node: NodeContext, accounts: AccountService, *,
                    status: int = 200, **extra: Any) -> Template:
        names = {node.me.code: f"{node.me.name}（本级）", **node.child_names}
        rows = [_row(u, node.clock(), names) for u in await accounts.list()]
        return await page(request, "users.html.j2", node, status=status, users=rows,
                          roles=[(k, v, ROLES_EN[k]) for k, v in ROLES.items()],
                          units=sorted(names.items()), form=extra.pop("form", None), **extra)

    @get("/users")
    async def users(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                    accounts: NamedDependency[AccountService]) -> Template:
        return await self._list(request, node_context, accounts)

    @post("/users")
    async def add(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                  accounts: NamedDependency[AccountService]) -> Template:
        data = await form_of(request, UserForm, lists=("roles", "units"))
        try:
            secret = await accounts.add(data.login, data.name, data.roles, actor(request), org=data.org,
                                        units=data.units, indicators=_codes(data.indicators))
        except AppraisalError as e:
            return await self._list(request, node_context, accounts, status=STATUS_BY_KIND.get(e.kind, 422),
                                    error=str(e), error_code=e.code, form=msgspec.to_builtins(data))
        return await self._list(request, node_context, accounts, status=201, created=data.login.strip(),
                                secret=secret)

    @get("/users/{login:str}")
    async def edit(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                   accounts: NamedDependency[AccountService], login: LoginPath) -> Template:
        u = await accounts.get(login)
        names = {node_context.me.code: f"{node_context.me.name}（本级）", **node_context.child_names}
        return await page(request, "user_edit.html.j2", node_context, u=_row(u, node_context.clock(), names),
                          roles=[(k, v, ROLES_EN[k]) for k, v in ROLES.items()], units=sorted(names.items()),
                          oidc=node_state(request).get("oidc_name", ""))

    @post("/users/{login:str}")
    async def save(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                   accounts: NamedDependency[AccountService], login: LoginPath) -> Template | Redirect:
        data = await form_of(request, UserForm, lists=("roles", "units"))
        try:
            await accounts.change(login, actor(request), name=data.name, roles=data.roles, org=data.org,
                                  units=data.units, indicators=_codes(data.indicators), oidc_subject=data.oidc_subject)
        except AppraisalError as e:
            u = await accounts.get(login)
            names = {node_context.me.code: f"{node_context.me.name}（本级）", **node_context.child_names}
            return await page(request, "user_edit.html.j2", node_context, status=STATUS_BY_KIND.get(e.kind, 422),
                              u=_row(u, node_context.clock(), names), error=str(e), error_code=e.code,
                              roles=[(k, v, ROLES_EN[k]) for k, v in ROLES.items()], units=sorted(names.items()),
                              oidc=node_state(request).get("oidc_name", ""))
        return see_other("/users")

    @post("/users/{login:str}/disable")
    async def disable(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                      accounts: NamedDependency[AccountService], login: LoginPath) -> Template | Redirect:
        try:
            await accounts.set_disabled(login, True, actor(request))
        except AppraisalError as e:
            return await self._list(request, node_context, accounts, status=STATUS_BY_KIND.get(e.kind, 422),
                                    error=str(e), error_code=e.code)
        return see_other("/users")

    @post("/users/{login:str}/enable")
    async def enable(self, request: Request[Any, Any, Any], accounts: NamedDependency[AccountService],
                     login: LoginPath) -> Redirect:
        await accounts.set_disabled(login, False, actor(request))
        return see_other("/users")

    @post("/users/{login:str}/reset")
    async def reset(self, request: Request[Any, Any, Any], node_context: NamedDependency[NodeContext],
                    accounts: NamedDependency[AccountService], login: LoginPath) -> Template:
        secret = await accounts.reset(login, actor(request))
        return await self._list(request, node_context, accounts, reset=login, secret=secret)
