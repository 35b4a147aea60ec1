"""DHIS2 ``dataValueSets`` JSON (``/api/dataValueSets``) in and out.

The shape is DHIS2's own: a set with optional ``dataSet``, ``completeDate``, ``period``,
``orgUnit`` and ``attributeOptionCombo``, and its ``dataValues``; a value that omits ``period`` or
``orgUnit`` takes the set's, as DHIS2 does. DHIS2 writes numbers as strings; a JSON number is
taken too, but from its own text (never through a binary float), and only if it is an exact
decimal within our bounds. Places are named as JSON paths: ``dataValues[3].value`` (from 0).

Not taken: ``attributeOptionCombo`` (funding mechanisms and the like have no equal here: values
that differ only in it are reported as duplicates), and deleted values (``"deleted": true``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

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
)
from nodes.exchange.mapping import IDENTITY, CodeMap
from nodes.exchange.periods import NoEqual, from_dhis2, to_dhis2

_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}(?:T[0-9:.]+(?:Z|[+-][0-9]{2}:?[0-9]{2})?)?\Z")


class _Number(str):
    """A JSON number, kept as the text the document wrote."""


class _Constant(str):
    """NaN, Infinity or -Infinity, which Python's json would otherwise take as floats."""


class _Object(dict[str, Any]):
    """A JSON object that remembers the keys it was given twice (the last would silently win)."""

    duplicates: list[str]


def _pairs(pairs: list[tuple[str, Any]]) -> _Object:
    obj = _Object()
    obj.duplicates = []
    for key, value in pairs:
        if key in obj:
            obj.duplicates.append(key)
        obj[key] = value
    return obj


def _decode(data: bytes, max_bytes: int) -> Any:
    big = too_large(data, max_bytes)
    if big is not None:
        raise ExchangeError([big])
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ExchangeError([Problem(f"line {line}, byte {exc.start}", "不是 UTF-8 编码的文本，请以 UTF-8 保存 "
                                                                        "(not UTF-8 text: save the file as UTF-8)",
                                     "exchange.malformed")]) from None
    try:
        return json.loads(text, parse_float=_Number, parse_int=_Number, parse_constant=_Constant,
                          object_pairs_hook=_pairs)
    except json.JSONDecodeError as exc:
        raise ExchangeError([Problem(f"line {exc.lineno}, column {exc.colno}",
                                     f"JSON 格式错误：{exc.msg}；请检查此处的逗号、引号与括号 "
                                     "(malformed JSON: check the commas, quotes and brackets here)",
                                     "exchange.malformed")]) from None
    except RecursionError:
        raise ExchangeError([Problem("document", "JSON 嵌套过深 (nested too deep): dataValueSets 只有两层 "
                                                 "(a data value set has two levels)", "exchange.malformed")]) from None


def _text(obj: dict[str, Any], key: str, where: str, out: Collector, *, required: bool) -> str | None:
    """A text field: its value, or None (with a problem if it is there but not text, or required and missing)."""
    if key not in obj or obj[key] is None:
        if required:
            out.problem(f"{where}{key}", f"缺少 {key}，请填写 (missing {key}: give it)")
        return None
    value = obj[key]
    if type(value) is not str or not value.strip():
        out.problem(f"{where}{key}", f"{key} 应为非空文本（标识请加引号），实为 {value!r} (expected non-empty text)")
        return None
    return value


def read_data_value_set(data: bytes, mapping: CodeMap = IDENTITY, *, max_values: int = DEFAULT_MAX_VALUES,
                        max_bytes: int = DEFAULT_MAX_BYTES) -> list[Cell]:
    """Every value of a dataValueSets JSON document as cells, or :class:`ExchangeError` with all its problems."""
    doc = _decode(data, max_bytes)
    out = Collector(max_values)
    if not isinstance(doc, _Object):
        raise ExchangeError([Problem("document", "应为 JSON 对象 {\"dataValues\": [...]} "
                                                 "(expected a JSON object with dataValues)", "exchange.malformed")])
    for key in doc.duplicates:
        out.problem(key, "键重复，请只写一次 (duplicate key: write it once)")
    data_set = _text(doc, "dataSet", "", out, required=False)
    if data_set is not None and mapping.data_set and data_set != mapping.data_set:
        out.problem("dataSet", f"数据集 {data_set!r} 不是映射文件 {mapping.source} 所指的 {mapping.data_set!r}，"
                               f"请确认文档与映射 (data set differs from the mapping's: check the document and the mapping)")
    for key in ("completeDate",):
        value = _text(doc, key, "", out, required=False)
        if value is not None and not _DATE.match(value):
            out.problem(key, f"应为 ISO 日期如 2026-07-31，实为 {value!r} (expected an ISO date)")
    # The set's defaults, checked once here rather than at every value that takes them.
    set_period = _period(doc, "", out)
    set_unit = _unit(doc, "", out, mapping)
    values = doc.get("dataValues")
    if not isinstance(values, list):
        out.problem("dataValues", "缺少 dataValues 列表，或它不是列表 (missing dataValues, or it is not a list)"
                    if values is None else f"dataValues 应为列表，实为 {type(values).__name__} (expected a list)")
        values = []
    for i, dv in enumerate(values):
        where = f"dataValues[{i}]"
        if not out.room(where):
            break
        if not isinstance(dv, _Object):
            out.problem(where, "应为对象 {\"dataElement\": ..., \"value\": ...} (expected an object)")
            continue
        _value(dv, where + ".", out, mapping, set_period, set_unit)
    return out.result()


_FAILED = ""  # a set default that was given but had a problem (already reported)


def _period(obj: dict[str, Any], where: str, out: Collector) -> str | None:
    text = _text(obj, "period", where, out, required=False)
    if text is None:
        return _FAILED if "period" in obj and obj["period"] is not None else None
    try:
        return from_dhis2(text)
    except NoEqual as exc:
        out.problem(f"{where}period", str(exc), exc.code)
        return _FAILED


def _unit(obj: dict[str, Any], where: str, out: Collector, mapping: CodeMap) -> str | None:
    text = _text(obj, "orgUnit", where, out, required=False)
    if text is None:
        return _FAILED if "orgUnit" in obj and obj["orgUnit"] is not None else None
    unit, why = mapping.unit_for(text)
    if why:
        out.problem(f"{where}orgUnit", why)
        return _FAILED
    return unit


def _value(dv: _Object, where: str, out: Collector, mapping: CodeMap, set_period: str | None,
           set_unit: str | None) -> None:
    for key in dv.duplicates:
        out.problem(where + key, "键重复，请只写一次 (duplicate key: write it once)")
    ok = True
    element = _text(dv, "dataElement", where, out, required=True)
    coc = _text(dv, "categoryOptionCombo", where, out, required=False)
    indicator = ""
    if element is not None:
        indicator, why = mapping.indicator_for(element, coc or "")
        if why:
            out.problem(where + "dataElement", why)
    period = _period(dv, where, out) if "period" in dv else set_period
    if period is None:
        out.problem(where + "period", "缺少期间：请在此值或数据集层级填写 period，如 202607 "
                                      "(missing period: give it here or at the set level)")
    unit = _unit(dv, where, out, mapping) if "orgUnit" in dv else set_unit
    if unit is None:
        out.problem(where + "orgUnit", "缺少组织机构：请在此值或数据集层级填写 orgUnit "
                                       "(missing orgUnit: give it here or at the set level)")
    raw = dv.get("value")
    value = ""
    if raw is None:
        out.problem(where + "value", "缺少数值，请填写 (missing value: give it)")
        ok = False
    elif isinstance(raw, _Constant) or not isinstance(raw, str):
        out.problem(where + "value", f"应为十进制数字（文本或 JSON 数字），实为 {raw!r} "
                                     "(expected a decimal number, as text or a JSON number)")
        ok = False
    elif raw == "":
        out.problem(where + "value", "数值为空：DHIS2 以空值表示删除，本平台不导入删除，请填写数值或删去此项 "
                                     "(empty value: DHIS2 means a deletion, which is not taken here; give a value or "
                                     "remove the entry)")
        ok = False
    else:
        value, why = parse_value(str(raw))
        if why:
            out.problem(where + "value", why)
            ok = False
    comment = dv.get("comment")
    if comment is None:
        comment = ""
    elif type(comment) is not str:
        out.problem(where + "comment", f"备注应为文本，实为 {comment!r} (a comment is text)")
        ok = False
    elif why := comment_problem(comment):
        out.problem(where + "comment", why)
        ok = False
    if dv.get("deleted") is True:
        out.problem(where + "deleted", "已删除的数值不能导入，请删去此项 (a deleted value cannot be imported: remove it)")
        ok = False
    if ok and indicator and period and unit:
        out.add(where.rstrip("."), Cell(unit, indicator, period, value, comment))


def write_data_value_set(cells: Sequence[Cell], mapping: CodeMap = IDENTITY, *, complete_date: str = "",
                         max_values: int = DEFAULT_MAX_VALUES) -> bytes:
    """A dataValueSets JSON document (UTF-8) of ``cells``; every value names its own period and orgUnit."""
    check = CellCheck(max_values)
    check.check(cells)
    if complete_date and not _DATE.match(complete_date):
        check.add("completeDate", f"应为 ISO 日期如 2026-07-31，实为 {complete_date!r} (expected an ISO date)")
    values: list[dict[str, str]] = []
    for i, cell in enumerate(cells if not check.problems else ()):
        ref = mapping.element_for(cell.indicator)
        org_unit = mapping.org_unit_for(cell.unit)
        if ref is None:
            check.add(f"cells[{i}].indicator", f"指标 {cell.indicator} 不在映射文件 {mapping.source} 的 indicators: 中，"
                                               "请补上 (not in the mapping: add it)")
        if org_unit is None:
            check.add(f"cells[{i}].unit", f"单位 {cell.unit} 不在映射文件 {mapping.source} 的 units: 中，请补上 "
                                          "(not in the mapping: add it)")
        if ref is not None and not ref.in_data_value_sets:
            check.add(f"cells[{i}].indicator", f"指标 {cell.indicator} 在映射文件 {mapping.source} 中只有 adx 分类，"
                                               "请补上它的 categoryOptionCombo 才能导出为 dataValueSets "
                                               "(mapped for ADX only: add its categoryOptionCombo)")
            continue
        if ref is None or org_unit is None:
            continue
        dv = {"dataElement": ref.data_element, "period": to_dhis2(cell.period), "orgUnit": org_unit}
        if ref.category_option_combo:
            dv["categoryOptionCombo"] = ref.category_option_combo
        dv["value"] = cell.value
        if cell.comment:
            dv["comment"] = cell.comment
        values.append(dv)
    check.done()
    doc: dict[str, Any] = {}
    if mapping.data_set:
        doc["dataSet"] = mapping.data_set
    if complete_date:
        doc["completeDate"] = complete_date
    doc["dataValues"] = values
    return (json.dumps(doc, ensure_ascii=False, indent=2) + "\n").encode("utf-8")
