"""Results-use lists (结果运用) as files for the bodies that use them: Excel (one sheet per list, a
header naming the node, cycle, list, body, digest and signing time) and CSV (UTF-8 with a BOM, so
Excel opens it in Chinese). No I/O: bytes in, bytes out.

Text cells are written as text: a unit name beginning with ``=`` is not a formula in the workbook,
and in the CSV any cell beginning with ``= + - @`` gets a leading apostrophe (CSV injection).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from datetime import UTC, datetime

from openpyxl import Workbook
from openpyxl.styles import Font

from nodes.results_use import body_name
from sync.use_lists import UseList

CST = 8 * 3600
CSV_COLUMNS = ("node", "cycle", "list", "title", "body", "version", "digest", "issued_at", "seq", "unit", "name",
               "rule", "because")
TABLE = ("序号 No.", "单位代码 Unit code", "单位名称 Unit", "依据规则 Rule", "理由 Because")
_SHEET_BAD = re.compile(r"[\[\]:*?/\\]")


def signed_time(ts: int) -> str:
    return datetime.fromtimestamp(ts + CST, UTC).strftime("%Y-%m-%d %H:%M:%S") + " (UTC+8)"


def _text(cell: object, value: str) -> None:
    cell.value = value  # type: ignore[attr-defined]
    cell.data_type = "s"  # type: ignore[attr-defined]  # never a formula


def xlsx(lists: Sequence[UseList], node_name: str) -> bytes:
    wb = Workbook()
    wb.remove(wb.active)  # type: ignore[arg-type]
    used: set[str] = set()
    for u in lists:
        base = _SHEET_BAD.sub("_", u.title)[:24] or u.list[:24]
        title, n = base, 1
        while title in used:
            n += 1
            title = f"{base}({n})"
        used.add(title)
        ws = wb.create_sheet(title)
        header = (("节点 Node", f"{node_name}（{u.node}）"), ("年度 Cycle", u.cycle), ("清单 List", f"{u.title}（{u.list}）"),
                  ("使用机关 Body", f"{body_name(u.body)}（{u.body}）"), ("版本 Version", str(u.version)),
                  ("摘要 Digest (SHA-256)", u.digest), ("签署时间 Signed", signed_time(u.issued_at)),
                  ("依据的终审公布 Final publications", "、".join(u.publications)))
        for r, (label, value) in enumerate(header, start=1):
            ws.cell(r, 1, label).font = Font(bold=True)
            _text(ws.cell(r, 2), value)
        top = len(header) + 2
        for c, label in enumerate(TABLE, start=1):
            ws.cell(top, c, label).font = Font(bold=True)
        for i, e in enumerate(u.entries, start=1):
            ws.cell(top + i, 1, i)
            for c, value in enumerate((e.unit, e.name, e.rule, e.because), start=2):
                _text(ws.cell(top + i, c), value)
        if not u.entries:
            ws.cell(top + 1, 1, "（本清单无单位 no unit on this list）")
        for col, width in zip("ABCDE", (26, 14, 28, 24, 48), strict=True):
            ws.column_dimensions[col].width = width
    if not lists:
        wb.create_sheet("无清单 none")
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def _safe(value: str) -> str:
    return "'" + value if value[:1] in ("=", "+", "-", "@") else value


def csv_bytes(lists: Sequence[UseList]) -> bytes:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(CSV_COLUMNS)
    for u in lists:
        for i, e in enumerate(u.entries, start=1):
            w.writerow([_safe(str(x)) for x in (u.node, u.cycle, u.list, u.title, u.body, u.version, u.digest,
                                                 u.issued_at, i, e.unit, e.name, e.rule, e.because)])
    return ("\ufeff" + out.getvalue()).encode("utf-8")
