"""Data providers' Excel files: a value template made from their grids, and an uploaded file read
back into the cells they typed (``CellInput``), for ``nodes.intake.check`` to check.

Many providers (a district's statistics bureau, a department) keep their figures in Excel and will
paste them rather than type them into a web page. So the template is made to be hard to misread:
every data cell is Text ("@"), so what is typed stays exactly as typed (no float rounding, leading
zeros kept); a hidden row under the header carries the keys, and the header and key cells are both
compared on upload, so a renamed or moved column is refused rather than read into the wrong key;
cells that are not the provider's tasks are grey and locked; the sheets are protected (without a
password: protection guards against slips, not people). An upload is read with openpyxl in
read-only mode and every structural problem (not an xlsx, too big, a sheet or a header changed, a
unit that is not in the grid, a value where no task is, a formula or a date) is collected and
named by ``sheet!cell`` with its fix, then raised once as ``IntakeRefused``: nothing of a file with
a problem is taken. Whether a value is a number within its bounds is ``check``'s to say (it names
the same ``填报!D7``).

Pure: bytes in, bytes out; the time a template is made is passed in, and the same grids and time
give the same bytes.
"""

from __future__ import annotations

import io
import unicodedata
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from openpyxl import Workbook, load_workbook
from openpyxl.styles import Alignment, Font, PatternFill, Protection
from openpyxl.utils import get_column_letter
from openpyxl.workbook.protection import WorkbookProtection
from openpyxl.worksheet.worksheet import Worksheet
from openpyxl.writer.excel import ExcelWriter

from aggregator.numbers import NumberError, parse_decimal, to_text
from nodes.intake import (
    CST,
    EDITABLE,
    OUTLIER_RATIO,
    STATUS_ZH,
    CellInput,
    CellState,
    Grid,
    IntakeRefused,
    Problem,
    previous_period,
    same_period_last_year,
)

MiB = 1024 * 1024
MAX_BYTES = 20 * MiB
MAX_CELLS = 200_000
UNPACKED_RATIO = 5  # the zip's members may unpack to at most this many times max_bytes (a zip bomb does not)
MAX_MEMBERS = 10_000
ROW_MARGIN, COL_MARGIN = 200, 20  # how far beyond the template's rows and columns a stray value is still found

MARKER = "fedappraisal:intake:1"  # A3 of every data and comment sheet: this layout, version 1
TITLE_ROW, HEADER_ROW, KEY_ROW, FIRST_ROW = 1, 2, 3, 4
FIRST_COL = 3  # A: unit code, B: unit name, C…: one column per key
CODE_HEADER, NAME_HEADER = "单位代码", "单位名称"

GREY = PatternFill("solid", fgColor="D9D9D9")  # not your task
YELLOW = PatternFill("solid", fgColor="FFF2CC")  # in review: wait for the decision
HEAD = PatternFill("solid", fgColor="DDEBF7")
OPEN = Protection(locked=False)
SHUT = Protection(locked=True)
TEXT = "@"


def sheet_names(index: int, count: int) -> tuple[str, str, str]:
    """(data, comments, reference) sheet names of the ``index``-th of ``count`` grids."""
    n = "" if count == 1 else str(index + 1)
    return f"填报{n}", f"备注{n}", f"参考{n}"


INSTRUCTIONS = "说明"


def header_text(grid: Grid, key: str) -> str:
    col = grid.column(key)
    assert col is not None
    return f"{col.name}（{col.key}，{col.measure_unit}）" if col.measure_unit else f"{col.name}（{col.key}）"


def _identity(grid: Grid) -> str:
    return f"{grid.cycle}|{grid.period}|{grid.provider}"


def _deadline(due_at: int) -> str:
    """The due instant in China Standard Time; a deadline at midnight is the day before's 24:00."""
    if not due_at:
        return "未设截止时间 (no deadline set)"
    t = datetime.fromtimestamp(due_at + CST, UTC)
    if (t.hour, t.minute, t.second) == (0, 0, 0):
        day = datetime.fromtimestamp(due_at + CST - 1, UTC)
        return f"{day:%Y-%m-%d} 24:00（北京时间 UTC+8）"
    return f"{t:%Y-%m-%d %H:%M}（北京时间 UTC+8）"


def _width(text: str) -> int:
    """Display width: CJK (wide and full-width) characters take two columns."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _when(generated_at: int) -> datetime:
    return datetime.fromtimestamp(generated_at, UTC).replace(tzinfo=None)


# ------------------------------------------------------------------ template
def template(grids: Sequence[Grid], *, node_name: str, provider: str, generated_at: int) -> bytes:
    """The .xlsx a provider fills in: per grid a data sheet (填报), a comment sheet (备注) and a
    reference sheet (参考, last period's and last year's values), and one instructions sheet (说明)."""
    if not grids:
        raise ValueError("template needs at least one grid")
    wb = Workbook()
    first = wb.active
    assert first is not None
    wb.remove(first)
    for i, grid in enumerate(grids):
        data, notes, ref = sheet_names(i, len(grids))
        title = (f"{node_name} · {provider} · 报告期 {grid.period}（{grid.cycle} 年度）· 截止 {_deadline(grid.due_at)}"
                 f"{'' if grid.open else ' · 本期已截止，需绩效办解锁 (closed)'}")
        _entry_sheet(wb.create_sheet(data), grid, title, comments=False)
        _entry_sheet(wb.create_sheet(notes), grid, f"备注（选填）(comments, optional) · {title}", comments=True)
        _reference_sheet(wb.create_sheet(ref), grid, title)
    _instructions(wb.create_sheet(INSTRUCTIONS), grids, node_name, provider, generated_at)
    wb.active = 0
    wb.security = WorkbookProtection(lockStructure=True)  # sheets cannot be renamed, moved or deleted by a slip
    when = _when(generated_at)
    wb.properties.creator = node_name
    wb.properties.title = f"{provider} 数据填报模板"
    wb.properties.created = wb.properties.modified = when
    out = io.BytesIO()
    archive = _FixedTimeZip(out, when)
    ExcelWriter(wb, archive).save()  # not wb.save: that stamps the clock into the file
    return out.getvalue()


class _FixedTimeZip(zipfile.ZipFile):
    """A zip whose members all carry one given time, so a template's bytes depend on its inputs only."""

    def __init__(self, file: io.BytesIO, when: datetime) -> None:
        super().__init__(file, "w", zipfile.ZIP_DEFLATED)
        self._stamp = (when.year, when.month, when.day, when.hour, when.minute, when.second)

    def writestr(self, zinfo_or_arcname: str | zipfile.ZipInfo, data: str | bytes | Any,
                 compress_type: int | None = None, compresslevel: int | None = None) -> None:
        if isinstance(zinfo_or_arcname, str):
            zinfo_or_arcname = zipfile.ZipInfo(zinfo_or_arcname, date_time=self._stamp)
            zinfo_or_arcname.compress_type = zipfile.ZIP_DEFLATED
        super().writestr(zinfo_or_arcname, data, compress_type, compresslevel)

    def write(self, filename: Any, arcname: Any = None, compress_type: int | None = None,
              compresslevel: int | None = None) -> None:
        with open(filename, "rb") as f:
            self.writestr(str(arcname or filename), f.read())


def _protect(ws: Worksheet) -> None:
    ws.protection.sheet = True  # no password: protection guards against slips, not people
    ws.protection.formatColumns = False  # widening a column stays allowed
    ws.protection.selectLockedCells = False


def _title(ws: Worksheet, text: str, last_col: int) -> None:
    ws.cell(TITLE_ROW, 1, text).font = Font(bold=True, size=12)
    if last_col > 1:
        ws.merge_cells(start_row=TITLE_ROW, start_column=1, end_row=TITLE_ROW, end_column=last_col)


def _head(cell: Any) -> None:
    cell.font = Font(bold=True)
    cell.fill = HEAD
    cell.alignment = Alignment(horizontal="center", vertical="center", wrap_text=True)


def _entry_sheet(ws: Worksheet, grid: Grid, title: str, *, comments: bool) -> None:
    keys = [c.key for c in grid.columns]
    last = FIRST_COL + len(keys) - 1
    _title(ws, title, max(last, 2))
    for j, text in enumerate((CODE_HEADER, NAME_HEADER, *(header_text(grid, k) for k in keys)), start=1):
        _head(ws.cell(HEADER_ROW, j, text))
    ws.cell(KEY_ROW, 1, MARKER)
    ws.cell(KEY_ROW, 2, _identity(grid))
    for j, key in enumerate(keys, start=FIRST_COL):
        ws.cell(KEY_ROW, j, key)
    ws.row_dimensions[KEY_ROW].hidden = True
    ws.row_dimensions[HEADER_ROW].height = 48
    for r, row in enumerate(grid.rows, start=FIRST_ROW):
        ws.cell(r, 1, row.unit).number_format = TEXT
        ws.cell(r, 2, row.name)
        for j, key in enumerate(keys, start=FIRST_COL):
            state = grid.cells.get((row.unit, key))
            cell = ws.cell(r, j)
            cell.number_format = TEXT
            if state is None:
                cell.fill = GREY
                continue
            shown = state.comment if comments else state.value
            if shown:
                cell.value = shown
            if state.status in EDITABLE:
                cell.protection = OPEN
            else:
                cell.fill = YELLOW
    ws.column_dimensions["A"].width = max(12, *(_width(r.unit) + 2 for r in grid.rows)) if grid.rows else 12
    ws.column_dimensions["B"].width = min(40, max(12, *(_width(r.name) + 2 for r in grid.rows))) if grid.rows else 12
    for j, key in enumerate(keys, start=FIRST_COL):
        wide = 30 if comments else 16
        ws.column_dimensions[get_column_letter(j)].width = min(wide, max(12, _width(header_text(grid, key)) // 2 + 2))
    ws.freeze_panes = f"{get_column_letter(FIRST_COL)}{FIRST_ROW}"
    _protect(ws)


def _reference_sheet(ws: Worksheet, grid: Grid, title: str) -> None:
    before, last_year = previous_period(grid.period), same_period_last_year(grid.period)
    keys = [c.key for c in grid.columns]
    _title(ws, f"参考（只读）(reference, read-only) · {title}", max(2, 2 + 2 * len(keys)))
    for j, text in enumerate((CODE_HEADER, NAME_HEADER), start=1):
        _head(ws.cell(HEADER_ROW, j, text))
        _head(ws.cell(KEY_ROW, j))
        ws.merge_cells(start_row=HEADER_ROW, start_column=j, end_row=KEY_ROW, end_column=j)
    for n, key in enumerate(keys):
        j = FIRST_COL + 2 * n
        _head(ws.cell(HEADER_ROW, j, header_text(grid, key)))
        ws.merge_cells(start_row=HEADER_ROW, start_column=j, end_row=HEADER_ROW, end_column=j + 1)
        _head(ws.cell(KEY_ROW, j, f"上期 {before}"))
        _head(ws.cell(KEY_ROW, j + 1, f"去年同期 {last_year}"))
        ws.column_dimensions[get_column_letter(j)].width = ws.column_dimensions[get_column_letter(j + 1)].width = 14
    ws.row_dimensions[HEADER_ROW].height = 48
    for r, row in enumerate(grid.rows, start=FIRST_ROW):
        ws.cell(r, 1, row.unit).number_format = TEXT
        ws.cell(r, 2, row.name)
        for n, key in enumerate(keys):
            state = grid.cells.get((row.unit, key))
            for j, value in ((FIRST_COL + 2 * n, state.previous if state else ""),
                             (FIRST_COL + 2 * n + 1, state.last_year if state else "")):
                cell = ws.cell(r, j, value or None)
                cell.number_format = TEXT
                if state is None:
                    cell.fill = GREY
    ws.column_dimensions["A"].width = 14
    ws.column_dimensions["B"].width = min(40, max(12, *(_width(r.name) + 2 for r in grid.rows))) if grid.rows else 12
    ws.freeze_panes = f"{get_column_letter(FIRST_COL)}{FIRST_ROW}"
    _protect(ws)


def _instructions(ws: Worksheet, grids: Sequence[Grid], node_name: str, provider: str, generated_at: int) -> None:
    count = len(grids)
    data0, notes0, ref0 = sheet_names(0, count)
    lines: list[tuple[str, bool]] = [
        (f"{node_name} · {provider} · 数据填报说明 (how to fill in this file)", True),
        (f"模板生成时间 (generated) {datetime.fromtimestamp(generated_at + CST, UTC):%Y-%m-%d %H:%M}（北京时间）", False),
        ("", False),
        ("截止时间 (deadline)", True),
        *((f"{sheet_names(i, count)[0]}：报告期 {g.period}，截止 {_deadline(g.due_at)}", False) for i, g in enumerate(grids)),
        ("", False),
        ("怎样填 (how)", True),
        (f"1. 在「{data0}」工作表的白色单元格中填写数值；一行一个单位，一列一个指标。"
         "(Type each value into a white cell of the data sheet: one row per unit, one column per indicator.)", False),
        ("2. 灰色单元格不是您的填报任务，已锁定；黄色单元格正在审核中，审核完成或退回前不能修改。"
         "(Grey cells are not your tasks; yellow cells are in review and cannot be changed until decided.)", False),
        (f"3. 需要说明的，在「{notes0}」工作表同一位置填写备注。"
         f"(Comments go in the same cell of the comment sheet.) 「{ref0}」列出上期和去年同期的数值供对照 "
         "(the reference sheet shows last period's and last year's values).", False),
        ("4. 保存为 .xlsx 后上传；请勿改动工作表名称、表头、单位代码，也不要插入或删除行列。"
         "(Save as .xlsx and upload it; do not rename sheets, change headers or unit codes, or insert/delete rows "
         "or columns.)", False),
        ("5. 上传时全部检查；有任何错误则整份文件不保存，错误信息会指出单元格（如 填报!D7）及改法。"
         "(The whole file is checked; with any problem nothing is saved, and each problem names its cell and the fix.)",
         False),
        ("6. 清空单元格不会删除已保存的数值；要删除请在填报页面操作。"
         "(An emptied cell does not delete a saved value: use the entry page for that.)", False),
        ("", False),
        ("规则 (rules)", True),
        ("· 数字格式：直接写数字，如 1234.5、-3、0.0001；不要千位分隔符、单位或百分号；小数点用半角“.”。"
         "(Plain numbers: no thousands separators, units or % signs; the decimal point is a half-width '.')", False),
        ("· 全角数字（如 １２３４）可以识别。(Full-width digits are accepted.)", False),
        ("· 单元格为文本格式，输入什么就保存什么，不会四舍五入；粘贴时请“粘贴为数值”，公式和日期不被接受。"
         "(Cells are Text, so what you type is kept exactly; paste values only: formulas and dates are refused.)", False),
        (f"· 与上期或去年同期相比变化超过 {int(OUTLIER_RATIO * 100)}% 的数值，须在备注中说明原因。"
         f"(A change of more than {int(OUTLIER_RATIO * 100)}% against last period or last year needs a comment.)", False),
        ("· 各指标的取值范围见下表。(The bounds of each column are below.)", False),
        ("", False),
    ]
    for text, bold in lines:
        ws.append([text])
        if bold:
            ws.cell(ws.max_row, 1).font = Font(bold=True)
    ws.append(["示例 (example)"])
    ws.cell(ws.max_row, 1).font = Font(bold=True)
    g0 = grids[0]
    example_key = g0.columns[0].key if g0.columns else "A1"
    head = [CODE_HEADER, NAME_HEADER, header_text(g0, example_key) if g0.columns else "指标（A1，%）"]
    row = [g0.rows[0].unit if g0.rows else "510104017", g0.rows[0].name if g0.rows else "某某街道", "1234.5"]
    ws.append(head)
    for j in range(1, 4):
        _head(ws.cell(ws.max_row, j))
    ws.append(row)
    ws.append([])
    ws.append(["取值范围 (bounds)"])
    ws.cell(ws.max_row, 1).font = Font(bold=True)
    ws.append(["工作表 (sheet)", "指标编码 (key)", "指标名称 (name)", "计量单位 (unit)", "下限 (min)", "上限 (max)"])
    for j in range(1, 7):
        _head(ws.cell(ws.max_row, j))
    for i, g in enumerate(grids):
        for c in g.columns:
            ws.append([sheet_names(i, count)[0], c.key, c.name, c.measure_unit,
                       "" if c.minimum is None else to_text(c.minimum), "" if c.maximum is None else to_text(c.maximum)])
    ws.append([])
    ws.append(["状态 (statuses)"])
    ws.cell(ws.max_row, 1).font = Font(bold=True)
    for status, zh in STATUS_ZH.items():
        ws.append([f"· {zh}{'' if status in EDITABLE else '（锁定 locked）'}"])
    for row_cells in ws.iter_rows():
        for cell in row_cells:
            cell.number_format = TEXT
    ws.column_dimensions["A"].width = 60
    for letter, width in (("B", 24), ("C", 30), ("D", 14), ("E", 12), ("F", 12)):
        ws.column_dimensions[letter].width = width
    for r in range(1, len(lines) + 1):
        ws.cell(r, 1).alignment = Alignment(wrap_text=True, vertical="top")
    _protect(ws)


# ---------------------------------------------------------------------- read
def read(data: bytes, grids: Sequence[Grid], *, filename: str, max_bytes: int = MAX_BYTES,
         max_cells: int = MAX_CELLS) -> list[CellInput]:
    """The cells an uploaded template fills in, grid by grid, each with its comment and ``where``
    (``填报!D7``). Raises ``IntakeRefused`` naming every structural problem; values are checked by
    ``nodes.intake.check``."""
    return [c for part in read_per_grid(data, grids, filename=filename, max_bytes=max_bytes, max_cells=max_cells)
            for c in part]


def read_per_grid(data: bytes, grids: Sequence[Grid], *, filename: str, max_bytes: int = MAX_BYTES,
                  max_cells: int = MAX_CELLS) -> list[list[CellInput]]:
    """As ``read``, one list per grid (in the order of ``grids``), for a caller that checks each grid."""
    problems: list[Problem] = []
    if len(data) > max_bytes:
        raise IntakeRefused([Problem("", f"文件过大（{_size(len(data))}，上限 {_size(max_bytes)}）："
                                         "请只保留模板中的工作表后重新保存 (file too big)", "intake.too_big")], filename)
    _check_zip(data, max_bytes, filename)
    with warnings.catch_warnings():  # openpyxl warns about extensions it does not read: not the uploader's problem
        warnings.simplefilter("ignore")
        try:
            wb = load_workbook(io.BytesIO(data), read_only=True, data_only=False, keep_links=False)
        except Exception:  # openpyxl raises many kinds for a file that is not a workbook
            raise IntakeRefused([_not_xlsx()], filename) from None
        try:
            budget = _Budget(max_cells)
            out = [_read_grid(wb, grid, i, len(grids), problems, budget) for i, grid in enumerate(grids)]
        except _Full:
            out = []
        except Exception:  # a part openpyxl cannot parse: the file is damaged
            raise IntakeRefused([Problem("", "文件内容已损坏，无法读取：请重新下载模板填写 (the file is damaged)",
                                         "intake.not_xlsx")], filename) from None
        finally:
            wb.close()
    if problems:
        raise IntakeRefused(problems, filename)
    return out


def _size(n: int) -> str:
    return f"{n / MiB:.1f} MiB" if n >= MiB else f"{n / 1024:.1f} KiB"


def _not_xlsx() -> Problem:
    return Problem("", "不是 Excel .xlsx 文件：请用本系统下载的模板填写，并另存为 .xlsx（不是 .xls、.csv、.et，不要设打开密码） "
                       "(not an Excel .xlsx file)", "intake.not_xlsx")


def _check_zip(data: bytes, max_bytes: int, filename: str) -> None:
    """Before any parsing: a zip, whose members unpack to a bounded size (the central directory's
    sizes; Python's zipfile never unpacks a member beyond its stated size)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            infos = z.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError):
        raise IntakeRefused([_not_xlsx()], filename) from None
    limit = UNPACKED_RATIO * max_bytes
    unpacked = sum(i.file_size for i in infos)
    if len(infos) > MAX_MEMBERS or unpacked > limit:
        raise IntakeRefused([Problem("", f"文件解压后过大（{_size(unpacked)}，上限 {_size(limit)}）或内容过多："
                                         "请用本系统下载的模板填写 (the file unpacks too big: a zip bomb?)",
                                     "intake.too_big")], filename)


class _Full(Exception):
    """More cells than allowed: stop reading."""


@dataclass
class _Budget:
    left: int

    def take(self, where: str, problems: list[Problem]) -> None:
        self.left -= 1
        if self.left < 0:
            problems.append(Problem(where, "文件中填写的单元格过多：请只保留模板中的工作表和单位 (too many filled cells)",
                                    "intake.too_many_cells"))
            raise _Full


@dataclass(frozen=True)
class _Typed:
    where: str
    text: str  # "" when ``problem``
    problem: str = ""


def _text_of(cell: Any, where: str) -> _Typed | None:
    """A cell's content as text, None when empty. Numbers someone pasted: an int as is, a float by its
    shortest round-trip repr (0.1 stays 0.1); a formula, a date, a boolean or an error value is a problem."""
    value = cell.value
    if value is None:
        return None
    kind = cell.data_type
    if kind == "f":
        return _Typed(where, "", f"公式 {str(value)[:40]} 不是数值：请“粘贴为数值”或直接输入数字 "
                                 "(a formula is not a value: paste values only)")
    if kind == "d" or isinstance(value, datetime):
        return _Typed(where, "", "日期 不是数值：请把单元格设为文本后输入数字 (a date is not a value: type the number)")
    if kind == "b" or isinstance(value, bool):
        return _Typed(where, "", "真/假值 不是数值 (a boolean is not a value)")
    if kind == "e":
        return _Typed(where, "", f"错误值 {str(value)[:16]} 不是数值 (an error value is not a value)")
    if isinstance(value, float):
        return _Typed(where, repr(value))
    if isinstance(value, int):
        return _Typed(where, str(value))
    text = str(value)
    return _Typed(where, text) if text.strip() else None


def _rows(ws: Any, grid: Grid) -> Iterator[tuple[int, tuple[Any, ...]]]:
    """The sheet's rows, within the template's area and a margin around it. The bounds are given
    (not the file's stated dimension, which may lie) because openpyxl pads every row to the widest:
    rows with a cell in column XFD would otherwise cost 16,384 cells each."""
    rows = ws.iter_rows(min_row=1, max_row=KEY_ROW + len(grid.rows) + ROW_MARGIN,
                        min_col=1, max_col=FIRST_COL + len(grid.columns) - 1 + COL_MARGIN)
    yield from enumerate(rows, start=1)


def _read_grid(wb: Any, grid: Grid, index: int, count: int, problems: list[Problem],
               budget: _Budget) -> list[CellInput]:
    data_name, notes_name, _ = sheet_names(index, count)
    if data_name not in wb.sheetnames:
        there = "、".join(s for s in wb.sheetnames[:8]) or "无"
        problems.append(Problem(data_name, f"缺少工作表「{data_name}」（文件中有：{there}）：工作表被改名或删除，"
                                           f"请改回「{data_name}」或重新下载模板 (the data sheet is missing or renamed)",
                                "intake.missing_sheet"))
        return []
    values = _read_sheet(wb[data_name], data_name, grid, problems, budget)
    notes: dict[tuple[str, str], _Typed] = {}
    if notes_name in wb.sheetnames:  # comments are optional: a file without the sheet has none
        notes = _read_sheet(wb[notes_name], notes_name, grid, problems, budget)
    out: list[CellInput] = []
    for (unit, key), typed in values.items():
        note = notes.get((unit, key))
        comment = note.text if note is not None and not note.problem else ""
        state = grid.cells.get((unit, key), CellState())
        if _unchanged(typed.text, comment, state):
            continue
        out.append(CellInput(unit, key, typed.text, comment, typed.where))
    for (unit, key), note in notes.items():
        state = grid.cells.get((unit, key), CellState())
        if (unit, key) not in values and not note.problem and note.text.strip() != state.comment.strip():
            problems.append(Problem(note.where, f"有备注但「{data_name}!{note.where.partition('!')[2]}」没有数值："
                                                "请填写数值，或删除备注 (a comment without a value)",
                                    "intake.comment_without_value"))
    return out


def _unchanged(text: str, comment: str, state: CellState) -> bool:
    """The value and comment the template was made with, in a cell under review or approved: not
    an input, so uploading the downloaded template again reopens nothing that was reviewed."""
    if state.status in EDITABLE and state.status != "approved":
        return False
    if comment.strip() != state.comment.strip() or not state.value:
        return False
    try:
        return parse_decimal(text.strip(), "") == parse_decimal(state.value, "")
    except NumberError:
        return text.strip() == state.value


def _read_sheet(ws: Any, name: str, grid: Grid, problems: list[Problem],
                budget: _Budget) -> dict[tuple[str, str], _Typed]:
    keys = [c.key for c in grid.columns]
    units = {r.unit for r in grid.rows}
    seen: dict[str, int] = {}
    found: dict[tuple[str, str], _Typed] = {}
    header = [CODE_HEADER, NAME_HEADER, *(header_text(grid, k) for k in keys)]
    checked_rows: set[int] = set()
    for r, cells in _rows(ws, grid):
        if r == TITLE_ROW:
            continue
        if r == HEADER_ROW:
            checked_rows.add(r)
            _header(cells, header, name, r, problems)
            continue
        if r == KEY_ROW:
            checked_rows.add(r)
            _key_row(cells, grid, keys, name, problems)
            continue
        typed_cells: list[tuple[int, _Typed]] = []
        for j, cell in enumerate(cells, start=1):
            if j <= 2:
                continue
            where = f"{name}!{get_column_letter(j)}{r}"
            typed = _text_of(cell, where)
            if typed is not None:
                budget.take(where, problems)
                typed_cells.append((j, typed))
        code = _code(cells[0] if cells else None)
        if not typed_cells:
            seen.setdefault(code, r)  # a row without values still holds its unit: a later row with it is a duplicate
            continue
        at = f"{name}!A{r}"
        if not code:
            problems.append(Problem(at, "此行有数值但没有单位代码：请勿改动单位代码列 (a row with values but no unit code)",
                                    "intake.unknown_unit"))
            continue
        if code not in units:
            problems.append(Problem(at, f"单位代码 {code[:20]} 不在您本期的填报任务中：请勿改动单位代码，或重新下载模板 "
                                        "(unit not in your tasks)", "intake.unknown_unit"))
            continue
        if code in seen:
            problems.append(Problem(at, f"单位代码 {code[:20]} 重复（已在第 {seen[code]} 行）：每个单位只填一行 "
                                        "(the unit appears twice)", "intake.duplicate_unit"))
            continue
        seen[code] = r
        for j, typed in typed_cells:
            k = j - FIRST_COL
            key = keys[k] if 0 <= k < len(keys) else ""
            if not key or (code, key) not in grid.cells:
                what = "数值" if name.startswith("填报") else "备注"
                problems.append(Problem(typed.where, f"此单元格不是您的填报任务（灰色），请删除其中的{what} "
                                                     "(not your task: leave the cell empty)", "intake.not_a_task"))
                continue
            if typed.problem:
                problems.append(Problem(typed.where, typed.problem, "intake.not_a_value"))
                continue
            found[(code, key)] = typed
    if HEADER_ROW not in checked_rows:
        problems.append(Problem(f"{name}!A{HEADER_ROW}", "缺少表头：请用本系统下载的模板填写 (the header row is missing)",
                                "intake.header_changed"))
    if KEY_ROW not in checked_rows:
        problems.append(Problem(f"{name}!A{KEY_ROW}", "缺少模板的隐藏键行：请用本系统下载的模板填写 "
                                                      "(the hidden key row is missing: use the downloaded template)",
                                "intake.key_changed"))
    return found


def _code(cell: Any) -> str:
    if cell is None or cell.value is None:
        return ""
    value = cell.value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _cell_text(cell: Any) -> str:
    value = getattr(cell, "value", None)
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _header(cells: tuple[Any, ...], expected: Sequence[str], name: str, r: int, problems: list[Problem]) -> None:
    width = max(len(cells), len(expected))
    for j in range(1, width + 1):
        got = _cell_text(cells[j - 1]) if j <= len(cells) else ""
        want = expected[j - 1] if j <= len(expected) else ""
        if got != want:
            where = f"{name}!{get_column_letter(j)}{r}"
            if want:
                msg = f"表头被改为「{got[:40]}」，应为「{want}」：请改回，或重新下载模板 (header changed)"
            else:
                msg = f"多出的列「{got[:40]}」：请勿插入列，或重新下载模板 (a column was added)"
            problems.append(Problem(where, msg, "intake.header_changed"))


def _key_row(cells: tuple[Any, ...], grid: Grid, keys: list[str], name: str, problems: list[Problem]) -> None:
    marker = _cell_text(cells[0]) if cells else ""
    if marker != MARKER:
        problems.append(Problem(f"{name}!A{KEY_ROW}", "缺少模板的隐藏键行或已被改动：请用本系统下载的模板填写 "
                                                      "(the hidden key row is missing or changed)", "intake.key_changed"))
        return
    identity = _cell_text(cells[1]) if len(cells) > 1 else ""
    if identity != _identity(grid):
        cycle, period, provider = ([*identity.split("|"), "", "", ""])[:3]
        problems.append(Problem(f"{name}!B{KEY_ROW}",
                                f"这是 {provider or '?'} {cycle or '?'} 年度 {period or '?'} 的模板，不是本次的 "
                                f"{grid.provider} {grid.cycle} 年度 {grid.period}：请下载本期模板 "
                                "(a template for another period or provider)", "intake.wrong_template"))
    tail = [_cell_text(c) for c in cells[FIRST_COL - 1:]]
    for n in range(max(len(tail), len(keys))):
        got = tail[n] if n < len(tail) else ""
        want = keys[n] if n < len(keys) else ""
        if got != want:
            problems.append(Problem(f"{name}!{get_column_letter(FIRST_COL + n)}{KEY_ROW}",
                                    f"隐藏键行被改为「{got[:32]}」，应为「{want}」：请重新下载模板 (a key changed)",
                                    "intake.key_changed"))


