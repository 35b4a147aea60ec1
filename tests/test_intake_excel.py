"""nodes/intake_excel.py: the value template a data provider downloads (protected, Text cells, keys
in a hidden row, non-task cells grey and locked, comments, reference and instructions sheets) and
the upload read back into exact ``CellInput``s, which ``nodes.intake.check`` then names by cell;
every structural problem named by sheet!cell, nothing returned; speed; a zip bomb."""

from __future__ import annotations

import io
import time
import zipfile
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

import pytest
from openpyxl import Workbook, load_workbook
from openpyxl.workbook.workbook import Workbook as WorkbookType

from aggregator.errors import BadInput
from nodes import intake_excel as ix
from nodes.intake import CellInput, CellState, Column, Grid, IntakeRefused, Row, check, window_of

GENERATED = 1_745_000_000
OPENS, DUE = window_of("2025-Q1")  # due 2025-04-21 00:00 CST: shown as 2025-04-20 24:00
U1, U2, U3, U4 = "510104017", "510104018", "510104019", "510104020"
COLUMNS = (
    Column("A1", "A1", "城镇新增就业人数", "人", Decimal(0)),  # C
    Column("A2", "A2", "空气质量优良天数比例", "%", Decimal(0), Decimal(100)),  # D
    Column("A3.num", "A3", "义务教育巩固率（分子）", "", Decimal(0)),  # E
)
ROWS = (Row(U1, "玉林街道"), Row(U2, "华兴街道"), Row(U3, "浆洗街街道"), Row(U4, "火车南站街道"))  # rows 4..7
CELLS = {
    (U1, "A1"): CellState(previous="100", last_year="90"),
    (U1, "A2"): CellState(value="55", comment="新监测点", status="draft"),
    (U1, "A3.num"): CellState(),
    (U2, "A1"): CellState(value="20", status="approved", previous="19"),
    (U2, "A2"): CellState(value="88.5", status="submitted"),  # in review: yellow, locked
    (U2, "A3.num"): CellState(),
    (U3, "A1"): CellState(),
    (U3, "A2"): CellState(),  # (U3, A3.num) is not this provider's task
    (U4, "A1"): CellState(),
    (U4, "A2"): CellState(),
    (U4, "A3.num"): CellState(),
}


def grid(period: str = "2025-Q1", provider: str = "510104-tjj", cells: dict[tuple[str, str], CellState] | None = None,
         rows: tuple[Row, ...] = ROWS, columns: tuple[Column, ...] = COLUMNS) -> Grid:
    return Grid("2025", period, provider, rows, columns, CELLS if cells is None else cells, OPENS, DUE)


def make(*grids: Grid) -> bytes:
    return ix.template(grids or (grid(),), node_name="成都市武侯区", provider="区统计局", generated_at=GENERATED)


def edited(change: Callable[[WorkbookType], None], *grids: Grid) -> bytes:
    """The template opened as a person's Excel would, changed, saved."""
    wb = load_workbook(io.BytesIO(make(*grids)))
    change(wb)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def refused(data: bytes, *grids: Grid, **kw: int) -> list[tuple[str, str]]:
    with pytest.raises(IntakeRefused) as exc:
        ix.read(data, grids or (grid(),), filename="上传.xlsx", **kw)
    assert exc.value.message.startswith("上传.xlsx: ")
    return [(p.where, p.code) for p in exc.value.problems]


# ------------------------------------------------------------------ template
def test_template_is_protected_text_keyed_and_greys_what_is_not_a_task() -> None:
    wb = load_workbook(io.BytesIO(make()))
    assert wb.sheetnames == ["填报", "备注", "参考", "说明"]
    assert wb.security is not None and wb.security.lockStructure
    for ws in wb.worksheets:
        assert ws.protection.sheet, ws.title
        assert not ws.protection.password, ws.title  # no password needed to type into unlocked cells
    ws = wb["填报"]
    title = str(ws["A1"].value)
    assert all(part in title for part in ("成都市武侯区", "区统计局", "2025-Q1", "2025-04-20 24:00"))
    assert [c.value for c in ws[2]] == ["单位代码", "单位名称", "城镇新增就业人数（A1，人）", "空气质量优良天数比例（A2，%）",
                                        "义务教育巩固率（分子）（A3.num）"]
    assert [c.value for c in ws[3]][2:] == ["A1", "A2", "A3.num"]
    assert ws.row_dimensions[3].hidden
    assert ws.freeze_panes == "C4"
    assert [ws.cell(r, 1).value for r in range(4, 8)] == [U1, U2, U3, U4]
    for r in range(1, 4):  # title, header, keys: locked
        assert all(c.protection.locked for c in ws[r])
    assert all(ws.cell(r, j).protection.locked for r in range(4, 8) for j in (1, 2))  # codes and names
    for r in range(4, 8):
        for j in range(3, 6):
            cell = ws.cell(r, j)
            assert cell.number_format == "@", cell.coordinate
    assert not ws["C4"].protection.locked and ws["C4"].fill.fgColor.rgb != "00D9D9D9"
    assert ws["E6"].protection.locked and ws["E6"].fill.fgColor.rgb == "00D9D9D9"  # (U3, A3.num): not a task
    assert ws["D5"].protection.locked and ws["D5"].fill.fgColor.rgb == "00FFF2CC"  # in review
    assert not ws["C5"].protection.locked  # approved: may be corrected
    assert (ws["D4"].value, ws["C5"].value, ws["D5"].value, ws["C4"].value) == ("55", "20", "88.5", None)
    assert all((ws.column_dimensions[x].width or 0) >= 12 for x in "ABCDE")
    notes = wb["备注"]
    assert notes["D4"].value == "新监测点" and not notes["D4"].protection.locked and notes["D4"].number_format == "@"
    assert notes["E6"].protection.locked and [c.value for c in notes[3]][2:] == ["A1", "A2", "A3.num"]
    ref = wb["参考"]
    assert (ref["C3"].value, ref["D3"].value) == ("上期 2024-Q4", "去年同期 2024-Q1")
    assert (ref["C4"].value, ref["D4"].value, ref["C5"].value) == ("100", "90", "19")
    text = "\n".join(str(c.value) for row in wb["说明"].iter_rows() for c in row if c.value is not None)
    for needed in ("2025-04-20 24:00", "50%", "全角数字", "Full-width digits", "粘贴为数值", "示例", "1234.5",
                   "空气质量优良天数比例", "下限", "上限", "(how)"):
        assert needed in text, needed
    bounds = [[c.value for c in row] for row in wb["说明"].iter_rows() if row[1].value == "A2"]
    assert bounds == [["填报", "A2", "空气质量优良天数比例", "%", "0", "100"]]


def test_template_bytes_depend_on_their_inputs_only() -> None:
    assert make() == make()
    assert ix.template([grid()], node_name="成都市武侯区", provider="区统计局", generated_at=GENERATED + 60) != make()


def test_several_grids_get_numbered_sheets_and_read_back_apart() -> None:
    g1, g2 = grid(), grid(period="2025-M03", rows=(Row(U1, "玉林街道"),), columns=COLUMNS[:1], cells={(U1, "A1"): CellState()})
    names = load_workbook(io.BytesIO(make(g1, g2))).sheetnames
    assert names == ["填报1", "备注1", "参考1", "填报2", "备注2", "参考2", "说明"]
    assert ix.sheet_names(1, 2) == ("填报2", "备注2", "参考2")

    def fill(wb: WorkbookType) -> None:
        wb["填报1"]["C4"] = "7"
        wb["填报2"]["C4"] = "8"

    per = ix.read_per_grid(edited(fill, g1, g2), [g1, g2], filename="x.xlsx")
    assert [[(c.unit, c.key, c.value, c.where) for c in part] for part in per] == [
        [(U1, "A1", "7", "填报1!C4"), (U1, "A2", "55", "填报1!D4")], [(U1, "A1", "8", "填报2!C4")]]
    assert ix.read(edited(fill, g1, g2), [g1, g2], filename="x.xlsx") == [*per[0], *per[1]]


# ---------------------------------------------------------------------- read
def test_the_downloaded_template_uploaded_again_reopens_nothing_in_review() -> None:
    """Only the draft comes back; the approved and the submitted values, unchanged, are not inputs."""
    assert ix.read(make(), [grid()], filename="x.xlsx") == [CellInput(U1, "A2", "55", "新监测点", "填报!D4")]


def test_text_numbers_and_full_width_digits_come_back_exactly_with_their_comments() -> None:
    def fill(wb: WorkbookType) -> None:
        ws, notes = wb["填报"], wb["备注"]
        ws["C4"] = "  0120.50 "  # text: as typed
        ws["E4"] = 0.1  # pasted numbers
        ws["C5"] = 25
        ws["E5"] = 1e-07
        ws["C6"] = "１２３"  # full-width digits
        ws["D6"] = 2.675  # str(Decimal(2.675)) would be 2.67499999999999982236431605997495353221893310546875
        ws["C7"] = "   "  # blank: not an input
        notes["C4"] = "新增企业"
        notes["D4"] = None  # the draft's comment removed

    got = ix.read(edited(fill), [grid()], filename="x.xlsx")
    assert got == [
        CellInput(U1, "A1", "  0120.50 ", "新增企业", "填报!C4"),
        CellInput(U1, "A2", "55", "", "填报!D4"),
        CellInput(U1, "A3.num", "0.1", "", "填报!E4"),
        CellInput(U2, "A1", "25", "", "填报!C5"),
        CellInput(U2, "A3.num", "1e-07", "", "填报!E5"),
        CellInput(U3, "A1", "１２３", "", "填报!C6"),
        CellInput(U3, "A2", "2.675", "", "填报!D6"),
    ]
    taken, problems = check(grid(), got)
    assert problems == []
    assert [(t.unit, t.key, t.value, t.warning != "") for t in taken] == [
        (U1, "A1", "120.5", False), (U1, "A2", "55", False), (U1, "A3.num", "0.1", False), (U2, "A1", "25", False),
        (U2, "A3.num", "0.0000001", False), (U3, "A1", "123", False), (U3, "A2", "2.675", False)]


def test_check_names_a_bad_cell_by_its_sheet_and_cell() -> None:
    def fill(wb: WorkbookType) -> None:
        wb["填报"]["D7"] = "150"  # (U4, A2): above 100 %
        wb["填报"]["C4"] = "200"  # twice last period's 100, with no comment

    got = ix.read(edited(fill), [grid()], filename="x.xlsx")
    taken, problems = check(grid(), got)
    assert taken == []
    assert [(p.where, p.code) for p in problems] == [("填报!C4", "intake.outlier_needs_comment"),
                                                    ("填报!D7", "intake.above_maximum")]

    def explained(wb: WorkbookType) -> None:
        wb["填报"]["C4"] = "200"
        wb["备注"]["C4"] = "新开园区"

    taken, problems = check(grid(), ix.read(edited(explained), [grid()], filename="x.xlsx"))
    assert problems == [] and taken[0].comment == "新开园区" and "100%" in taken[0].warning


def test_a_changed_value_in_review_goes_to_check_which_refuses_it() -> None:
    def fill(wb: WorkbookType) -> None:
        wb["填报"]["D5"] = "90"

    got = ix.read(edited(fill), [grid()], filename="x.xlsx")
    assert CellInput(U2, "A2", "90", "", "填报!D5") in got
    assert [(p.where, p.code) for p in check(grid(), got)[1]] == [("填报!D5", "intake.in_review")]


# ------------------------------------------------------------- structural problems
def test_not_an_xlsx_is_named() -> None:
    other_zip = io.BytesIO()
    with zipfile.ZipFile(other_zip, "w") as z:
        z.writestr("word/document.xml", "<w/>")
    for data in (b"plain text", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600), other_zip.getvalue(), b""):
        with pytest.raises(IntakeRefused) as exc:
            ix.read(data, [grid()], filename="a.xls")
        assert [(p.where, p.code) for p in exc.value.problems] == [("", "intake.not_xlsx")]
        assert "不是 Excel .xlsx 文件" in exc.value.message
        assert isinstance(exc.value, BadInput) and exc.value.code == "intake.not_xlsx"


def test_too_big_is_refused_before_parsing() -> None:
    assert refused(b"x" * 2000, max_bytes=1000) == [("", "intake.too_big")]


def test_a_zip_bomb_is_refused_quickly() -> None:
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z, z.open("xl/sharedStrings.xml", "w", force_zip64=True) as f:
        zeros = bytes(1 << 20)
        for _ in range(64):  # 64 MiB of nothing, some 64 KiB packed
            f.write(zeros)
    data = bomb.getvalue()
    assert len(data) < 200_000
    started = time.perf_counter()
    assert refused(data, max_bytes=2 * ix.MiB) == [("", "intake.too_big")]  # may unpack to 5 × 2 MiB
    assert time.perf_counter() - started < 0.5


def test_a_missing_or_renamed_data_sheet_is_named() -> None:
    def rename(wb: WorkbookType) -> None:
        wb["填报"].title = "Sheet1"

    with pytest.raises(IntakeRefused) as exc:
        ix.read(edited(rename), [grid()], filename="x.xlsx")
    assert [(p.where, p.code) for p in exc.value.problems] == [("填报", "intake.missing_sheet")]
    assert "Sheet1" in exc.value.message and "请改回「填报」" in exc.value.message


def test_a_changed_header_or_key_is_named() -> None:
    def header(wb: WorkbookType) -> None:
        wb["填报"]["D2"] = "优良天数"

    def key(wb: WorkbookType) -> None:
        wb["填报"]["D3"] = "A9"

    def added(wb: WorkbookType) -> None:
        wb["备注"]["F2"] = "说明"

    def marker(wb: WorkbookType) -> None:
        wb["填报"]["A3"] = None

    assert refused(edited(header)) == [("填报!D2", "intake.header_changed")]
    assert refused(edited(key)) == [("填报!D3", "intake.key_changed")]
    assert refused(edited(added)) == [("备注!F2", "intake.header_changed")]
    assert refused(edited(marker)) == [("填报!A3", "intake.key_changed")]


def test_a_template_of_another_period_is_named() -> None:
    assert refused(make(), grid(period="2025-Q2")) == [("填报!B3", "intake.wrong_template"),
                                                     ("备注!B3", "intake.wrong_template")]


def test_unknown_and_duplicated_unit_rows_are_named() -> None:
    def unknown(wb: WorkbookType) -> None:
        wb["填报"]["A6"] = "999999999"
        wb["填报"]["C6"] = "5"

    def twice(wb: WorkbookType) -> None:
        wb["填报"]["A7"] = U3
        wb["填报"]["C7"] = "5"

    def nameless(wb: WorkbookType) -> None:
        wb["填报"]["C9"] = "5"

    assert refused(edited(unknown)) == [("填报!A6", "intake.unknown_unit")]
    assert refused(edited(twice)) == [("填报!A7", "intake.duplicate_unit")]
    assert refused(edited(nameless)) == [("填报!A9", "intake.unknown_unit")]


def test_values_and_comments_outside_the_tasks_are_named() -> None:
    def fill(wb: WorkbookType) -> None:
        wb["填报"]["E6"] = "5"  # (U3, A3.num): grey
        wb["填报"]["G4"] = "1"  # beyond the columns
        wb["备注"]["E6"] = "说明"
        wb["备注"]["C7"] = "只有备注"  # (U4, A1) has no value

    assert refused(edited(fill)) == [("填报!G4", "intake.not_a_task"), ("填报!E6", "intake.not_a_task"),
                                     ("备注!E6", "intake.not_a_task"), ("备注!C7", "intake.comment_without_value")]


def test_formulas_dates_and_booleans_are_not_values() -> None:
    def fill(wb: WorkbookType) -> None:
        wb["填报"]["C6"] = "=1+1"
        wb["填报"]["D6"] = datetime(2025, 3, 1)
        wb["填报"]["C7"] = True

    with pytest.raises(IntakeRefused) as exc:
        ix.read(edited(fill), [grid()], filename="x.xlsx")
    assert [(p.where, p.code) for p in exc.value.problems] == [
        ("填报!C6", "intake.not_a_value"), ("填报!D6", "intake.not_a_value"), ("填报!C7", "intake.not_a_value")]
    assert "公式" in exc.value.problems[0].message and "日期" in exc.value.problems[1].message


def test_more_cells_than_allowed_stops_the_reading() -> None:
    def fill(wb: WorkbookType) -> None:
        for cell in ("C4", "E4", "C6", "D6"):
            wb["填报"][cell] = "1"

    assert refused(edited(fill), max_cells=5) == [("填报!C6", "intake.too_many_cells")]  # C4, D4, E4, C5, D5 before it


def test_every_problem_of_a_file_is_named_at_once() -> None:
    def fill(wb: WorkbookType) -> None:
        wb["填报"]["C2"] = "人数"
        wb["填报"]["E6"] = "5"
        wb["填报"]["C7"] = "=A1"
        wb["备注"]["A5"] = "123"
        wb["备注"]["C5"] = "x"

    with pytest.raises(IntakeRefused) as exc:
        ix.read(edited(fill), [grid()], filename="x.xlsx")
    assert [(p.where, p.code) for p in exc.value.problems] == [
        ("填报!C2", "intake.header_changed"), ("填报!E6", "intake.not_a_task"), ("填报!C7", "intake.not_a_value"),
        ("备注!A5", "intake.unknown_unit")]
    assert exc.value.code == "intake.refused" and "4 处错误" in exc.value.message


def test_a_workbook_not_made_from_the_template_is_named() -> None:
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "填报"
    ws.append(["单位代码", "单位名称", "A1"])
    out = io.BytesIO()
    wb.save(out)
    assert refused(out.getvalue()) == [("填报!A2", "intake.header_changed"), ("填报!A3", "intake.key_changed")]


# ---------------------------------------------------------------------- speed
def test_three_thousand_cells_read_in_well_under_a_second() -> None:
    columns = tuple(Column(f"B{j:02d}", f"B{j:02d}", f"指标名称第{j}项", "万元", Decimal(0)) for j in range(30))
    rows = tuple(Row(f"5101040{i:02d}", f"第{i}街道") for i in range(100))
    big = grid(rows=rows, columns=columns, cells={(r.unit, c.key): CellState() for r in rows for c in columns})
    started = time.perf_counter()
    made = make(big)
    made_in = time.perf_counter() - started
    wb = load_workbook(io.BytesIO(made))
    for r in range(4, 104):
        for j in range(3, 33):
            wb["填报"].cell(r, j).value = f"{r * 1000 + j}.25" if j % 2 else r * j + 0.5
    out = io.BytesIO()
    wb.save(out)
    started = time.perf_counter()
    got = ix.read(out.getvalue(), [big], filename="x.xlsx")
    read_in = time.perf_counter() - started
    print(f"template (3,000 cells) {made_in * 1000:.0f} ms; read {len(got)} cells {read_in * 1000:.0f} ms")
    assert len(got) == 3000 and got[-1] == CellInput("510104099", "B29", "3296.5", "", "填报!AF103")
    assert read_in < 1.5


def test_cells_far_outside_the_template_cost_nothing() -> None:
    """openpyxl pads each row to the widest: rows reaching column XFD would cost 16,384 cells each,
    so only the template's area and a margin are read (a stray value in the margin is still named)."""
    def fill(wb: WorkbookType) -> None:
        ws = wb["填报"]
        for r in range(8, 3008):
            ws.cell(r, 16384, "1")
        ws["Y4"] = "1"  # the 20th column beyond the last key: inside the margin

    data = edited(fill)
    started = time.perf_counter()
    assert refused(data) == [("填报!Y4", "intake.not_a_task")]
    assert time.perf_counter() - started < 1.0
