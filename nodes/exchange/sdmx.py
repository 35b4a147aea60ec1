"""SDMX-CSV 2.0 data messages (sdmx-twg/sdmx-csv, data-message field guide) out, and back in.

What is written: RFC 4180 CSV in UTF-8, CRLF line ends, the mandatory header row, one row per
observation::

    STRUCTURE,STRUCTURE_ID,ACTION,REF_AREA,INDICATOR,TIME_PERIOD,OBS_VALUE,COMMENT
    dataflow,FEDAPPRAISAL:DF_APPRAISAL(1.0.0),I,510104,A1,2026-M07,12.5,

Dimensions are REF_AREA (our unit code), INDICATOR (our indicator code) and TIME_PERIOD (SDMX
reporting periods, see ``periods.py``); OBS_VALUE is the measure and COMMENT an attribute.
Codes are ours: an SDMX codelist for them is the node's, no mapping file is involved.

What is read: that shape, with its columns in any order (as the guide allows for uploads), any
separator the first header field announces (``STRUCTURE;...``), the ACTION column optional
(Information assumed) and the actions I, A, M and R; custom columns only when the caller names
them in ``ignore_columns``. Refused, with the reason: rows to delete (D), labels (``labels=both``
or ``name``), unknown dimensions or attributes, multi-valued components.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Collection, Sequence

from aggregator.framework import valid_indicator_code
from nodes.exchange.cells import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_VALUES,
    Cell,
    CellCheck,
    Collector,
    ExchangeError,
    Problem,
    comment_problem,
    parse_value,
    too_large,
    valid_unit,
)
from nodes.exchange.periods import NoEqual, from_sdmx, to_sdmx

STRUCTURE_ID = "FEDAPPRAISAL:DF_APPRAISAL(1.0.0)"
HEADER = ("STRUCTURE", "STRUCTURE_ID", "ACTION", "REF_AREA", "INDICATOR", "TIME_PERIOD", "OBS_VALUE", "COMMENT")
_REQUIRED = ("STRUCTURE_ID", "REF_AREA", "INDICATOR", "TIME_PERIOD", "OBS_VALUE")
_DERIVED = ("SERIES_KEY", "OBS_KEY")  # keys made of the dimensions (key=series|obs|both): nothing new, skipped
_STRUCTURES = ("dataflow", "datastructure", "dataprovision")
_TAKEN_ACTIONS = ("I", "A", "M", "R")  # information, append (2.0); merge, replace (2.1): values to hold
_STRUCTURE_REF = re.compile(r"[A-Za-z0-9_@$-]+(?:\.[A-Za-z0-9_@$-]+)*:[A-Za-z0-9_@$-]+(?:\([0-9A-Za-z.+-]+\))?\Z")
_FIRST = re.compile(r"STRUCTURE(\[[^\]]*\])?(.)")


def write_sdmx_csv(cells: Sequence[Cell], *, structure_id: str = STRUCTURE_ID, action: str = "I",
                   max_values: int = DEFAULT_MAX_VALUES) -> bytes:
    """An SDMX-CSV 2.0 message (UTF-8, RFC 4180) of ``cells`` for the dataflow ``structure_id``."""
    check = CellCheck(max_values)
    check.check(cells)
    if not _STRUCTURE_REF.match(structure_id):
        check.add("structure_id", f"应为 AGENCY:ID(VERSION) 形式，实为 {structure_id!r} (expected AGENCY:ID(VERSION))")
    if action not in _TAKEN_ACTIONS:
        check.add("action", f"动作应为 {'、'.join(_TAKEN_ACTIONS)} 之一，实为 {action!r} (action must be one of I, A, M, R)")
    check.done()
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(HEADER)
    for cell in cells:
        writer.writerow(("dataflow", structure_id, action, cell.unit, cell.indicator, to_sdmx(cell.period), cell.value,
                         cell.comment))
    return buffer.getvalue().encode("utf-8")


def read_sdmx_csv(data: bytes, *, structure_id: str | None = None, ignore_columns: Collection[str] = (),
                  max_bytes: int = DEFAULT_MAX_BYTES, max_values: int = DEFAULT_MAX_VALUES) -> list[Cell]:
    """The observations of an SDMX-CSV message of our shape as cells, or :class:`ExchangeError`.

    ``structure_id``: the dataflow every row must name (None: any one, the same in every row).
    ``ignore_columns``: custom columns (e.g. UPDATED) to skip; any other unknown column is refused."""
    big = too_large(data, max_bytes)
    if big is not None:
        raise ExchangeError([big])
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ExchangeError([Problem(f"line {line}", "不是 UTF-8 编码的文本，请以 UTF-8 保存 (not UTF-8 text: save it as UTF-8)",
                                     "exchange.malformed")]) from None
    first = _FIRST.match(text)
    if first is None or first.group(2) in "\r\n":
        raise ExchangeError([Problem("line 1", "不是 SDMX-CSV：首行应为以 STRUCTURE 开头的列名行 "
                                               "(not SDMX-CSV: the first line must be the header row starting with "
                                               "STRUCTURE)", "exchange.malformed")])
    separator = first.group(2)
    if separator in '"' or separator.isalnum():
        raise ExchangeError([Problem("line 1, column STRUCTURE", f"分隔符 {separator!r} 无法使用 (unusable separator)",
                                     "exchange.malformed")])
    out = Collector(max_values)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=separator, strict=True)
    try:
        header = next(reader)
        columns = _columns(header, ignore_columns, out)
        end = reader.line_num
        for row in reader:
            start, end = end + 1, reader.line_num
            if not row:
                continue  # an empty line (such as a last line end)
            if not out.room(f"line {start}"):
                break
            if len(row) != len(header):
                out.problem(f"line {start}", f"有 {len(row)} 个字段，而列名行有 {len(header)} 个；含分隔符的字段请加双引号 "
                                             f"({len(row)} fields where the header has {len(header)}: quote fields that "
                                             "contain the separator)")
                continue
            if columns is not None:
                fields = dict(zip(columns, row, strict=True))
                structure_id = fields["STRUCTURE_ID"] if structure_id is None else structure_id
                _row(fields, start, out, structure_id)
    except csv.Error as exc:
        out.problem(f"line {reader.line_num}", f"CSV 格式错误 (malformed CSV): {exc}；引号内的引号请写两次 "
                                               "(double a quote inside a quoted field)", "exchange.malformed")
    return out.result()


def _columns(header: list[str], ignore: Collection[str], out: Collector) -> list[str] | None:
    """The header's column names ('' for one to skip), or None if the header has problems (all reported)."""
    names: list[str] = []
    seen: set[str] = set()
    ok = True
    for i, raw in enumerate(header):
        name = "STRUCTURE" if i == 0 else raw
        where = f"line 1, column {i + 1} ({raw})"
        if name in seen:
            out.problem(where, f"列 {name} 重复 (duplicate column)")
            ok = False
        seen.add(name)
        if name in HEADER:
            names.append(name)
        elif name in ignore or name in _DERIVED:
            names.append("")
        elif name == "STRUCTURE_NAME" or ": " in name:
            out.problem(where, "不读带名称的 SDMX-CSV (labels=name/both)，请以 labels=id 导出 "
                               "(labels are not read: export with labels=id)")
            ok = False
        elif "[" in name:
            out.problem(where, "不读多值或多语言成分，请以单值导出 (multi-valued or multi-lingual components are not read)")
            ok = False
        else:
            out.problem(where, f"未知的列 {name!r}：本平台的维度为 REF_AREA、INDICATOR、TIME_PERIOD，测度为 OBS_VALUE，"
                               "属性为 COMMENT；自定义列请由调用方列入 ignore_columns "
                               "(unknown column: our dimensions are REF_AREA, INDICATOR, TIME_PERIOD, the measure "
                               "OBS_VALUE and the attribute COMMENT; custom columns must be named to be skipped)")
            ok = False
    for name in _REQUIRED:
        if name not in seen:
            out.problem("line 1", f"缺少列 {name}，请补上 (missing column {name}: add it)")
            ok = False
    return names if ok else None


def _row(row: dict[str, str], line: int, out: Collector, expected: str) -> None:
    def at(column: str) -> str:
        return f"line {line}, column {column}"

    ok = True
    if row["STRUCTURE"] not in _STRUCTURES:
        out.problem(at("STRUCTURE"), f"应为 dataflow、datastructure 或 dataprovision，实为 {row['STRUCTURE']!r} "
                                     "(expected dataflow, datastructure or dataprovision)")
        ok = False
    sid = row["STRUCTURE_ID"]
    if sid != expected:
        out.problem(at("STRUCTURE_ID"), f"结构应为 {expected!r}，实为 {sid!r}；一个文档只能含一个数据流 "
                                        "(every row must name the same dataflow)")
        ok = False
    action = row.get("ACTION", "I") or "I"
    if action == "D":  # its measure is any mark ("-"): nothing else of the row is read
        out.problem(at("ACTION"), "删除行 (D) 不能作为数值导入，请删去此行 (a delete row cannot be taken as a value: remove it)")
        return
    if action not in _TAKEN_ACTIONS:
        out.problem(at("ACTION"), f"动作应为 I、A、M、R 之一，实为 {action!r} (action must be I, A, M or R)")
        ok = False
    unit, indicator = row["REF_AREA"], row["INDICATOR"]
    if not valid_unit(unit):
        out.problem(at("REF_AREA"), f"不是本平台的单位编码 {unit!r}（2/4/6/9/12 位区划代码或部门编码）"
                                    "(not one of our unit codes)")
        ok = False
    if not valid_indicator_code(indicator):
        out.problem(at("INDICATOR"), f"不是本平台的指标编码 {indicator!r} (not one of our indicator codes)")
        ok = False
    period = ""
    try:
        period = from_sdmx(row["TIME_PERIOD"])
    except NoEqual as exc:
        out.problem(at("TIME_PERIOD"), str(exc), exc.code)
        ok = False
    if row["OBS_VALUE"] == "":
        out.problem(at("OBS_VALUE"), "缺少观测值，请填写 (missing observation value: give it)")
        ok = False
        value = ""
    else:
        value, why = parse_value(row["OBS_VALUE"])
        if why:
            out.problem(at("OBS_VALUE"), why)
            ok = False
    comment = row.get("COMMENT", "")
    why = comment_problem(comment)
    if why:
        out.problem(at("COMMENT"), why)
        ok = False
    if ok:
        out.add(f"line {line}", Cell(unit, indicator, period, value, comment))
