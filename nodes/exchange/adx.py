"""ADX (IHE QRPH Aggregate Data Exchange, namespace ``urn:ihe:qrph:adx:2015``) in and out.

An ADX message groups its values by organisation unit and period::

    <adx xmlns="urn:ihe:qrph:adx:2015" exported="2026-07-31T08:00:00Z">
      <group orgUnit="510104" period="2026-07-01/P1M" dataSet="APPRAISAL">
        <dataValue dataElement="A1" value="12.5"><annotation>备注</annotation></dataValue>
      </group>
    </adx>

A value's other attributes are its disaggregation (``GENDER="FMLE"``) or DHIS2's
``categoryOptionCombo``; the mapping says which indicator each stands for. Places are named as
paths with positions from 1: ``adx/group[2]/dataValue[5]@value``.

Parsing goes through defusedxml and refuses any DTD (so no entity can expand, and no external
file or URL is ever read); the document's size is capped before it is parsed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from xml.etree.ElementTree import Element, ParseError
from xml.sax.saxutils import escape

import defusedxml
import defusedxml.ElementTree

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
from nodes.exchange.periods import NoEqual, from_adx, to_adx

NS = "urn:ihe:qrph:adx:2015"
_ADX, _GROUP, _VALUE, _ANNOTATION = (f"{{{NS}}}{n}" for n in ("adx", "group", "dataValue", "annotation"))
_TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}(?:T[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?"
                        r"(?:Z|[+-][0-9]{2}:[0-9]{2})?)?\Z")
_GROUP_OWN = frozenset({"orgUnit", "period", "dataSet", "completeDate"})


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _parse(data: bytes, max_bytes: int) -> Element:
    big = too_large(data, max_bytes)
    if big is not None:
        raise ExchangeError([big])
    try:
        return defusedxml.ElementTree.fromstring(data, forbid_dtd=True)
    except (defusedxml.DTDForbidden, defusedxml.EntitiesForbidden, defusedxml.ExternalReferenceForbidden):
        raise ExchangeError([Problem("document", "XML 含 DTD 或实体声明，出于安全原因一律拒绝，请删去 <!DOCTYPE ...> "
                                                 "(DTDs and entity declarations are refused, for safety: remove the "
                                                 "<!DOCTYPE ...>)", "exchange.forbidden")]) from None
    except ParseError as exc:
        line, column = exc.position
        raise ExchangeError([Problem(f"line {line}, column {column + 1}",
                                     f"XML 格式错误 (malformed XML): {exc}；请检查此处的标签与引号 "
                                     "(check the tags and quotes here)", "exchange.malformed")]) from None


def read_adx(data: bytes, mapping: CodeMap = IDENTITY, *, max_bytes: int = DEFAULT_MAX_BYTES,
             max_values: int = DEFAULT_MAX_VALUES) -> list[Cell]:
    """Every value of an ADX message as cells, or :class:`ExchangeError` with all its problems."""
    root = _parse(data, max_bytes)
    out = Collector(max_values)
    if root.tag != _ADX:
        raise ExchangeError([Problem(_local(root.tag), f"根元素应为命名空间 {NS} 中的 adx，实为 {root.tag!r} "
                                                       f"(the root must be adx in the namespace {NS})",
                                     "exchange.malformed")])
    exported = root.get("exported")
    if exported is None or not _TIMESTAMP.match(exported):
        out.problem("adx@exported", "缺少或无效：ADX 要求导出时间，如 2026-07-31T08:00:00Z "
                                    "(missing or invalid: ADX requires the export time, e.g. 2026-07-31T08:00:00Z)")
    groups = 0
    others: dict[str, int] = {}
    for child in root:
        if child.tag != _GROUP:
            name = _local(child.tag)
            others[name] = others.get(name, 0) + 1
            out.problem(f"adx/{name}[{others[name]}]", f"adx 下只能有 group 元素，{child.tag!r} 无法读取，请删去 "
                                                      "(only group elements may stand under adx: remove it)")
            continue
        groups += 1
        if not _group(child, f"adx/group[{groups}]", out, mapping):
            break
    return out.result()


def _group(group: Element, where: str, out: Collector, mapping: CodeMap) -> bool:
    """Read one group; False once the document holds more values than allowed."""
    unit = period = ""
    org_unit = group.get("orgUnit")
    if not org_unit:
        out.problem(f"{where}@orgUnit", "缺少组织机构，请填写 (missing orgUnit: give it)")
    else:
        unit, why = mapping.unit_for(org_unit)
        if why:
            out.problem(f"{where}@orgUnit", why)
    text = group.get("period")
    if not text:
        out.problem(f"{where}@period", "缺少期间，请填写，如 2026-07-01/P1M (missing period: give it, e.g. 2026-07-01/P1M)")
    else:
        try:
            period = from_adx(text)
        except NoEqual as exc:
            out.problem(f"{where}@period", str(exc), exc.code)
    data_set = group.get("dataSet")
    if mapping.data_set and data_set != mapping.data_set:
        out.problem(f"{where}@dataSet", f"数据集应为映射文件 {mapping.source} 所指的 {mapping.data_set!r}，实为 {data_set!r}，"
                                        "请确认文档与映射 (the data set differs from the mapping's: check both)")
    values = 0
    for child in group:
        if child.tag != _VALUE:
            out.problem(f"{where}/{_local(child.tag)}", "group 下只能有 dataValue 元素，请删去 "
                                                        "(only dataValue elements may stand under group: remove it)")
            continue
        values += 1
        place = f"{where}/dataValue[{values}]"
        if not out.room(place):
            return False
        _data_value(child, place, out, mapping, unit, period)
    return True


def _data_value(dv: Element, where: str, out: Collector, mapping: CodeMap, unit: str, period: str) -> None:
    element = dv.get("dataElement")
    raw = dv.get("value")
    coc = dv.get("categoryOptionCombo")
    categories = tuple(sorted((k, v) for k, v in dv.attrib.items()
                              if not k.startswith("{") and k not in ("dataElement", "value", "categoryOptionCombo")))
    indicator = value = ""
    if not element:
        out.problem(f"{where}@dataElement", "缺少数据元素，请填写 (missing dataElement: give it)")
    else:
        # DHIS2 takes categoryOptionCombo in preference to the category attributes; so do we.
        indicator, why = mapping.indicator_for(element, coc) if coc else mapping.indicator_for_adx(element, categories)
        if why:
            out.problem(f"{where}@dataElement", why)
    if raw is None:
        out.problem(f"{where}@value", "缺少数值，请填写 (missing value: give it)")
    else:
        value, why = parse_value(raw)
        if why:
            out.problem(f"{where}@value", why)
    comments: list[str] = []
    for child in dv:
        if child.tag != _ANNOTATION or len(child):
            out.problem(f"{where}/{_local(child.tag)}", "dataValue 下只能有一个纯文本的 annotation 元素，请删去其余 "
                                                        "(only one plain-text annotation may stand under dataValue)")
            continue
        comments.append(child.text or "")
    if len(comments) > 1:
        out.problem(f"{where}/annotation[2]", "每个数值至多一个 annotation，请合并 "
                                              "(at most one annotation per value: merge them)")
    comment = comments[0] if comments else ""
    why = comment_problem(comment)
    if why:
        out.problem(f"{where}/annotation", why)
    if indicator and value and unit and period and not why:
        out.add(where, Cell(unit, indicator, period, value, comment))


def _attr(text: str) -> str:
    return '"' + escape(text, {'"': "&quot;", "\n": "&#10;", "\r": "&#13;", "\t": "&#9;"}) + '"'


def write_adx(cells: Sequence[Cell], mapping: CodeMap = IDENTITY, *, exported: str, complete_date: str = "",
              max_values: int = DEFAULT_MAX_VALUES) -> bytes:
    """An ADX message (UTF-8) of ``cells``, one group per unit and period in the order first met.

    ``exported`` is the export time ADX requires (ISO 8601, e.g. ``2026-07-31T08:00:00Z``): the
    caller's clock, so that this module stays pure."""
    check = CellCheck(max_values)
    check.check(cells)
    if not _TIMESTAMP.match(exported):
        check.add("exported", f"应为 ISO 8601 时间如 2026-07-31T08:00:00Z，实为 {exported!r} (expected an ISO 8601 time)")
    if complete_date and not _TIMESTAMP.match(complete_date):
        check.add("completeDate", f"应为 ISO 日期如 2026-07-31，实为 {complete_date!r} (expected an ISO date)")
    groups: dict[tuple[str, str], list[str]] = {}
    for i, cell in enumerate(cells if not check.problems else ()):
        ref = mapping.element_for(cell.indicator)
        org_unit = mapping.org_unit_for(cell.unit)
        if ref is None:
            check.add(f"cells[{i}].indicator", f"指标 {cell.indicator} 不在映射文件 {mapping.source} 的 indicators: 中，"
                                               "请补上 (not in the mapping: add it)")
        if org_unit is None:
            check.add(f"cells[{i}].unit", f"单位 {cell.unit} 不在映射文件 {mapping.source} 的 units: 中，请补上 "
                                          "(not in the mapping: add it)")
        if ref is None or org_unit is None:
            continue
        attrs = [("dataElement", ref.data_element), *ref.disaggregation]
        if ref.category_option_combo and not ref.disaggregation:
            attrs.append(("categoryOptionCombo", ref.category_option_combo))
        attrs.append(("value", cell.value))
        line = "    <dataValue " + " ".join(f"{k}={_attr(v)}" for k, v in attrs)
        if cell.comment:
            line += f"><annotation>{escape(cell.comment, {chr(13): '&#13;'})}</annotation></dataValue>"
        else:
            line += "/>"
        groups.setdefault((org_unit, to_adx(cell.period)), []).append(line)
    check.done()
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', f"<adx xmlns={_attr(NS)} exported={_attr(exported)}>"]
    for (org_unit, period), values in groups.items():
        head = f"  <group orgUnit={_attr(org_unit)} period={_attr(period)}"
        if mapping.data_set:
            head += f" dataSet={_attr(mapping.data_set)}"
        if complete_date:
            head += f" completeDate={_attr(complete_date)}"
        lines += [head + ">", *values, "  </group>"]
    lines.append("</adx>")
    return ("\n".join(lines) + "\n").encode("utf-8")
