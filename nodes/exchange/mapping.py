"""Our codes and another system's identifiers (DHIS2 uids or codes), one to one, from a YAML file.

A DHIS2 instance names a value's place with a data element (and a category option combo for a
disaggregation), an organisation unit and a period; ADX writes a disaggregation as attributes of
the value (``GENDER="FMLE"``), or as ``categoryOptionCombo``. The mapping file says which of
those is which of our indicators and units::

    dataSet: pBOMPrpg1QX                 # optional: written into documents, checked on reading
    indicators:                          # our indicator code: a data element, or the full form
      A1: f7n9E0hX8qk
      A2: {dataElement: VCCT_0, categoryOptionCombo: bRowv6yZOF2}
      A3: {dataElement: VCCT_0, adx: {GENDER: FMLE, HIV_AGE: AGE0-14}}
    units:                               # our unit code: the organisation unit
      "510104": DiszpKrYNg8

A section left out maps by identity (the other system uses our codes); a section given maps only
what it lists, and a code it does not list is a problem on import and on export, never dropped.
The map must be one to one in each direction; the loader names the codes that collide.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aggregator.framework import valid_indicator_code
from nodes.exchange.cells import ExchangeError, Problem, valid_unit
from nodes.yamlfile import FileError, Where, load

# Their identifiers: DHIS2 uids (11 characters) or codes (up to 50): printable, no surrounding blanks.
_THEIRS = re.compile(r"[^\s\x00-\x1f\x7f](?:[^\x00-\x1f\x7f]{0,228}[^\s\x00-\x1f\x7f])?\Z")
# ADX writes a category as an XML attribute name; these names are the ADX elements' own.
_XML_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}\Z")
Report = Callable[..., None]  # problem(where, message, key=False)
RESERVED_ADX = frozenset({"dataElement", "value", "categoryOptionCombo", "orgUnit", "period", "dataSet",
                          "completeDate", "attributeOptionCombo", "comment"})


@dataclass(frozen=True)
class ElementRef:
    """Where one of our indicators sits in the other system."""

    data_element: str
    category_option_combo: str = ""  # dataValueSets (and ADX's categoryOptionCombo attribute)
    disaggregation: tuple[tuple[str, str], ...] = ()  # ADX category attributes, sorted by category

    @property
    def in_data_value_sets(self) -> bool:
        """False for an ADX-only entry (categories without a categoryOptionCombo: JSON cannot say which)."""
        return bool(self.category_option_combo) or not self.disaggregation


@dataclass(frozen=True)
class CodeMap:
    """Both directions of the mapping. ``None`` for a section means identity."""

    indicators: Mapping[str, ElementRef] | None = None
    units: Mapping[str, str] | None = None
    data_set: str = ""
    source: str = "identity"  # the mapping file, for messages
    _by_coc: dict[tuple[str, str], str] = field(default_factory=dict, compare=False, repr=False)
    _by_adx: dict[tuple[str, tuple[tuple[str, str], ...]], str] = field(default_factory=dict, compare=False, repr=False)
    _by_element: dict[str, list[str]] = field(default_factory=dict, compare=False, repr=False)
    _by_org_unit: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for ours, ref in (self.indicators or {}).items():
            if ref.in_data_value_sets:
                self._by_coc[(ref.data_element, ref.category_option_combo)] = ours
            if ref.disaggregation:
                self._by_adx[(ref.data_element, ref.disaggregation)] = ours
            self._by_element.setdefault(ref.data_element, []).append(ours)
        self._by_org_unit.update({theirs: ours for ours, theirs in (self.units or {}).items()})

    # ---- export: ours -> theirs ----
    def element_for(self, indicator: str) -> ElementRef | None:
        if self.indicators is None:
            return ElementRef(indicator)
        return self.indicators.get(indicator)

    def org_unit_for(self, unit: str) -> str | None:
        return unit if self.units is None else self.units.get(unit)

    # ---- import: theirs -> ours; (code, "") or ("", the problem and its fix) ----
    def indicator_for(self, data_element: str, category_option_combo: str = "") -> tuple[str, str]:
        """A dataValueSets value (or an ADX value with ``categoryOptionCombo``)."""
        if self.indicators is None:
            return self._identity_indicator(data_element)
        ours = self._by_coc.get((data_element, category_option_combo))
        if ours is None:
            candidates = [c for c in self._by_element.get(data_element, []) if self.indicators[c].in_data_value_sets]
            # DHIS2 names the default combo on every value it exports: a data element mapped once,
            # without a combo, takes any (two values that differ only in the combo are then duplicates).
            if len(candidates) == 1 and not self.indicators[candidates[0]].category_option_combo:
                ours = candidates[0]
        if ours is not None:
            return ours, ""
        return "", self._unknown_element(data_element, f"categoryOptionCombo {category_option_combo!r}"
                                         if category_option_combo else "")

    def indicator_for_adx(self, data_element: str, disaggregation: tuple[tuple[str, str], ...]) -> tuple[str, str]:
        """An ADX value's data element and its category attributes (sorted)."""
        if not disaggregation:
            return self.indicator_for(data_element)
        if self.indicators is None:
            return "", (f"数据元素 {data_element!r} 带分类属性 {dict(disaggregation)}，而未给映射文件，"
                        "请在映射文件中用 adx: 指明它对应的指标 (the value is disaggregated but no mapping file was "
                        "given: map it with adx: in the mapping file)")
        ours = self._by_adx.get((data_element, disaggregation))
        if ours is not None:
            return ours, ""
        return "", self._unknown_element(data_element, f"分类 (categories) {dict(disaggregation)}")

    def unit_for(self, org_unit: str) -> tuple[str, str]:
        if self.units is None:
            if valid_unit(org_unit):
                return org_unit, ""
            return "", (f"组织机构 {org_unit!r} 不是本平台的单位编码，且未给映射文件，请在映射文件 units: 中映射它 "
                        "(not one of our unit codes and no mapping file was given: map it under units:)")
        ours = self._by_org_unit.get(org_unit)
        if ours is not None:
            return ours, ""
        return "", (f"组织机构 {org_unit!r} 不在映射文件 {self.source} 的 units: 中，请补上它对应的单位编码 "
                    f"(organisation unit not in the mapping's units: add the unit it stands for)")

    def _identity_indicator(self, data_element: str) -> tuple[str, str]:
        if valid_indicator_code(data_element):
            return data_element, ""
        return "", (f"数据元素 {data_element!r} 不是本平台的指标编码，且未给映射文件，请在映射文件 indicators: 中映射它 "
                    "(not one of our indicator codes and no mapping file was given: map it under indicators:)")

    def _unknown_element(self, data_element: str, detail: str) -> str:
        known = self._by_element.get(data_element)
        if known:
            return (f"数据元素 {data_element!r} 的 {detail} 不在映射文件 {self.source} 中（已映射的：{', '.join(known)}），"
                    f"请在 indicators: 中补上 (this disaggregation of the data element is not in the mapping: add it)")
        return (f"数据元素 {data_element!r} 不在映射文件 {self.source} 的 indicators: 中，请补上它对应的指标 "
                "(unknown data element: add the indicator it stands for to the mapping)")


IDENTITY = CodeMap()


def load_map(path: Path | None) -> CodeMap:
    """The mapping in ``path`` (YAML), or the identity mapping when no file is given."""
    if path is None:
        return IDENTITY
    try:
        doc = load(path, code="exchange.mapping")
    except FileError as exc:  # unreadable or malformed YAML: "file[:line[:column]]: message"
        where, _, message = str(exc).partition(": ")
        raise ExchangeError([Problem(where, message, "exchange.mapping")], what=f"映射文件 {path} (mapping file)") from None
    problems: list[Problem] = []

    def problem(where: Where, message: str, *, key: bool = False) -> None:
        dotted = ".".join(str(p) for p in where)
        problems.append(Problem(doc.at(where, key=key), f"{dotted + ': ' if dotted else ''}{message}", "exchange.mapping"))

    data = doc.data if doc.data is not None else {}
    if not isinstance(data, dict):
        problem((), "映射文件应为映射（键: 值），含 dataSet、indicators、units (the mapping file must be a mapping with "
                    "dataSet, indicators, units)")
        raise ExchangeError(problems, what=f"映射文件 {path} (mapping file)")
    for key in data:
        if key not in ("dataSet", "indicators", "units"):
            problem((key,), "未知的键，可用的键为 dataSet、indicators、units (unknown key: use dataSet, indicators, units)",
                    key=True)
    data_set = data.get("dataSet", "")
    if data_set != "" and not _theirs(data_set):
        problem(("dataSet",), "应为数据集标识（文本，如 pBOMPrpg1QX）(expected a data set uid or code, as text)")
        data_set = ""
    indicators = _indicators(data, problem) if "indicators" in data else None
    units = _units(data, problem) if "units" in data else None
    if problems:
        raise ExchangeError(problems, what=f"映射文件 {path} (mapping file)")
    return CodeMap(indicators, units, data_set, str(path))


def _theirs(value: Any) -> bool:
    return isinstance(value, str) and bool(_THEIRS.match(value))


def _indicators(data: dict[str, Any], problem: Report) -> dict[str, ElementRef]:
    section = data["indicators"]
    out: dict[str, ElementRef] = {}
    if not isinstance(section, dict):
        problem(("indicators",), "应为“指标编码: 数据元素”的映射 (expected a mapping: indicator code: data element)")
        return out
    by_coc: dict[tuple[str, str], str] = {}
    by_adx: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}
    for ours, spec in section.items():
        where: Where = ("indicators", ours)
        if not valid_indicator_code(ours):
            problem(where, f"不是本平台的指标编码 {ours!r}（字母数字开头，至多 32 个字母、数字、._-）"
                           "(not one of our indicator codes)", key=True)
            continue
        ref = _element_ref(where, spec, problem)
        if ref is None:
            continue
        other = by_coc.setdefault((ref.data_element, ref.category_option_combo), ours) if ref.in_data_value_sets else ours
        if other != ours:
            problem(where, f"与指标 {other} 映射到同一数据元素 {ref.data_element!r}"
                           f"{'、categoryOptionCombo ' + repr(ref.category_option_combo) if ref.category_option_combo else ''}"
                           f"，映射须一一对应，请给其一不同的数据元素或 categoryOptionCombo "
                           f"(collides with {other}: the map must be one to one)")
            continue
        if ref.disaggregation:
            other = by_adx.setdefault((ref.data_element, ref.disaggregation), ours)
            if other != ours:
                problem(where, f"与指标 {other} 的数据元素与 adx 分类相同，映射须一一对应 "
                               f"(collides with {other} in ADX: the map must be one to one)")
                continue
        out[ours] = ref
    return out


def _element_ref(where: Where, spec: Any, problem: Report) -> ElementRef | None:
    if isinstance(spec, str):
        if not _theirs(spec):
            problem(where, f"数据元素标识无效 {spec!r}（不能为空或含控制字符、首尾空格）(invalid data element uid or code)")
            return None
        return ElementRef(spec)
    if not isinstance(spec, dict):
        problem(where, "应为数据元素标识，或 {dataElement: ..., categoryOptionCombo: ..., adx: {分类: 选项}} "
                       "(expected a data element, or the full form)")
        return None
    ok = True
    for key in spec:
        if key not in ("dataElement", "categoryOptionCombo", "adx"):
            problem((*where, key), "未知的键，可用 dataElement、categoryOptionCombo、adx "
                                   "(unknown key: use dataElement, categoryOptionCombo, adx)", key=True)
            ok = False
    element = spec.get("dataElement")
    if not _theirs(element):
        problem((*where, "dataElement"), "缺少或无效：应为数据元素标识（文本）(missing or invalid: the data element as text)")
        ok = False
    coc = spec.get("categoryOptionCombo", "")
    if coc != "" and not _theirs(coc):
        problem((*where, "categoryOptionCombo"), "应为分类选项组合标识（文本）(expected a category option combo as text)")
        ok = False
    adx = spec.get("adx", {})
    pairs: list[tuple[str, str]] = []
    if not isinstance(adx, dict) or (not adx and "adx" in spec):
        problem((*where, "adx"), "应为“分类: 选项”的映射，如 {GENDER: FMLE} (expected category: option pairs)")
        ok = False
    else:
        for category, option in adx.items():
            if not _XML_NAME.match(category) or category in RESERVED_ADX:
                problem((*where, "adx", category), f"分类编码 {category!r} 不能用作 XML 属性名（字母或 _ 开头，仅字母数字 _.-，"
                                                   "且不能是 ADX 自身的属性名）(the category must be a usable XML attribute "
                                                   "name, and not one of ADX's own)", key=True)
                ok = False
            elif not _theirs(option):
                problem((*where, "adx", category), "应为分类选项编码（文本）(expected a category option code as text)")
                ok = False
            else:
                pairs.append((category, option))
    if not ok or not isinstance(element, str) or not isinstance(coc, str):
        return None
    return ElementRef(element, coc, tuple(sorted(pairs)))


def _units(data: dict[str, Any], problem: Report) -> dict[str, str]:
    section = data["units"]
    out: dict[str, str] = {}
    if not isinstance(section, dict):
        problem(("units",), "应为“单位编码: 组织机构”的映射 (expected a mapping: unit code: organisation unit)")
        return out
    seen: dict[str, str] = {}
    for ours, theirs in section.items():
        where: Where = ("units", ours)
        if not valid_unit(ours):
            problem(where, f"不是本平台的单位编码 {ours!r}（2/4/6/9/12 位区划代码，或如 5101-TJJ 的部门编码；"
                           "数字编码请加引号）(not one of our unit codes; quote numeric codes)", key=True)
            continue
        if not _theirs(theirs):
            problem(where, f"组织机构标识无效 {theirs!r}，应为文本（数字请加引号）"
                           "(invalid organisation unit uid or code: write it as quoted text)")
            continue
        other = seen.setdefault(theirs, ours)
        if other != ours:
            problem(where, f"与单位 {other} 映射到同一组织机构 {theirs!r}，映射须一一对应 "
                           f"(collides with {other}: the map must be one to one)")
            continue
        out[ours] = theirs
    return out
