"""Framework files people write (YAML) → :class:`aggregator.framework.Framework`."""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from aggregator.framework import (
    ASSESSED_METHODS,
    DEFAULT_GRADED,
    Adjustment,
    Framework,
    FrameworkRef,
    Indicator,
    Link,
    Unit,
    check_links,
    check_structure,
    rule_name,
)
from aggregator.grading import DEFAULT_GRADES, GradeRule
from aggregator.numbers import NumberError, parse_decimal, to_text
from nodes.yamlfile import FileError, FrameworkFileError, Located, Where, load
from sync.codec import encode_framework

DAY = 86400


def _error(doc: Located, where: Where, message: str, code: str) -> FrameworkFileError:
    """``doc.error`` (file and line prefixed) with a code."""
    return FrameworkFileError(str(doc.error(where, message)), code=code)


def load_document(path: Path) -> Located:
    """A framework document from YAML or from the Excel template (.xlsx), in one shape."""
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        from nodes.framework_excel import read_workbook

        return read_workbook(path)
    # Unreadable or malformed YAML (the file's other problems carry codes of their own).
    return load(path, code="framework_file.malformed")


def _num(doc: Located, where: Where, value: Any, fix: str) -> Decimal:
    try:
        return parse_decimal(value, "")
    except NumberError as exc:
        # Keep reading: every bad number in the file is reported in one pass.
        doc.problems.append(str(doc.error(where, f"{str(exc).removeprefix(': ')}；{fix}")))
        return Decimal(1)


def _text(doc: Located, where: Where, value: Any, required: bool = True) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str | int) or isinstance(value, bool) or (required and str(value).strip() == ""):
        raise _error(doc, where, f"应为非空文字，实为 {value!r} (expected text)", "framework_file.not_text")
    return str(value)


def load_framework(path: Path, *, units: tuple[Unit, ...] = (), now: int) -> Framework:
    """Load and check a framework file; every problem names the file and line.

    ``units`` fills in the evaluated units when the file leaves them to the issuing node.
    """
    fw, problems = read_framework(path, units=units, now=now)
    if problems:
        raise FrameworkFileError("\n".join(problems), code="framework_file.structure")
    return fw


def read_framework(path: Path, *, units: tuple[Unit, ...] = (), now: int) -> tuple[Framework, list[str]]:
    """The framework in a file and its structural problems (each ``file:line: [code] problem``).

    Raises only when the file cannot be read into a framework at all (syntax, shapes, numbers).
    """
    doc = load_document(path)
    data = doc.data
    if not isinstance(data, dict):
        raise _error(doc, (), "应为键值映射，包含 issuer、cycle、class、indicators 等 (expected a mapping)",
                     "framework_file.not_a_mapping")
    for key in ("issuer", "cycle", "class", "indicators"):
        if key not in data:
            raise _error(doc, (), f"缺少必填项 {key!r} (missing required key)", "framework_file.missing_key")
    version = data.get("version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _error(doc, ("version",), f"版本应为正整数，实为 {version!r} (version must be a positive integer)",
                     "framework_file.bad_version")
    valid_days = data.get("valid_days", 400)
    if not isinstance(valid_days, int) or valid_days < 1:
        raise _error(doc, ("valid_days",), "有效天数应为正整数 (valid_days must be a positive integer)",
                     "framework_file.bad_valid_days")
    file_units = []
    for i, u in enumerate(data.get("units") or []):
        if not isinstance(u, dict):
            raise _error(doc, ("units", i), "应为 {code, name} (expected a mapping with code and name)",
                         "framework_file.bad_unit")
        file_units.append(Unit(_text(doc, ("units", i, "code"), u.get("code")),
                               _text(doc, ("units", i, "name"), u.get("name")),
                               str(u.get("class", data["class"]))))
    indicators: list[Indicator] = []
    if not isinstance(data["indicators"], list) or not data["indicators"]:
        raise _error(doc, ("indicators",), "应为非空的指标列表 (expected a non-empty list of indicators)",
                     "framework_file.no_indicators")
    for i, node in enumerate(data["indicators"]):
        _walk(doc, ("indicators", i), node, "", indicators)
    fw = Framework(
        adjustments=_adjustments(doc, data.get("adjustments")),
        grades=_grades(doc, data.get("grades")),
        missing_policy=str(data.get("missing_policy", "zero")),
        graded_periods=_graded(doc, data.get("graded_periods")),
        bonus_cap=_num(doc, ("bonus_cap",), data["bonus_cap"], "加分总额上限，如 bonus_cap: 5")
        if data.get("bonus_cap") is not None else None,
        deduction_cap=_num(doc, ("deduction_cap",), data["deduction_cap"], "减分总额上限，如 deduction_cap: 10")
        if data.get("deduction_cap") is not None else None,
        issuer=_text(doc, ("issuer",), data["issuer"]),
        issuer_name=_text(doc, ("issuer_name",), data.get("issuer_name"), required=False),
        cycle=_text(doc, ("cycle",), data["cycle"]),
        unit_class=_text(doc, ("class",), data["class"]),
        version=version,
        title=_text(doc, ("title",), data.get("title"), required=False),
        issued_at=now,
        expires_at=now + valid_days * DAY,
        units=tuple(file_units) or units,
        indicators=tuple(indicators),
    )
    if doc.problems:  # structure checks would only echo these (e.g. weights that cannot add up)
        raise FrameworkFileError("\n".join(doc.problems), code="framework_file.bad_numbers")
    return fw, [f"{doc.at((*_find(doc, p.indicator), *p.where))}: {p}"
                for p in check_structure(fw, units_known=bool(fw.units))]


def _find(doc: Located, code: str) -> Where:
    def walk(node: Any, where: Where) -> Where | None:
        if isinstance(node, dict):
            if str(node.get("code")) == code and code:
                return where
            for k, v in node.items():
                found = walk(v, (*where, k))
                if found is not None:
                    return found
        elif isinstance(node, list):
            for i, v in enumerate(node):
                found = walk(v, (*where, i))
                if found is not None:
                    return found
        return None
    return walk(doc.data, ()) or ()


def _adjustments(doc: Located, raw: Any) -> tuple[Adjustment, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise _error(doc, ("adjustments",), "应为加减分项列表 (expected a list of bonus/deduction/veto items)",
                     "framework_file.bad_adjustments")
    out = []
    for i, item in enumerate(raw):
        where: Where = ("adjustments", i)
        if not isinstance(item, dict):
            raise _error(doc, where, "应为 {code, name, kind, max_points} (expected a mapping)", "framework_file.bad_adjustment")
        out.append(Adjustment(
            code=_text(doc, (*where, "code"), item.get("code")),
            name=_text(doc, (*where, "name"), item.get("name")),
            kind=_text(doc, (*where, "kind"), item.get("kind")),
            max_points=_num(doc, (*where, "max_points"), item["max_points"], "单项分值上限")
            if item.get("max_points") is not None else None,
            grade_cap=str(item.get("grade_cap", "")),
        ))
    return tuple(out)


def _graded(doc: Located, raw: Any) -> tuple[str, ...]:
    """``graded_periods: [Y, H1]``, or one text ``Y, H1`` (as the Excel settings sheet has it)."""
    if raw is None:
        return DEFAULT_GRADED
    if isinstance(raw, str):
        return tuple(p for p in re.split(r"[\s,，、;；]+", raw) if p)
    if not isinstance(raw, list) or not all(isinstance(p, str) for p in raw):
        raise _error(doc, ("graded_periods",), "应为报告期列表，如 [Y, H1] (expected a list of periods such as [Y, H1])",
                     "framework_file.bad_graded_periods")
    return tuple(raw)


def _grades(doc: Located, raw: Any) -> tuple[GradeRule, ...]:
    if raw is None:
        return DEFAULT_GRADES
    if not isinstance(raw, list) or not raw:
        raise _error(doc, ("grades",), "应为等次规则列表，如 [{name: 优秀, min_score: 90, quota: 0.2}, …] (expected a list)",
                     "framework_file.bad_grades")
    out = []
    for i, g in enumerate(raw):
        where: Where = ("grades", i)
        if not isinstance(g, dict):
            raise _error(doc, where, "应为 {name, min_score, quota} (expected a mapping)", "framework_file.bad_grade")
        out.append(GradeRule(
            name=_text(doc, (*where, "name"), g.get("name")),
            min_score=_num(doc, (*where, "min_score"), g.get("min_score"), "等次最低分，如 min_score: 90"),
            quota=_num(doc, (*where, "quota"), g["quota"], "名额比例，如 quota: 0.2") if g.get("quota") is not None
            else None,
        ))
    return tuple(out)


def _mapping(doc: Located, where: Where, raw: Any, what: str) -> dict[str, Decimal]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise _error(doc, where, f"应为 {what}: 目标值 的映射 (expected {what}: target)", "framework_file.bad_targets")
    return {str(k): _num(doc, (*where, k), v, "请填写目标值") for k, v in raw.items()}


RATE_UNITS = frozenset({"%", "％", "‰", "百分点", "pp"})
RATE_NAMES = ("率", "增速", "占比", "比例", "比重")


def is_rate(ind: Indicator) -> bool:
    """Measured as a rate or a percentage: by its unit, or by a name that says so (…率, …增速)."""
    return ind.measure_unit.strip() in RATE_UNITS or ind.name.strip().endswith(RATE_NAMES)


def _walk(doc: Located, where: Where, node: Any, parent: str, out: list[Indicator]) -> None:
    if not isinstance(node, dict):
        raise _error(doc, where, "每个指标应为键值映射 (each indicator must be a mapping)", "framework_file.bad_indicator")
    code = _text(doc, (*where, "code"), node.get("code"))
    if "weight" not in node:
        raise _error(doc, where, f"指标 {code} 缺少权重 weight (missing weight)", "framework_file.missing_weight")
    weight = _num(doc, (*where, "weight"), node["weight"], "请填写权重分值，如 weight: 20")
    children = node.get("children")
    targets = _mapping(doc, (*where, "targets"), node.get("targets"), "单位编码")
    class_targets = _mapping(doc, (*where, "class_targets"), node.get("class_targets"), "类别")
    period_targets = _mapping(doc, (*where, "period_targets"), node.get("period_targets"), "报告期（如 Q1）")
    raw_params = node.get("params") or {}
    if not isinstance(raw_params, dict):
        raise _error(doc, (*where, "params"), "应为 参数名: 值 的映射 (expected name: value)", "framework_file.bad_params")
    params = {str(k): str(v) for k, v in raw_params.items()}
    raw_links: list[tuple[Where, Any]] = []
    if node.get("link") is not None:
        raw_links.append(((*where, "link"), node["link"]))
    if node.get("links") is not None:
        if not isinstance(node["links"], list):
            raise _error(doc, (*where, "links"), "应为衔接列表 [{indicator, rule, share}, …] (expected a list of links)",
                         "framework_file.bad_links")
        raw_links += [((*where, "links", k), item) for k, item in enumerate(node["links"])]
    links = []
    for lw, raw_link in raw_links:
        if not isinstance(raw_link, dict) or "indicator" not in raw_link:
            raise _error(doc, lw, "应为 {indicator: 上级指标编码, rule: sum, share: 1} (link names the parent indicator)",
                         "framework_file.bad_link")
        # The parent framework's digest is pinned by the publishing node: the one in force.
        links.append(Link("", _text(doc, (*lw, "indicator"), raw_link["indicator"]),
                          str(raw_link.get("rule", node.get("rollup", "sum"))),
                          _num(doc, (*lw, "share"), raw_link["share"], "衔接份额，如 share: 0.6")
                          if raw_link.get("share") is not None else Decimal(1)))
    ind = Indicator(
        code=code,
        links=tuple(links),
        name=_text(doc, (*where, "name"), node.get("name")),
        weight=weight,
        parent_code=parent,
        leaf=children is None,
        measure_unit=str(node.get("unit", "")),
        direction=str(node.get("direction", "higher")),
        target=_num(doc, (*where, "target"), node["target"], "请填写目标值") if node.get("target") is not None else None,
        unit_targets=targets,
        method=str(node.get("method", "completion_ratio")),
        cap=_num(doc, (*where, "cap"), node.get("cap", "1.2"), "封顶系数如 cap: 1.2"),
        must_cascade=bool(node.get("must_cascade", False)),
        rollup=str(node.get("rollup", "sum")),
        params=params,
        class_targets=class_targets,
        provider=str(node.get("provider", "")),
        frequency=str(node.get("frequency", "")),
        interim=str(node.get("interim") or ""),
        period_targets=period_targets,
    )
    if ind.leaf and ind.method not in ASSESSED_METHODS and rule_name(ind.rollup) == "sum" and is_rate(ind) \
            and not str(node.get("rollup_reason", "")).strip():
        # Rates do not add up: a county's 8 % growth split as 4 % per township is a wrong target and a
        # wrong roll-up. Summing one is allowed only when the file says why (rollup_reason).
        raise _error(doc, (*where, "rollup"),
                     f"[{code}] {ind.name} 是比率或百分比（{ind.measure_unit or '名称'}），不能按 sum 汇总；请写 rollup: "
                     "mean、weighted_mean:<权重指标> 或 ratio_of_sums:<分子>/<分母>，或以 rollup_reason 说明为何相加 "
                     "(a rate or percentage does not add up: choose mean, weighted_mean or ratio_of_sums, "
                     "or say why in rollup_reason)", "framework_file.sum_of_rates")
    out.append(ind)
    if children is not None:
        if not isinstance(children, list) or not children:
            raise _error(doc, (*where, "children"), "应为非空的下级指标列表 (expected a non-empty list)",
                         "framework_file.bad_children")
        for i, child in enumerate(children):
            _walk(doc, (*where, "children", i), child, code, out)


def to_document(fw: Framework) -> dict[str, Any]:
    """The framework as the YAML document a person would write (what ``load_framework`` reads)."""
    kids: dict[str, list[Indicator]] = {}
    for i in fw.indicators:
        kids.setdefault(i.parent_code, []).append(i)

    def node(i: Indicator) -> dict[str, Any]:
        out: dict[str, Any] = {"code": i.code, "name": i.name, "weight": _plain(i.weight)}
        if not i.leaf:
            out["children"] = [node(c) for c in kids.get(i.code, [])]
            return out
        out.update({"unit": i.measure_unit, "direction": i.direction, "method": i.method})
        if i.target is not None:
            out["target"] = _plain(i.target)
        if i.unit_targets:
            out["targets"] = {k: _plain(v) for k, v in sorted(i.unit_targets.items())}
        if i.class_targets:
            out["class_targets"] = {k: _plain(v) for k, v in sorted(i.class_targets.items())}
        if i.params:
            out["params"] = dict(sorted(i.params.items()))
        out["cap"] = _plain(i.cap)
        out["rollup"] = i.rollup
        if i.must_cascade:
            out["must_cascade"] = True
        if len(i.links) == 1 and i.links[0].share == 1:
            out["link"] = {"indicator": i.links[0].parent_indicator, "rule": i.links[0].rule}
        elif i.links:
            out["links"] = [{"indicator": lk.parent_indicator, "rule": lk.rule, "share": _plain(lk.share)}
                            for lk in i.links]
        if i.provider:
            out["provider"] = i.provider
        if i.frequency:
            out["frequency"] = i.frequency
        if i.interim:
            out["interim"] = i.interim
        if i.period_targets:
            out["period_targets"] = {k: _plain(v) for k, v in sorted(i.period_targets.items())}
        return out

    doc: dict[str, Any] = {"issuer": fw.issuer, "issuer_name": fw.issuer_name, "cycle": fw.cycle,
                           "class": fw.unit_class, "version": fw.version, "title": fw.title,
                           "valid_days": max(1, (fw.expires_at - fw.issued_at) // DAY) if fw.expires_at > fw.issued_at
                           else 400, "missing_policy": fw.missing_policy}
    if fw.graded_periods != DEFAULT_GRADED:
        doc["graded_periods"] = list(fw.graded_periods)
    if fw.units:
        doc["units"] = [{"code": u.code, "name": u.name, "class": u.unit_class} for u in fw.units]
    if fw.grades != DEFAULT_GRADES:
        doc["grades"] = [{"name": g.name, "min_score": _plain(g.min_score),
                          **({"quota": _plain(g.quota)} if g.quota is not None else {})} for g in fw.grades]
    for key, cap in (("bonus_cap", fw.bonus_cap), ("deduction_cap", fw.deduction_cap)):
        if cap is not None:
            doc[key] = _plain(cap)
    if fw.adjustments:
        doc["adjustments"] = [{"code": a.code, "name": a.name, "kind": a.kind,
                               **({"max_points": _plain(a.max_points)} if a.max_points is not None else {}),
                               **({"grade_cap": a.grade_cap} if a.grade_cap else {})} for a in fw.adjustments]
    doc["indicators"] = [node(i) for i in kids.get("", [])]
    return doc


def _plain(d: Decimal) -> int | str:
    """Whole numbers as YAML integers, everything else as exact decimal text."""
    text = to_text(d)
    return int(text) if text.lstrip("-").isdigit() else text


def dump_yaml(fw: Framework) -> str:
    return yaml.safe_dump(to_document(fw), allow_unicode=True, sort_keys=False, width=120)


def save_framework(fw: Framework, path: Path) -> None:
    """Write ``fw`` as YAML or as the Excel template, by the file's suffix."""
    if path.suffix.lower() == ".xlsx":
        from nodes.framework_excel import write_workbook

        write_workbook(fw, path)
    else:
        path.write_text(dump_yaml(fw), encoding="utf-8")


def pin_to_parent(fw: Framework, parent: Framework, parent_digest: str) -> Framework:
    """What a publishing node does: pin the parent framework in force and cite it in every link."""
    return replace(
        fw, parent=FrameworkRef(parent.issuer, parent.cycle, parent.unit_class, parent.version, parent_digest),
        indicators=tuple(replace(i, links=tuple(replace(lk, parent_framework_digest=parent_digest) for lk in i.links))
                         for i in fw.indicators))


def validate_against_parent(path: Path, parent_path: Path, *, now: int) -> list[str]:
    """Every linkage problem of the framework at ``path`` against the one at ``parent_path``,
    each as ``file:line: [indicator] problem``."""
    parent = load_framework(parent_path, now=now)
    child, _ = read_framework(path, now=now)  # its own structural problems are reported by the caller
    digest = hashlib.sha256(encode_framework(parent)).hexdigest()
    doc, parent_doc = load_document(path), load_document(parent_path)
    out: list[str] = []
    if child.issuer not in {u.code for u in parent.units} and parent.units:
        out.append(f"{doc.at(('issuer',))}: 发布者 {child.issuer} 不是上级指标体系的被考评单位 "
                   "(issuer is not a unit of the parent framework)")
    for p in check_links(parent, digest, pin_to_parent(child, parent, digest), child.issuer):
        in_child = _find(doc, p.indicator) if child.indicator(p.indicator) else None
        where = doc.at(in_child) if in_child is not None else parent_doc.at(_find(parent_doc, p.indicator))
        out.append(f"{where}: {p}")
    return out


__all__ = ["FileError", "FrameworkFileError", "load_framework", "validate_against_parent"]
