"""`appraise reports generate`: every unit's 绩效报告 (feedback report) PDF of a cycle, from the node's
current publication(s), with a progress bar. Opens the node's own store as the node does, stores each
PDF (table feedback_reports, with its sha256 and the publication digest) and audits the batch under
``cli:<OS user>``; ``--out DIR`` also writes each PDF to DIR/<cycle>-<period>-<unit>.pdf."""

from __future__ import annotations

import asyncio
import getpass
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from aggregator.errors import AppraisalError
from nodes.accounts import ROLES, Principal
from nodes.yamlfile import FileError

if TYPE_CHECKING:
    from nodes.services.feedback import Generated

reports_app = typer.Typer(help="绩效报告 (feedback reports: one PDF per unit)", no_args_is_help=True)
err = Console(stderr=True, soft_wrap=True, highlight=False)
ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="节点配置文件 (node.yaml)")]


def _cli_actor() -> Principal:
    try:
        who = getpass.getuser()
    except (KeyError, OSError):
        who = "unknown"
    return Principal(login=f"cli:{who}"[:64], name="命令行 (command line)", roles=frozenset(ROLES), via="cli")


@reports_app.command("generate")
def reports_generate(
    config: ConfigOpt,
    cycle: Annotated[str, typer.Option(help="考评年度 (appraisal year), e.g. 2026")],
    period: Annotated[str | None, typer.Option(help="报告期 (period), default <cycle>-Y")] = None,
    out: Annotated[Path | None, typer.Option(help="另存 PDF 到此目录 (also write the PDFs here)")] = None,
    workers: Annotated[int, typer.Option(help="渲染进程数，0 为按 CPU (render processes; 0: per CPU)")] = 0,
) -> None:
    """为当前公布结果中的每个单位生成 PDF 绩效报告 (generate every unit's PDF feedback report)."""
    from nodes.config import load_config
    from nodes.runtime import build_services
    from nodes.store import Store

    columns = (TextColumn("[bold]绩效报告[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn())

    async def go() -> list[Generated]:
        cfg = load_config(config)
        store = await Store.open(cfg.store_url, connections=2)
        try:
            with Progress(*columns, console=err, transient=False) as bar:
                task = bar.add_task(cycle, total=None)

                def tick(done: int, total: int, unit: str) -> None:
                    bar.update(task, total=total, completed=done, description=f"{cycle} {unit}".strip())

                return await build_services(cfg, store).feedback.generate(_cli_actor(), cycle, period, progress=tick,
                                                                          workers=workers)
        finally:
            await store.close()

    started = time.perf_counter()
    try:
        made = asyncio.run(go())
    except FileError as exc:
        err.print(f"[red]错误 (error):[/] {escape(str(exc))}")
        raise typer.Exit(code=2) from None
    except AppraisalError as exc:
        err.print(f"[red]错误 (error):[/] {escape(str(exc))} ({exc.code})")
        raise typer.Exit(code=1) from None
    seconds = time.perf_counter() - started
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        _write(config, made, out)
    size = sum(g.size for g in made)
    typer.echo(f"已生成 {len(made)} 份绩效报告，共 {size / 1024:.0f} KiB，用时 {seconds:.1f} 秒 "
               f"({len(made)} reports, {size / 1024:.0f} KiB, {seconds:.1f} s)" + (f" → {out}" if out else ""))


def _write(config: Path, made: list[Generated], out: Path) -> None:
    """The stored PDFs, read back by their keys (what was stored is what is written)."""
    from nodes.config import load_config
    from nodes.store import Store

    async def go() -> None:
        store = await Store.open(load_config(config).store_url, connections=1)
        try:
            async with store.read() as r:
                for g in made:
                    found = await r.feedback.pdf(g.cycle, g.period, g.unit)
                    if found is not None:
                        (out / f"{g.cycle}-{g.period}-{g.unit}.pdf").write_bytes(found[1])
        finally:
            await store.close()

    asyncio.run(go())
