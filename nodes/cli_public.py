"""``appraise public verify FILE --root-key HEX``: check a downloaded publication proof offline,
against the province's public key alone (sync/publication.py says what is checked)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

public_app = typer.Typer(help="公开结果 (published results): 核验下载的结果证明 (verify a downloaded proof)",
                         no_args_is_help=True)
out = Console(soft_wrap=True, highlight=False)
err = Console(stderr=True, soft_wrap=True, highlight=False)


@public_app.command("verify")
def verify(
    file: Annotated[Path, typer.Argument(help="下载的证明文件 (the proof file: /public/... 或 /publication/proof/...)")],
    root_key: Annotated[str, typer.Option("--root-key", help="省级节点公钥，64 位十六进制 (the province's public key, hex)")],
    as_json: Annotated[bool, typer.Option("--json", help="以 JSON 输出 (print JSON)")] = False,
) -> None:
    """离线核验：签名、证书链、审核、逐级汇总与每个得分的计算；不通过则退出码 1
    (signatures, certificate chains, approvals, the arithmetic of every roll-up and score; exit 1 if not)."""
    from aggregator.errors import AppraisalError
    from sync import keys
    from sync.publication import verify_with_key

    try:
        data = file.read_bytes()
    except OSError as exc:
        err.print(f"[red]错误 (error):[/] {file}: 无法读取 (cannot read): {exc.strerror}")
        raise typer.Exit(code=2) from None
    try:
        key = keys.public_from_hex(root_key.strip(), "--root-key")
    except keys.KeyFileError as exc:
        err.print(f"[red]错误 (error):[/] {escape(str(exc))}")
        raise typer.Exit(code=2) from None
    try:
        checked = verify_with_key(data, key)
    except AppraisalError as exc:  # every refusal of the check (EnvelopeError is one) names its code
        if as_json:
            typer.echo(json.dumps({"ok": False, "code": exc.code, "reason": str(exc)}, ensure_ascii=False))
        else:
            err.print(f"[red]✗ 核验未通过 (does not verify):[/] {escape(str(exc))} (code: {exc.code})")
        raise typer.Exit(code=1) from None
    p = checked.publication
    if as_json:
        typer.echo(json.dumps({
            "ok": True, "publisher": checked.publisher, "cycle": p.cycle, "period": p.period,
            "class": p.framework.unit_class, "state": p.state, "version": p.version, "digest": p.digest,
            "units": checked.units, "bundles": checked.bundles, "approvals": checked.approvals,
            "rollups_recomputed": checked.rollups, "values_checked": checked.reported, "values_attested": checked.attested,
            "assessments_attested": checked.assessments, "previous_versions": checked.previous, "notes": checked.notes,
            "ranking": [{"unit": u.unit, "name": u.name, "score": str(u.score), "rank": u.rank, "grade": u.grade}
                        for u in sorted(p.units, key=lambda u: (u.rank == 0, u.rank, u.unit))]}, ensure_ascii=False))
        return
    state = "终审 (final)" if p.state == "final" else "公示中 (publicity)"
    out.print(f"[green]✓ 核验通过 (verifies)[/]: {checked.publisher} {p.cycle} {p.period}「{escape(p.framework.unit_class)}」"
              f"{state} 第 {p.version} 版 · {p.digest[:16]}…")
    out.print(f"  签名与证书链：发布者、指标体系、{checked.bundles} 个单位结果包均由省级公钥起的证书链签发 "
              f"(signatures and chains to the province key)")
    out.print(f"  审核：{checked.approvals} 个审核签名 (approvals); 逐级汇总重算：{checked.rollups} 个结果包 "
              f"(roll-ups recomputed from their evidence)")
    out.print(f"  数值：{checked.reported} 个与单位签名结果包一致 (values equal to the signed bundles); "
              f"{checked.attested} 个由发布者签名担保 (attested by the publisher: its own providers' and entries)")
    out.print(f"  得分、名次、等次：{checked.units} 个单位按公布的数值与评议文件重新计算，完全一致 "
              f"(every score, rank and grade recomputed: identical)")
    if checked.assessments:
        out.print(f"  评议文件：{checked.assessments} 个单位的评分/问卷由发布者签名担保 (ratings and surveys: attested)")
    for note in checked.notes:
        out.print(f"  注意 (note): {escape(note)}")
    table = Table(title=escape(f"{p.cycle} {p.framework.unit_class} 排名 (ranking)"))
    for col in ("名次 rank", "单位 unit", "得分 score", "等次 grade"):
        table.add_column(col)
    for u in sorted(p.units, key=lambda u: (u.rank == 0, u.rank, u.unit)):
        # names and grades come from the file: shown as text, never as console markup
        table.add_row(str(u.rank or "—"), escape(f"{u.name}（{u.unit}）"), str(u.score), escape(u.grade) or "—")
    out.print(table)
