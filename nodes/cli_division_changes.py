"""`appraise divisions changes sign|list|show|verify`: a node's signed division change lists (区划调整).

``sign`` issues through the node's own store, as the node does (the next sequence number after the
node's last list, chained to it, checked exactly as its children will check it, and queued for them);
the node's key comes from its node.yaml. ``show`` and ``verify`` read an envelope file anyone may hold.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import time
from collections.abc import Awaitable, Callable
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from aggregator.errors import AppraisalError, BadInput

if TYPE_CHECKING:
    from nodes.services.divisions import DivisionChangeService
    from sync.division_changes import ChangeList

T = TypeVar("T")
changes_app = typer.Typer(help="区划调整：签发与查看区划变更清单 (signed division change lists)", no_args_is_help=True)
out = Console(soft_wrap=True, highlight=False)
err = Console(stderr=True, soft_wrap=True, highlight=False)
ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="节点配置文件 (node.yaml)")]


def _fail(exc: AppraisalError, code: int = 2) -> typer.Exit:
    err.print(f"[red]错误 (error):[/] {escape(str(exc))} (code: {exc.code})")
    return typer.Exit(code=code)


def _run(config: Path, work: Callable[[DivisionChangeService], Awaitable[T]]) -> T:
    from nodes.config import load_config
    from nodes.runtime import build_services
    from nodes.store import Store

    async def go() -> T:
        cfg = load_config(config)
        store = await Store.open(cfg.store_url, connections=2)
        try:
            service = build_services(cfg, store).divisions
            await service.load()
            return await work(service)
        finally:
            await store.close()

    try:
        return asyncio.run(go())
    except AppraisalError as exc:
        raise _fail(exc) from None


def _read_events(path: Path) -> object:
    from nodes.yamlfile import load

    if path.suffix.lower() == ".json":
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise BadInput(f"{path}: 无法读取 JSON (cannot read the JSON file): {exc}", code="division_file.unreadable") from None
    return load(path, code="division_file.unreadable").data


def _print(cl: ChangeList) -> None:
    out.print(f"[bold]{cl.issuer}[/] 第 {cl.seq} 份 (list {cl.seq})  digest {cl.digest}")
    out.print(f"  前一份 (previous): {cl.previous or '—'}  签发 (issued_at): {cl.issued_at}")
    table = Table("#", "类型 (kind)", "生效 (effective)", "单位 (units)", "新代码 (code)", "名称 (name)", "依据 (ref)")
    for i, c in enumerate(cl.changes, 1):
        units = getattr(c, "units", None) or (getattr(c, "unit", ""),)
        table.add_row(str(i), c.kind, c.effective.isoformat(), escape(", ".join(units)), getattr(c, "code", ""),
                      escape(getattr(c, "name", "")), escape(c.ref))
    out.print(table)


@changes_app.command("sign")
def changes_sign(
    events_file: Annotated[Path, typer.Argument(help="变更文件 YAML/JSON (a list of changes, nodes/division_file.py)")],
    config: ConfigOpt,
    output: Annotated[Path | None, typer.Option("--out", "-o", help="另存签名后的清单 (also write the envelope here)")] = None,
) -> None:
    """签发本节点的下一份区划变更清单 (sign and issue this node's next change list with its key)."""
    from nodes.division_file import events

    try:
        changes = events(_read_events(events_file), str(events_file))
    except AppraisalError as exc:
        raise _fail(exc) from None
    try:
        who = getpass.getuser()
    except (KeyError, OSError):
        who = "unknown"
    cl = _run(config, lambda s: s.issue(changes, f"cli:{who}"[:64]))
    if output is not None:
        output.write_bytes(cl.envelope)
    _print(cl)
    out.print("[green]已签发，将随级联下发 (issued; it goes down with the cascade)[/]")


@changes_app.command("list")
def changes_list(
    config: ConfigOpt,
    on: Annotated[str | None, typer.Option("--date", help="YYYY-MM-DD：并列出当日适用的区划 (also the tree in force)")] = None,
) -> None:
    """列出本节点持有的清单（按接收顺序）(the lists this node holds, in acceptance order)."""
    day = None
    if on is not None:
        try:
            day = date.fromisoformat(on)
        except ValueError:
            raise _fail(BadInput(f"--date {on!r} 应为 YYYY-MM-DD (a day)", code="divisions.bad_cli_date")) from None

    async def work(s: DivisionChangeService) -> None:
        table = Table("#", "发布者 (issuer)", "序号 (seq)", "变更 (changes)", "来自 (sender)", "digest")
        for h in s.held():
            table.add_row(str(h.position), h.changes.issuer, str(h.changes.seq), str(len(h.changes.changes)),
                          escape(h.sender), h.changes.digest[:16])
        out.print(table)
        if day is not None:
            tree = s.tree_at(day)
            if tree is None:
                out.print("未持有任何清单：以配置的区划为准 (no list held: the configured tree stands)")
                return
            for u in sorted(tree.units.values(), key=lambda u: u.code):
                out.print(f"  {u.code}  {escape(u.name)}  ({u.uid})")

    _run(config, work)


@changes_app.command("show")
def changes_show(envelope: Annotated[Path, typer.Argument(help="签名清单文件 (a signed change list)")]) -> None:
    """显示一份清单的内容（不验证签名）(decode a list; verify checks it)."""
    from sync.division_changes import PAYLOAD_DIVISION_CHANGES, decode
    from sync.envelope import open_envelope

    try:
        cl = decode(open_envelope(envelope.read_bytes(), PAYLOAD_DIVISION_CHANGES).payload)
    except OSError as exc:
        raise _fail(BadInput(f"{envelope}: 无法读取 (cannot read): {exc}", code="division_file.unreadable")) from None
    except AppraisalError as exc:
        raise _fail(exc) from None
    _print(cl)


@changes_app.command("verify")
def changes_verify(
    envelope: Annotated[Path, typer.Argument(help="签名清单文件 (a signed change list)")],
    config: ConfigOpt,
    chain: Annotated[Path | None, typer.Option("--chain", help="签发者的证书链 chain.pb (default: from this node's own)")] = None,
) -> None:
    """按本节点的信任根验证一份清单 (verify a list against this node's trust root, as the node would)."""
    from nodes.config import load_config
    from proto.appraisal.v1 import appraisal_pb2 as pb
    from sync.division_changes import PAYLOAD_DIVISION_CHANGES, decode, verify_change_list
    from sync.envelope import open_envelope

    try:
        cfg = load_config(config)
        data = envelope.read_bytes()
        issuer = decode(open_envelope(data, PAYLOAD_DIVISION_CHANGES).payload).issuer
        if chain is not None:
            certs = list(pb.CertificateChain.FromString(chain.read_bytes()).certificates)
        elif issuer in cfg.node_path:
            certs = list(cfg.chain[:cfg.node_path.index(issuer)])
        else:
            raise BadInput(f"{issuer} 不在本节点路径上，请用 --chain 给出其证书链 (not on this node's path: give --chain)",
                           code="divisions.chain_needed")
        cl = verify_change_list(data, certs, cfg.root, int(time.time()))
    except OSError as exc:
        raise _fail(BadInput(f"无法读取 (cannot read): {exc}", code="division_file.unreadable")) from None
    except AppraisalError as exc:
        raise _fail(exc, code=1) from None
    _print(cl)
    out.print(f"[green]签名与证书链有效 (signature and chain verify): {cl.issuer} 第 {cl.seq} 份[/]")
