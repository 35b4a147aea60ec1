"""The Excel template offices fill in (.xlsx) ⇄ the framework model.

Sheets: 设置 (settings: one 项目/值 pair per row), 指标体系 (one row per indicator: the level-1/2/3
name columns say where it sits in the tree), 被考评单位 (units), 加减分项 (bonus, deduction and
veto items), 等次 (grades). Reading produces the same document the YAML loader does, with every
value remembering its cell, so a problem is reported as ``file 指标体系!G5: …``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from openpyxl import Workbook, load_workbook
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter

from aggregator.framework import Framework, Indicator
from aggregator.numbers import to_text
from nodes.yamlfile import FrameworkFileError, Located, Where

SETTINGS = "设置"
INDICATORS = "指标体系"
UNITS = "被考评单位"
ADJUSTMENTS = "加减分项"
GRADES = "等次"

SETTING_KEYS = {  # label → document key
    "发布单位代码": "issuer", "发布单位": "issuer_name", "考评年度": "cycle", "类别": "class", "版本": "version",
    "标题": "title", "有效天数": "valid_days", "缺失数据处理": "missing_policy", "加分上限": "bonus_cap",
    "减分上限": "deduction_cap", "评定等次的报告期": "graded_periods",
}
COLUMNS = ("一级指标", "二级指标", "三级指标", "指标编码", "计量单位", "方向", "权重", "目标值", "分单位目标",
           "分类目标", "评分方法", "方法参数", "封顶", "数据提供单位", "报送频次", "必须分解", "衔接上级指标",
           "衔接规则", "汇总规则", "中期目标", "分期目标")
FIELD = {  # column → indicator key in the document
    "指标编码": "code", "计量单位": "unit", "方向": "direction", "权重": "weight", "目标值": "target",
    "分单位目标": "targets", "分类目标": "class_targets", "评分方法": "method", "方法参数": "params", "封顶": "cap",
    "数据提供单位": "provider", "报送频次": "frequency", "必须分解": "must_cascade", "汇总规则": "rollup",
    "中期目标": "interim", "分期目标": "period_targets",
}
DIRECTION_WORDS = {"越高越好": "higher", "越低越好": "lower", "higher": "higher", "lower": "lower"}
KIND_WORDS = {"加分": "bonus", "减分": "deduction", "一票否决": "veto", "bonus": "bonus", "deduction": "deduction",
              "veto": "veto"}
INTERIM_WORDS = {"按时间进度": "proportional", "同全年目标": "same", "中期不考核": "none", "proportional": "proportional",
                 "same": "same", "none": "none"}
INTERIM_ZH = {"proportional": "按时间进度", "same": "同全年目标", "none": "中期不考核"}
YES = {"是", "Y", "y", "yes", "true", "True", "1", True}


def _pairs(text: Any, where: str) -> dict[str, str]:
    """``a=1; b=2`` (full-width ；＝ also accepted) → {"a": "1", "b": "2"}."""
    if text is None or str(text).strip() == "":
        return {}
    out: dict[str, str] = {}
    for part in str(text).replace("；", ";").replace("＝", "=").split(";"):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise FrameworkFileError(f"{where}: 应写作 名称=值; 名称=值，实为 {part.strip()!r} (expected name=value pairs)",
                                     code="workbook.bad_pairs")
        out[key.strip()] = value.strip()
    return out


def read_workbook(path: Path) -> Located:
    try:
        wb = load_workbook(path, data_only=True)  # not read_only: every cell must know its coordinate
    except FileNotFoundError:
        raise FrameworkFileError(f"{path}: 文件不存在 (file not found)", code="workbook.not_found") from None
    except Exception as exc:  # openpyxl raises many kinds for a file that is not a workbook
        raise FrameworkFileError(f"{path}: 不是有效的 Excel 文件 (.xlsx) (not an Excel workbook): {exc}",
                                 code="workbook.not_a_workbook") from None
    try:
        for sheet in (SETTINGS, INDICATORS):
            if sheet not in wb.sheetnames:
                raise FrameworkFileError(f"{path}: 缺少工作表“{sheet}” (missing sheet); "
                                         "可用 appraise framework template 生成模板", code="workbook.missing_sheet")
        doc = Located(path, {})
        data: dict[str, Any] = doc.data
        for row in wb[SETTINGS].iter_rows(min_row=2):
            label, value = (row[0].value, row[1].value) if len(row) >= 2 else (row[0].value, None)
            if label is None:
                continue
            key = SETTING_KEYS.get(str(label).strip())
            if key is None:
                raise FrameworkFileError(f"{path} {SETTINGS}!A{row[0].row}: 未知设置项 {label!r}；"
                                         f"可用：{', '.join(SETTING_KEYS)} (unknown setting)", code="workbook.unknown_setting")
            if value is not None and str(value).strip() != "":
                text = str(value).strip()
                if key in ("version", "valid_days") and text.isdigit():
                    value = int(text)  # typed as text in the sheet
                data[key] = text if key in ("issuer", "cycle", "class", "issuer_name", "title",
                                            "missing_policy", "graded_periods") else value
                doc.lines[(key,)] = f"{SETTINGS}!B{row[0].row}"
        data["indicators"] = _indicators(path, wb[INDICATORS], doc)
        doc.lines[("indicators",)] = f"{INDICATORS}!A2"
        if UNITS in wb.sheetnames:
            data["units"] = _rows(wb[UNITS], doc, "units", ("code", "name", "class"))
        if ADJUSTMENTS in wb.sheetnames:
            rows = _rows(wb[ADJUSTMENTS], doc, "adjustments", ("code", "name", "kind", "max_points", "grade_cap"))
            for r in rows:
                r["kind"] = KIND_WORDS.get(str(r.get("kind", "")).strip(), r.get("kind"))
            data["adjustments"] = rows
        if GRADES in wb.sheetnames:
            grades = _rows(wb[GRADES], doc, "grades", ("name", "min_score", "quota"))
            if grades:
                data["grades"] = grades
        return doc
    finally:
        wb.close()


def _rows(ws: Any, doc: Located, key: str, fields: tuple[str, ...]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for row in ws.iter_rows(min_row=2):
        cells = list(row)[: len(fields)]
        if all(c.value is None or str(c.value).strip() == "" for c in cells):
            continue
        item: dict[str, Any] = {}
        for f, c in zip(fields, cells, strict=False):
            if c.value is not None and str(c.value).strip() != "":
                item[f] = str(c.value).strip() if f in ("code", "name", "class", "kind", "grade_cap") else c.value
                doc.lines[(key, len(out), f)] = f"{ws.title}!{c.coordinate}"
        doc.lines[(key, len(out))] = f"{ws.title}!A{cells[0].row}"
        out.append(item)
    return out


def _indicators(path: Path, ws: Any, doc: Located) -> list[dict[str, Any]]:
    header = [str(c.value).strip() if c.value is not None else "" for c in next(ws.iter_rows(min_row=1, max_row=1))]
    missing = [c for c in ("一级指标", "二级指标", "三级指标", "指标编码", "权重") if c not in header]
    if missing:
        raise FrameworkFileError(f"{path} {ws.title}!1: 表头缺少列 {', '.join(missing)} (missing columns)",
                                 code="workbook.missing_columns")
    col = {name: i for i, name in enumerate(header)}
    roots: list[dict[str, Any]] = []
    stack: list[tuple[int, dict[str, Any], Where]] = []  # (level, node, where)
    for row in ws.iter_rows(min_row=2):
        cells = list(row)
        values = {name: cells[i].value if i < len(cells) else None for name, i in col.items()}
        if all(v is None or str(v).strip() == "" for v in values.values()):
            continue
        names = [values.get(n) for n in ("一级指标", "二级指标", "三级指标")]
        filled = [i for i, n in enumerate(names) if n is not None and str(n).strip() != ""]
        r = cells[0].row
        if not filled:
            raise FrameworkFileError(f"{path} {ws.title}!A{r}: 一级/二级/三级指标名称须填写其一 "
                                     "(name the indicator at its level)", code="workbook.no_name")
        level = filled[-1] + 1
        node: dict[str, Any] = {"name": str(names[level - 1]).strip()}
        for column, key in FIELD.items():
            v = values.get(column)
            if v is None or str(v).strip() == "":
                continue
            place = f"{ws.title}!{get_column_letter(col[column] + 1)}{r}"
            if key in ("targets", "class_targets", "params", "period_targets"):
                v = _pairs(v, f"{path} {place}")
            elif key == "direction":
                v = DIRECTION_WORDS.get(str(v).strip(), str(v).strip())
            elif key == "interim":
                v = INTERIM_WORDS.get(str(v).strip(), str(v).strip())
            elif key == "must_cascade":
                v = v in YES or str(v).strip() in YES
            elif key in ("code", "unit", "method", "provider", "frequency", "rollup"):
                v = str(v).strip()
            node[key] = v
            node.setdefault("_cells", {})[key] = place
        link_to, link_rule = values.get("衔接上级指标"), values.get("衔接规则")
        if link_to is not None and str(link_to).strip():
            # "A1", or with shares "A1=0.6; A2=0.4" (one leaf feeding several parent indicators)
            text = str(link_to).strip()
            place = f"{path} {ws.title}!{get_column_letter(col['衔接上级指标'] + 1)}{r}"
            shares = _pairs(text, place) if "=" in text or "＝" in text else {text: "1"}
            rule = {"rule": str(link_rule).strip()} if link_rule is not None and str(link_rule).strip() else {}
            node["links"] = [{"indicator": k, "share": v, **rule} for k, v in shares.items()]
        while stack and stack[-1][0] >= level:
            stack.pop()
        if level > 1 and (not stack or stack[-1][0] != level - 1):
            raise FrameworkFileError(f"{path} {ws.title}!A{r}: 第{level}级指标前缺少其上级指标行 (a level-{level} row needs its "
                                     f"level-{level - 1} parent above it)", code="workbook.no_parent_row")
        if stack:
            where: Where = (*stack[-1][2], "children", len(stack[-1][1].setdefault("children", [])))
            stack[-1][1]["children"].append(node)
        else:
            where = ("indicators", len(roots))
            roots.append(node)
        doc.lines[where] = f"{ws.title}!A{r}"
        for key, place in node.pop("_cells", {}).items():
            doc.lines[(*where, key)] = place
            if key in ("targets", "class_targets", "params", "period_targets"):
                for k in node[key]:
                    doc.lines[(*where, key, k)] = place
        stack.append((level, node, where))
    return roots


# ------------------------------------------------------------------- export
def write_workbook(fw: Framework, path: Path) -> None:
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = SETTINGS
    ws.append(["项目", "值"])
    settings = {"发布单位代码": fw.issuer, "发布单位": fw.issuer_name, "考评年度": fw.cycle, "类别": fw.unit_class,
                "版本": fw.version, "标题": fw.title,
                "有效天数": max(1, (fw.expires_at - fw.issued_at) // 86400) if fw.expires_at > fw.issued_at else 400,
                "缺失数据处理": fw.missing_policy,
                "加分上限": None if fw.bonus_cap is None else to_text(fw.bonus_cap),
                "减分上限": None if fw.deduction_cap is None else to_text(fw.deduction_cap),
                "评定等次的报告期": ", ".join(fw.graded_periods)}
    for label, value in settings.items():
        ws.append([label, value])
    ws.column_dimensions["A"].width, ws.column_dimensions["B"].width = 14, 60

    ind_ws = wb.create_sheet(INDICATORS)
    ind_ws.append(list(COLUMNS))
    depth = {i.code: 1 for i in fw.indicators}
    by = {i.code: i for i in fw.indicators}
    for i in fw.indicators:
        d, cur = 1, i
        while cur.parent_code and cur.parent_code in by:
            d, cur = d + 1, by[cur.parent_code]
        depth[i.code] = d
    for i in _tree_order(fw):
        names: list[str | None] = [None, None, None]
        names[min(depth[i.code], 3) - 1] = i.name
        ind_ws.append([*names, *_row(i)])
    for idx, width in enumerate((14, 16, 22, 10, 12, 10, 8, 10, 28, 24, 16, 36, 6, 14, 8, 8, 12, 10, 10, 12, 28),
                                start=1):
        ind_ws.column_dimensions[get_column_letter(idx)].width = width

    u_ws = wb.create_sheet(UNITS)
    u_ws.append(["代码", "名称", "类别"])
    for u in fw.units:
        u_ws.append([u.code, u.name, u.unit_class])
    a_ws = wb.create_sheet(ADJUSTMENTS)
    a_ws.append(["编码", "名称", "类型", "单项上限", "等次上限"])
    kinds = {"bonus": "加分", "deduction": "减分", "veto": "一票否决"}
    for a in fw.adjustments:
        a_ws.append([a.code, a.name, kinds.get(a.kind, a.kind), None if a.max_points is None else to_text(a.max_points),
                     a.grade_cap or None])
    g_ws = wb.create_sheet(GRADES)
    g_ws.append(["等次", "最低分", "名额比例"])
    for g in fw.grades:
        g_ws.append([g.name, to_text(g.min_score), None if g.quota is None else to_text(g.quota)])
    for sheet in wb.worksheets:
        for cell in sheet[1]:
            cell.font = Font(bold=True)
            cell.fill = PatternFill("solid", fgColor="DDEBF7")
            cell.alignment = Alignment(horizontal="center")
        sheet.freeze_panes = "A2"
    wb.save(path)


def _tree_order(fw: Framework) -> list[Indicator]:
    kids: dict[str, list[Indicator]] = {}
    for i in fw.indicators:
        kids.setdefault(i.parent_code, []).append(i)
    out: list[Indicator] = []

    def walk(code: str) -> None:
        for child in kids.get(code, []):
            out.append(child)
            walk(child.code)

    walk("")
    return out


def _links(i: Indicator) -> str | None:
    if not i.links:
        return None
    if len(i.links) == 1 and i.links[0].share == 1:
        return i.links[0].parent_indicator
    return "; ".join(f"{lk.parent_indicator}={to_text(lk.share)}" for lk in i.links)


def _row(i: Indicator) -> list[Any]:
    def pairs(m: Any) -> str | None:
        return "; ".join(f"{k}={to_text(v) if not isinstance(v, str) else v}" for k, v in sorted(m.items())) or None

    if not i.leaf:
        return [i.code, None, None, to_text(i.weight), *[None] * 14]
    return [
        i.code, i.measure_unit or None, "越高越好" if i.direction == "higher" else "越低越好", to_text(i.weight),
        None if i.target is None else to_text(i.target), pairs(i.unit_targets), pairs(i.class_targets), i.method,
        pairs(i.params), to_text(i.cap), i.provider or None, i.frequency or None, "是" if i.must_cascade else "否",
        _links(i), i.links[0].rule if i.links else None, i.rollup, INTERIM_ZH.get(i.interim, i.interim or None),
        pairs(i.period_targets),
    ]
