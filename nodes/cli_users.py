"""`appraise users`: the first office account, and accounts when the web application is not at hand.

Passwords never appear on a command line (they would stay in the shell's history): ``add`` and
``reset`` print a one-time password, shown once, that must be changed at the first sign-in. Each
command opens the node's own store, as the node does, and audits what it did under ``cli:<OS user>``.
"""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from aggregator.errors import AppraisalError
from nodes.accounts import ROLES, Principal
from nodes.yamlfile import FileError

if TYPE_CHECKING:
    from nodes.repositories.users import UserRecord
    from nodes.services.accounts import AccountService

T = TypeVar("T")
users_app = typer.Typer(help="用户与角色 (accounts and roles of a node's web application)", no_args_is_help=True)
err = Console(stderr=True, soft_wrap=True, highlight=False)
ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="节点配置文件 (node.yaml)")]
ROLE_HELP = "角色，可重复 (role, repeatable): " + ", ".join(f"{k}={v}" for k, v in ROLES.items())


def _cli_actor() -> Principal:
    try:
        who = getpass.getuser()
    except (KeyError, OSError):
        who = "unknown"
    return Principal(login=f"cli:{who}"[:64], name="命令行 (command line)", roles=frozenset(ROLES), via="cli")


def _run(config: Path, work: Callable[[AccountService], Awaitable[T]]) -> T:
    from nodes.config import load_config
    from nodes.runtime import build_services
    from nodes.store import Store

    async def go() -> T:
        cfg = load_config(config)
        store = await Store.open(cfg.store_url, connections=2)
        try:
            return await work(build_services(cfg, store).accounts)
        finally:
            await store.close()

    try:
        return asyncio.run(go())
    except FileError as exc:
        err.print(f"[red]错误 (error):[/] {escape(str(exc))}")
        raise typer.Exit(code=2) from None
    except AppraisalError as exc:
        err.print(f"[red]错误 (error):[/] {escape(str(exc))} ({exc.code})")
        raise typer.Exit(code=1) from None


@users_app.command("add")
def users_add(
    config: ConfigOpt,
    login: Annotated[str, typer.Argument(help="用户名 (login): a-z 0-9 . _ -")],
    name: Annotated[str, typer.Option(help="姓名 (the person's name)")],
    role: Annotated[list[str], typer.Option("--role", help=ROLE_HELP)],
    org: Annotated[str, typer.Option(help="所在单位或部门，如 市统计局 (department)")] = "",
    unit: Annotated[list[str] | None, typer.Option("--unit", help="负责的单位代码，可重复；不给为全部 (scope)")] = None,
    indicator: Annotated[list[str] | None, typer.Option("--indicator", help="负责的指标或指标组，可重复；不给为全部")] = None,
    oidc_subject: Annotated[str, typer.Option(help="统一身份认证的用户标识 (OIDC sub) to bind")] = "",
) -> None:
    """新建用户并打印一次性密码 (add an account; prints a one-time password, shown once)."""
    async def work(accounts: AccountService) -> str:
        return await accounts.add(login, name, role, _cli_actor(), org=org, units=unit or (),
                                  indicators=indicator or (), oidc_subject=oidc_subject)

    secret = _run(config, work)
    typer.echo(f"已创建用户 {login} (account created)")
    typer.echo(f"一次性密码，只显示这一次，首次登录须修改 (one-time password, shown once): {secret}")


@users_app.command("list")
def users_list(config: ConfigOpt) -> None:
    """列出本节点的用户 (list the node's accounts)."""
    async def work(accounts: AccountService) -> list[UserRecord]:
        return list(await accounts.list())

    rows = _run(config, work)
    table = Table("用户名 login", "姓名 name", "单位 org", "角色 roles", "范围 scope", "状态 state")
    for u in rows:
        state = "停用 disabled" if u.disabled else ("待改密码 must change" if u.must_change else "正常 active")
        scope = f"{' '.join(u.units) or '全部单位'} · {' '.join(u.indicators) or '全部指标'}"
        table.add_row(u.login, u.name, u.org, ",".join(u.roles), scope, state)
    Console(soft_wrap=True).print(table)


@users_app.command("disable")
def users_disable(config: ConfigOpt, login: Annotated[str, typer.Argument()]) -> None:
    """停用账号并结束其会话 (disable an account and end its sessions)."""
    async def work(accounts: AccountService) -> None:
        await accounts.set_disabled(login, True, _cli_actor())

    _run(config, work)
    typer.echo(f"已停用 {login} (disabled)")


@users_app.command("enable")
def users_enable(config: ConfigOpt, login: Annotated[str, typer.Argument()]) -> None:
    """重新启用账号 (enable an account again)."""
    async def work(accounts: AccountService) -> None:
        await accounts.set_disabled(login, False, _cli_actor())

    _run(config, work)
    typer.echo(f"已启用 {login} (enabled)")


@users_app.command("reset")
def users_reset(config: ConfigOpt, login: Annotated[str, typer.Argument()]) -> None:
    """重置密码：打印新的一次性密码，解除锁定并结束会话 (reset to a one-time password; unlocks)."""
    async def work(accounts: AccountService) -> str:
        return await accounts.reset(login, _cli_actor())

    secret = _run(config, work)
    typer.echo(f"已重置 {login} 的密码 (password reset)")
    typer.echo(f"一次性密码，只显示这一次，首次登录须修改 (one-time password, shown once): {secret}")
