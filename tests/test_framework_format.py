"""The framework file format, its wire form, and the engine on the complete example."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.framework import Indicator, Unit, check_structure
from aggregator.inputs import Event, Milestone, UnitInputs
from aggregator.scoring import appraise
from nodes.framework_file import load_framework
from nodes.launcher import DATA
from sync.codec import decode_framework, encode_framework
from tests.support.properties import generous_deadline

D = Decimal
EXAMPLE = DATA / "example-full-framework.yaml"


def test_complete_example_loads_and_round_trips() -> None:
    fw = load_framework(EXAMPLE, now=0)
    assert check_structure(fw) == []
    assert {i.method for i in fw.leaves()} >= {"completion_ratio", "threshold", "growth", "efficacy", "versus_peers",
                                               "task_list", "raters", "survey", "zscore", "negative_list"}
    a1 = fw.indicator("A1")
    assert a1 is not None and a1.target_for("510104", "中心城区") == D(3200) and a1.target_for("510121", "郊区新城") == 680
    payload = encode_framework(fw)
    assert decode_framework(payload) == fw
    assert encode_framework(decode_framework(payload)) == payload


def test_complete_example_appraised() -> None:
    fw = load_framework(EXAMPLE, now=0)
    ms = (Milestone("m1", date(2026, 3, 31), date(2026, 3, 1)), Milestone("m2", date(2026, 9, 30)))
    common = {"A4": D(30), "B1": D(5000), "C1": D(35)}
    inputs = {
        "510104": UnitInputs(values={**common, "A1": D(3300), "A2": D(9), "A3": D(106), "A4": D(40)},
                             previous={"A3": D(100)}, milestones={"B2": ms},
                             ratings={"B3": [D(70), D(90), D(92), D(95)]},
                             surveys={"B4": {"public": D(90), "deputies": D(88), "experts": D(85), "higher": D(90),
                                             "grassroots": D(80)}},
                             events=(Event("J1", D(2)), Event("C2", D(2)))),
        "510105": UnitInputs(values={**common, "A1": D(3000), "A2": D(6), "A3": D(101), "C1": D(30)},
                             previous={"A3": D(100)}, events=(Event("V1"),)),
        "510121": UnitInputs(values={**common, "A1": D(700)}),
    }
    res = {r.unit: r for r in appraise(fw, inputs, datetime(2026, 12, 31, tzinfo=UTC))}
    assert res["510105"].score >= 60 and res["510105"].grade == "一般" and "veto" in res["510105"].grade_reason
    assert res["510104"].rank == 1 and res["510104"].bonus == 2 and res["510104"].score == D("89.17")
    # 金堂县 is alone in its class and lacks most inputs: re-normalised over what it has; 34 % of a
    # class of one admits no 优秀 however high the score.
    assert res["510121"].rank == 1 and "re-normalised" in str(res["510121"].explain())
    assert res["510121"].score >= 90 and res["510121"].grade == "良好"
    for r in res.values():
        assert r.score == r.score.quantize(D("0.01"))


codes = st.from_regex(r"[A-Z][0-9]{1,3}", fullmatch=True)
decimals = st.decimals(min_value=0, max_value=10**6, places=3).map(lambda d: d.normalize())


@settings(deadline=generous_deadline())
@given(st.lists(st.tuples(codes, decimals, st.dictionaries(st.sampled_from(["floor", "baseline", "c"]),
                                                           st.from_regex(r"0\.[0-9]{1,3}", fullmatch=True))),
                min_size=1, max_size=8, unique_by=lambda t: t[0]),
       st.dictionaries(st.sampled_from(["甲类", "乙类"]), decimals))
def test_wire_round_trip(leaves: list[tuple[str, Decimal, dict[str, str]]], class_targets: dict[str, Decimal]) -> None:
    from aggregator.framework import Framework

    inds = tuple(Indicator(code=c, name=c, weight=D(1), parent_code="G", leaf=True, target=t + 1, params=p,
                           class_targets=class_targets) for c, t, p in leaves)
    fw = Framework("51", "四川省", "2026", "市州", 1, "t", 0, 1, (Unit("5101", "成都市", "甲类"),),
                   (Indicator(code="G", name="G", weight=D(len(leaves))), *inds))
    assert decode_framework(encode_framework(fw)) == fw


def _same(a: object, b: object) -> None:
    from dataclasses import replace

    assert replace(a, issued_at=0, expires_at=0) == replace(b, issued_at=0, expires_at=0)  # type: ignore[type-var]


def test_yaml_and_excel_export_round_trip(tmp_path: Path) -> None:
    from nodes.framework_file import save_framework

    fw = load_framework(EXAMPLE, now=0)
    xlsx, yml = tmp_path / "fw.xlsx", tmp_path / "fw.yaml"
    save_framework(fw, xlsx)
    save_framework(fw, yml)
    _same(load_framework(xlsx, now=0), fw)
    _same(load_framework(yml, now=0), fw)
    sample = load_framework(DATA / "sample-framework.yaml", now=0)
    save_framework(sample, tmp_path / "sample.xlsx")
    _same(load_framework(tmp_path / "sample.xlsx", now=0), sample)


def test_excel_problems_name_sheet_and_cell(tmp_path: Path) -> None:
    from openpyxl import load_workbook

    from nodes.framework_file import save_framework
    from nodes.yamlfile import FileError

    xlsx = tmp_path / "fw.xlsx"
    save_framework(load_framework(EXAMPLE, now=0), xlsx)
    wb = load_workbook(xlsx)
    ws = wb["指标体系"]
    a1_row = next(r[0].row for r in ws.iter_rows(min_row=2) if r[3].value == "A1")
    ws[f"G{a1_row}"] = "十"  # weight not a number
    wb.save(xlsx)
    with pytest.raises(FileError, match=rf"指标体系!G{a1_row}: .*expected a number"):
        load_framework(xlsx, now=0)
    ws[f"G{a1_row}"] = 10
    ws[f"L{a1_row}"] = "floor"  # params without a value
    wb.save(xlsx)
    with pytest.raises(FileError, match=rf"指标体系!L{a1_row}: .*name=value"):
        load_framework(xlsx, now=0)
    ws[f"L{a1_row}"] = "floor=0.6"
    ws[f"D{a1_row}"] = "A2"  # duplicate code
    wb.save(xlsx)
    with pytest.raises(FileError, match=r"指标体系!A\d+: \[A2\] .*duplicate"):
        load_framework(xlsx, now=0)


def test_cli_template_and_export(tmp_path: Path) -> None:
    import subprocess
    import sys

    t = tmp_path / "模板.xlsx"
    r = subprocess.run([sys.executable, "-m", "nodes.cli", "framework", "template", "--out", str(t)],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-m", "nodes.cli", "framework", "validate", str(t)],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0 and "通过" in r.stdout, r.stderr
    back = tmp_path / "back.yaml"
    r = subprocess.run([sys.executable, "-m", "nodes.cli", "framework", "export", str(t), "--out", str(back)],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    _same(load_framework(back, now=0), load_framework(EXAMPLE, now=0))


def test_links_with_shares_in_yaml_and_excel(tmp_path: Path) -> None:
    from nodes.framework_file import save_framework

    src = tmp_path / "links.yaml"
    src.write_text("""\
issuer: "5101"
cycle: "2026"
class: 县市区
indicators:
  - code: A
    name: 经济
    weight: 100
    children:
      - {code: X1, name: 工业增加值, weight: 50, target: 10, link: {indicator: A1}}
      - code: Y
        name: 招商引资到位资金
        weight: 50
        target: 4
        links: [{indicator: A1, share: 0.6}, {indicator: A3, share: 0.4}]
""", encoding="utf-8")
    fw = load_framework(src, now=0)
    y = fw.indicator("Y")
    assert y is not None and [(lk.parent_indicator, lk.share) for lk in y.links] == [("A1", D("0.6")), ("A3", D("0.4"))]
    for out in (tmp_path / "links.xlsx", tmp_path / "back.yaml"):
        save_framework(fw, out)
        _same(load_framework(out, now=0), fw)


INTERIM_YAML = """\
issuer: "51"
cycle: "2026"
class: 市州
graded_periods: [Y, H1]          # the half-year is graded too; quarters and months are not
units:
  - {code: "5101", name: 成都市}
  - {code: "5107", name: 绵阳市}
indicators:
  - code: A
    name: 经济发展
    weight: 100
    children:
      - code: A1
        name: 固定资产投资完成额
        weight: 60
        unit: 亿元
        target: 1000
        targets: {"5101": 2000}
        period_targets: {Q1: 150, H1: 450}   # 分期目标; other periods: time-proportional
      - code: A2
        name: 森林覆盖率
        weight: 20
        unit: "%"
        rollup: mean
        target: 41
        interim: same
      - code: A3
        name: 群众满意度
        weight: 20
        method: survey
        params: {group.public: 1}
        interim: none
"""


def test_interim_fields_in_yaml_and_excel(tmp_path: Path) -> None:
    """Issue 9 item 11: a file states which periods are graded and how each leaf's interim target is derived."""
    from openpyxl import load_workbook

    from aggregator.scoring import score_units
    from nodes.framework_file import save_framework

    src = tmp_path / "interim.yaml"
    src.write_text(INTERIM_YAML, encoding="utf-8")
    fw = load_framework(src, now=0)
    a1, a2, a3 = (fw.indicator(c) for c in ("A1", "A2", "A3"))
    assert fw.graded_periods == ("Y", "H1") and a1 is not None and a2 is not None and a3 is not None
    assert a1.period_targets == {"Q1": 150, "H1": 450} and a2.interim == "same" and a3.interim == "none"
    assert decode_framework(encode_framework(fw)) == fw
    for out in (tmp_path / "interim.xlsx", tmp_path / "back.yaml"):
        save_framework(fw, out)
        _same(load_framework(out, now=0), fw)
    ws = load_workbook(tmp_path / "interim.xlsx")["指标体系"]
    header = [c.value for c in ws[1]]
    a1_row = next(r for r in ws.iter_rows(min_row=2) if r[3].value == "A1")
    a3_row = next(r for r in ws.iter_rows(min_row=2) if r[3].value == "A3")
    assert a1_row[header.index("分期目标")].value == "H1=450; Q1=150"
    assert a3_row[header.index("中期目标")].value == "中期不考核"
    # 成都 (own annual target 2000) is asked for 300 in Q1; the survey waits for the year; the half year is graded.
    q1 = {s.unit: s for s in score_units(fw, {"5101": {"A1": D(300), "A2": D(41)}}, datetime(2026, 4, 10, tzinfo=UTC),
                                         "2026-Q1")}["5101"]
    assert q1.score == 100 and q1.interim and q1.grade == ""
    h1 = score_units(fw, {"5101": {"A1": D(900), "A2": D(41)}, "5107": {"A1": D(100), "A2": D(30)}},
                     datetime(2026, 7, 10, tzinfo=UTC), "2026-H1")
    assert all(s.interim and s.graded and s.grade for s in h1)


def test_interim_nonsense_names_the_line_or_cell_and_the_fix(tmp_path: Path) -> None:
    from openpyxl import load_workbook

    from nodes.framework_file import read_framework, save_framework

    bad = (INTERIM_YAML.replace("graded_periods: [Y, H1]", "graded_periods: [Y, W1]")
           .replace("period_targets: {Q1: 150, H1: 450}", "period_targets:\n          Q1: 150\n          Q5: 450")
           .replace("interim: same", "interim: monthly"))
    src = tmp_path / "bad.yaml"
    src.write_text(bad, encoding="utf-8")
    _, problems = read_framework(src, now=0)
    lines = bad.splitlines()

    def line_of(text: str) -> int:
        return next(n for n, line in enumerate(lines, start=1) if text in line)

    assert any(p.startswith(f"{src}:{line_of('graded_periods')}: ") and "W1" in p and "Y、H、Q、M" in p for p in problems)
    assert any(p.startswith(f"{src}:{line_of('Q5: 450')}: [A1]") and "M01–M12" in p for p in problems), problems
    assert any(p.startswith(f"{src}:{line_of('interim: monthly')}: [A2]") and "proportional（按时间进度）" in p
               for p in problems), problems
    assert len(problems) == 3, problems

    good = tmp_path / "good.yaml"
    good.write_text(INTERIM_YAML, encoding="utf-8")
    xlsx = tmp_path / "bad.xlsx"
    save_framework(load_framework(good, now=0), xlsx)
    wb = load_workbook(xlsx)
    ws, settings = wb["指标体系"], wb["设置"]
    header = [c.value for c in ws[1]]
    column = "ABCDEFGHIJKLMNOPQRSTU"[header.index("分期目标")]
    row = next(r[0].row for r in ws.iter_rows(min_row=2) if r[3].value == "A1")
    ws[f"{column}{row}"] = "Q1=150; Y=1000"
    graded_row = next(r[0].row for r in settings.iter_rows(min_row=2) if r[0].value == "评定等次的报告期")
    settings[f"B{graded_row}"] = "Y、H3"
    wb.save(xlsx)
    _, problems = read_framework(xlsx, now=0)
    assert any(p.startswith(f"{xlsx} 指标体系!{column}{row}: [A1]") and "'Y'" in p and "target" in p for p in problems)
    assert any(p.startswith(f"{xlsx} 设置!B{graded_row}: ") and "'H3'" in p for p in problems), problems
