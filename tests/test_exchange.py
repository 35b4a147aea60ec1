"""Exchange formats (nodes/exchange): round trips, the standards' own published examples, bad documents."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.numbers import to_text
from nodes.exchange import periods
from nodes.exchange.adx import read_adx, write_adx
from nodes.exchange.cells import Cell, ExchangeError
from nodes.exchange.dhis2 import read_data_value_set, write_data_value_set
from nodes.exchange.mapping import IDENTITY, CodeMap, ElementRef, load_map
from nodes.exchange.sdmx import read_sdmx_csv, write_sdmx_csv
from tests.support.properties import generous_deadline

DATA = Path(__file__).parent / "data" / "exchange"
EXPORTED = "2026-07-31T08:00:00Z"


def wheres(exc: pytest.ExceptionInfo[ExchangeError]) -> list[str]:
    return [p.where for p in exc.value.problems]


# ---- periods ----------------------------------------------------------------------------------------

OURS = ["2026-Y", "2026-H1", "2026-H2", *(f"2026-Q{q}" for q in range(1, 5)), *(f"2026-M{m:02d}" for m in range(1, 13))]


@pytest.mark.parametrize("ours", OURS)
def test_periods_have_one_equal_in_each_notation(ours: str) -> None:
    assert periods.from_dhis2(periods.to_dhis2(ours)) == ours
    assert periods.from_adx(periods.to_adx(ours)) == ours
    assert periods.from_sdmx(periods.to_sdmx(ours)) == ours


def test_period_notations_as_the_standards_write_them() -> None:
    assert [periods.to_dhis2(p) for p in ("2026-Y", "2026-H1", "2026-H2", "2026-Q3", "2026-M07")] == \
        ["2026", "2026S1", "2026S2", "2026Q3", "202607"]
    assert [periods.to_adx(p) for p in ("2026-Y", "2026-H2", "2026-Q3", "2026-M07")] == \
        ["2026-01-01/P1Y", "2026-07-01/P6M", "2026-07-01/P3M", "2026-07-01/P1M"]
    assert [periods.to_sdmx(p) for p in ("2026-Y", "2026-H1", "2026-Q3", "2026-M07")] == \
        ["2026", "2026-S1", "2026-Q3", "2026-M07"]
    # SDMX's other spellings of the same periods
    assert periods.from_sdmx("2026-A1") == "2026-Y"
    assert periods.from_sdmx("2026-07") == "2026-M07"


@pytest.mark.parametrize(("reader", "text", "says"), [
    (periods.from_dhis2, "2026W05", "weekly"),
    (periods.from_dhis2, "20260701", "daily"),
    (periods.from_dhis2, "202601B", "bi-monthly"),
    (periods.from_dhis2, "2026April", "financial year"),
    (periods.from_dhis2, "2026AprilS1", "six-monthly April"),
    (periods.from_dhis2, "2026-07", "not a DHIS2 ISO period"),
    (periods.from_adx, "2026-04-01/P1Y", "financial year"),
    (periods.from_adx, "2026-02-01/P3M", "calendar quarter"),
    (periods.from_adx, "2026-07-02/P1M", "calendar month"),
    (periods.from_adx, "2026-10-02/P7D", "P7D has no equal"),
    (periods.from_adx, "2026-11-01/P2M", "P2M has no equal"),
    (periods.from_adx, "2026-07", "not an ADX period"),
    (periods.from_sdmx, "2026-W05", "week"),
    (periods.from_sdmx, "2026-T2", "trimester"),
    (periods.from_sdmx, "2026-D032", "day"),
    (periods.from_sdmx, "2026-07-01", "day"),
    (periods.from_sdmx, "202607", "not an SDMX reporting period"),
])
def test_periods_with_no_equal_are_refused(reader: object, text: str, says: str) -> None:
    assert callable(reader)
    with pytest.raises(periods.NoEqual) as exc:
        reader(text)
    assert says in str(exc.value)
    assert exc.value.code == "exchange.period"


# ---- round trips ----------------------------------------------------------------------------------

CELLS = [
    Cell("510104", "A1", "2026-M07", "12.5", '备注 "引号", 逗号;分号\n第二行 <&>'),
    Cell("5101-TJJ", "B.2_x-3", "2026-Y", "-3"),
    Cell("51", "A1", "2026-H2", "0"),
    Cell("510104001", "A1", "2026-Q4", "0.0000000001"),
    Cell("510104001002", "C9", "2026-M12", "-999999999999999999.9", "  spaces kept  "),
]


def test_round_trips_of_each_format() -> None:
    assert read_data_value_set(write_data_value_set(CELLS)) == CELLS
    assert read_adx(write_adx(CELLS, exported=EXPORTED)) == CELLS
    assert read_sdmx_csv(write_sdmx_csv(CELLS)) == CELLS


def test_round_trips_through_a_mapping() -> None:
    mapping = CodeMap(
        indicators={"A1": ElementRef("f7n9E0hX8qk"), "B.2_x-3": ElementRef("VCCT_0", "bRowv6yZOF2"),
                    "C9": ElementRef("VCCT_0", "xRowv6yZOF3", (("GENDER", "FMLE"), ("HIV_AGE", "AGE0-14")))},
        units={"510104": "DiszpKrYNg8", "5101-TJJ": "OU_559", "51": "S1", "510104001": "x1", "510104001002": "x2"},
        data_set="pBOMPrpg1QX", source="test")
    json_doc = write_data_value_set(CELLS, mapping, complete_date="2026-08-01")
    assert b'"dataElement": "f7n9E0hX8qk"' in json_doc and b'"categoryOptionCombo": "bRowv6yZOF2"' in json_doc
    assert read_data_value_set(json_doc, mapping) == CELLS
    adx_doc = write_adx(CELLS, mapping, exported=EXPORTED)
    assert b'GENDER="FMLE" HIV_AGE="AGE0-14"' in adx_doc and b'categoryOptionCombo="bRowv6yZOF2"' in adx_doc
    assert read_adx(adx_doc, mapping) == CELLS


DIVISION = st.one_of(*(st.from_regex(rf"[1-6][0-9]{{{n - 1}}}", fullmatch=True) for n in (2, 4, 6, 9, 12)))
DEPARTMENT = st.from_regex(r"[1-6][0-9]{3}-[A-Z]{2,6}", fullmatch=True)
INDICATOR = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}", fullmatch=True)
PERIOD = st.builds(lambda y, p: f"{y}-{p}", st.integers(1990, 2099).map(str), st.sampled_from(
    ["Y", "H1", "H2", "Q1", "Q2", "Q3", "Q4", *(f"M{m:02d}" for m in range(1, 13))]))
# Up to 20 digits, within the bounds of aggregator/numbers.py (|x| < 10^18, at most 10 places).
VALUE = st.builds(lambda digits, places: Decimal(digits).scaleb(-places), st.integers(-(10**20 - 1), 10**20 - 1),
                  st.integers(0, 10)).filter(lambda d: abs(d) < 10**18).map(to_text)
COMMENT = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Co", "Cn")) | st.just("\n"), max_size=40)
CELL = st.builds(Cell, st.one_of(DIVISION, DEPARTMENT), INDICATOR, PERIOD, VALUE, COMMENT)


@settings(max_examples=150, deadline=generous_deadline())
@given(st.lists(CELL, max_size=25, unique_by=lambda c: (c.unit, c.indicator, c.period)))
def test_export_then_import_is_the_identity(cells: list[Cell]) -> None:
    assert read_data_value_set(write_data_value_set(cells)) == cells
    assert read_adx(write_adx(cells, exported=EXPORTED)) == sorted(
        cells, key=lambda c: next(i for i, d in enumerate(cells) if (d.unit, d.period) == (c.unit, c.period)))
    assert read_sdmx_csv(write_sdmx_csv(cells)) == cells


# ---- the standards' published examples --------------------------------------------------------------

def test_dhis2_manual_examples_read_with_a_mapping() -> None:
    mapping = load_map(DATA / "dhis2-map.yaml")
    assert read_data_value_set((DATA / "dhis2-send.json").read_bytes(), mapping) == [
        Cell("510104001", "H-MEASLES", "2014-M01", "1"),
        Cell("510104001", "H-DYSENTERY", "2014-M01", "2"),
        Cell("510104001", "H-CHOLERA", "2014-M01", "3"),
    ]
    assert read_data_value_set((DATA / "dhis2-bulk.json").read_bytes(), mapping) == [
        Cell("510104001", "H-MEASLES", "2014-M01", "12"),
        Cell("510104002", "H-MEASLES", "2014-M01", "14"),
        Cell("510104001", "H-MEASLES", "2014-M02", "16"),
        Cell("510105001", "H-MEASLES", "2014-M02", "18"),
    ]
    # DHIS2's export names the default category option combo on every value: a data element mapped
    # without a combo takes it.
    assert read_data_value_set((DATA / "dhis2-export.json").read_bytes(), mapping) == [
        Cell("510104001", "H-CHOLERA", "2014-M01", "10003"),
        Cell("510104001", "H-DYSENTERY", "2014-M01", "10002"),
        Cell("510104001", "H-MEASLES", "2014-M01", "10001"),
    ]


def test_dhis2_manual_adx_example_reads_with_a_mapping() -> None:
    cells = read_adx((DATA / "adx-dhis2.xml").read_bytes(), load_map(DATA / "adx-map.yaml"))
    assert len(cells) == 20
    assert {c.unit for c in cells} == {"510104"} and {c.period for c in cells} == {"2015-M06"}
    assert cells[0] == Cell("510104", "VCCT0.F.0-14", "2015-M06", "32")
    assert cells[5] == Cell("510104", "VCCT0.M.0-14", "2015-M06", "32")
    assert cells[19] == Cell("510104", "PLHIVTB1.M.15-24", "2015-M06", "10")
    assert sum(Decimal(c.value) for c in cells) == 4 * (32 + 20 + 10 + 10 + 10)


def test_sdmx_csv_guide_example_reads() -> None:
    data = (DATA / "sdmx-example1.csv").read_bytes()
    assert read_sdmx_csv(data, ignore_columns={"ATTR_1", "ATTR_2", "UPDATED"}) == [
        Cell("510104", "GDP", "2014-M01", "12.4", "Normal, special and other values"),
        Cell("510104", "GDP", "2014-M02", "10.8", "Normal, special and other values"),
    ]
    # The guide's custom and extra attribute columns are refused unless the caller names them.
    with pytest.raises(ExchangeError) as exc:
        read_sdmx_csv(data, ignore_columns={"UPDATED"})
    assert wheres(exc) == ["line 1, column 8 (ATTR_2)", "line 1, column 10 (ATTR_1)"]
    with pytest.raises(ExchangeError) as exc:
        read_sdmx_csv(data, structure_id="FEDAPPRAISAL:DF_APPRAISAL(1.0.0)", ignore_columns={"ATTR_1", "ATTR_2", "UPDATED"})
    assert wheres(exc) == ["line 2, column STRUCTURE_ID", "line 3, column STRUCTURE_ID"]


def test_sdmx_csv_with_labels_is_refused_clearly() -> None:
    with pytest.raises(ExchangeError) as exc:
        read_sdmx_csv((DATA / "sdmx-example4-labels.csv").read_bytes(), ignore_columns={"ATTR_1", "ATTR_2"})
    problems = exc.value.problems
    assert problems[0].where == "line 1, column 6 (REF_AREA: Dimension 1)"
    assert all("labels" in p.message for p in problems if "column" in p.where)


def test_sdmx_csv_columns_in_any_order_other_separator_no_action() -> None:
    data = "STRUCTURE;STRUCTURE_ID;TIME_PERIOD;OBS_VALUE;INDICATOR;REF_AREA\r\ndataflow;X:Y(1.0);2026-Q3;7;A1;5101\r\n"
    assert read_sdmx_csv(data.encode()) == [Cell("5101", "A1", "2026-Q3", "7")]


# ---- bad documents: every problem named, nothing returned ---------------------------------------------

def _json(values: list[str]) -> bytes:
    return ('{"period": "202607", "orgUnit": "510104", "dataValues": [' + ",".join(values) + "]}").encode()


def test_dhis2_every_problem_is_named_and_nothing_is_returned() -> None:
    doc = _json([
        '{"dataElement": "A1", "value": "1"}',
        '{"dataElement": "A2", "value": 2.50}',  # a JSON number: taken from its own text
        '{"dataElement": "A3", "value": "3", "period": "2026W05"}',
        '{"dataElement": "A4", "value": "12,5"}',
        '{"dataElement": "A5", "value": 0.1}',
        '{"dataElement": "A1", "value": "9"}',
        '{"dataElement": "A6", "value": NaN}',
        '{"dataElement": "A7", "value": 1.00000000000000000001}',
        '{"dataElement": "A8", "value": 1e400}',
        '{"dataElement": "A9", "value": true}',
        '{"dataElement": "B1", "value": ""}',
        '{"dataElement": "B2"}',
    ])
    with pytest.raises(ExchangeError) as exc:
        read_data_value_set(doc)
    assert wheres(exc) == ["dataValues[2].period", "dataValues[3].value", "dataValues[5]", "dataValues[6].value",
                           "dataValues[7].value", "dataValues[8].value", "dataValues[9].value", "dataValues[10].value",
                           "dataValues[11].value"]
    problems = exc.value.problems
    assert "weekly" in problems[0].message and "'.'" in problems[1].message
    assert "dataValues[0]" in problems[2].message  # the duplicate names the first
    assert "too many decimal places" in problems[4].message and "out of range" in problems[5].message
    assert exc.value.code == "exchange.period"
    good = read_data_value_set(_json(['{"dataElement": "A2", "value": 2.50}', '{"dataElement": "A5", "value": 0.1}']))
    assert [c.value for c in good] == ["2.5", "0.1"]


def test_dhis2_unknown_data_element_and_org_unit_with_a_mapping() -> None:
    mapping = load_map(DATA / "dhis2-map.yaml")
    doc = (DATA / "dhis2-bulk.json").read_text().replace('"FNnj3jKGS7i"', '"NOPE0000001"', 1)
    doc = doc.replace('"dataElement": "f7n9E0hX8qk"', '"dataElement": "zzzzzzzzzzz"', 2)
    with pytest.raises(ExchangeError) as exc:
        read_data_value_set(doc.encode(), mapping)
    assert wheres(exc) == ["dataValues[0].dataElement", "dataValues[1].dataElement", "dataValues[1].orgUnit"]
    assert "zzzzzzzzzzz" in exc.value.problems[0].message and "dhis2-map.yaml" in exc.value.problems[0].message
    # Another data set than the mapping's is not taken either.
    other = (DATA / "dhis2-send.json").read_text().replace("pBOMPrpg1QX", "otherDataSt")
    with pytest.raises(ExchangeError) as exc:
        read_data_value_set(other.encode(), mapping)
    assert wheres(exc) == ["dataSet"]


def test_dhis2_set_level_defaults_and_their_absence() -> None:
    doc = b'{"period": "2026Q9", "dataValues": [{"dataElement": "A1", "value": "1"},' \
          b' {"dataElement": "A2", "value": "2", "period": "2026Q1", "orgUnit": "5101"}]}'
    with pytest.raises(ExchangeError) as exc:
        read_data_value_set(doc)
    # the bad set-level period is reported once, where it is written; the missing orgUnit where it is needed
    assert wheres(exc) == ["period", "dataValues[0].orgUnit"]


def test_malformed_json_is_named_by_line_and_column() -> None:
    with pytest.raises(ExchangeError) as exc:
        read_data_value_set(b'{\n  "dataValues": [\n    {"dataElement": "A1",, "value": "1"}\n  ]\n}\n')
    assert wheres(exc) == ["line 3, column 26"]
    assert exc.value.code == "exchange.malformed"
    with pytest.raises(ExchangeError) as exc:
        read_data_value_set(b'{"dataValues": [], "dataValues": []}')
    assert wheres(exc) == ["dataValues"]
    with pytest.raises(ExchangeError) as exc:
        read_data_value_set(b"[" * 100_000)
    assert exc.value.code == "exchange.malformed"


ADX_HEAD = '<adx xmlns="urn:ihe:qrph:adx:2015" exported="2026-07-31T08:00:00Z">'


def test_adx_every_problem_is_named_and_nothing_is_returned() -> None:
    doc = f"""{ADX_HEAD}
      <group orgUnit="510104" period="2026-07-01/P1M">
        <dataValue dataElement="A1" value="1"/>
        <dataValue dataElement="A2" value="2"><annotation>ok</annotation></dataValue>
      </group>
      <group orgUnit="510104" period="2026-04-01/P1Y">
        <dataValue dataElement="A1" value="1"/>
        <dataValue dataElement="A2" value="2"/>
        <dataValue dataElement="A3" value="3"/>
        <dataValue dataElement="A4" value="4"/>
        <dataValue dataElement="A5" value="1,5"/>
        <dataValue dataElement="A6"/>
        <dataValue dataElement="A7" value="7" GENDER="FMLE"/>
      </group>
    </adx>"""
    with pytest.raises(ExchangeError) as exc:
        read_adx(doc.encode())
    assert wheres(exc) == ["adx/group[2]@period", "adx/group[2]/dataValue[5]@value", "adx/group[2]/dataValue[6]@value",
                           "adx/group[2]/dataValue[7]@dataElement"]
    assert "financial year" in exc.value.problems[0].message


def test_adx_unknown_data_element_and_disaggregation_with_a_mapping() -> None:
    mapping = load_map(DATA / "adx-map.yaml")
    doc = (DATA / "adx-dhis2.xml").read_text()
    doc = doc.replace('dataElement="VCCT_2" GENDER="MLE" HIV_AGE="AGE0-14"', 'dataElement="VCCT_2" GENDER="MLE" HIV_AGE="AGE25+"')
    doc = doc.replace('dataElement="PLHIV_TB_1" GENDER="FMLE" HIV_AGE="AGE15-24"',
                      'dataElement="NOPE" GENDER="FMLE" HIV_AGE="AGE15-24"')
    with pytest.raises(ExchangeError) as exc:
        read_adx(doc.encode(), mapping)
    assert wheres(exc) == ["adx/group[1]/dataValue[8]@dataElement", "adx/group[1]/dataValue[15]@dataElement"]
    assert "VCCT2.F.0-14" in exc.value.problems[0].message  # the mapped ones of that data element are listed


def test_adx_entity_bomb_and_external_entities_are_refused() -> None:
    bomb = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
            + "".join(f'<!ENTITY lol{i + 1} "{f"&lol{i};" * 10 if i else "&lol;" * 10}">' for i in range(9))
            + f']>{ADX_HEAD}<group orgUnit="&lol9;" period="2026-01-01/P1Y"/></adx>')
    with pytest.raises(ExchangeError) as exc:
        read_adx(bomb.encode())
    assert exc.value.code == "exchange.forbidden" and wheres(exc) == ["document"]
    xxe = f'<?xml version="1.0"?><!DOCTYPE adx [<!ENTITY x SYSTEM "file:///etc/passwd">]>{ADX_HEAD}</adx>'
    with pytest.raises(ExchangeError) as exc:
        read_adx(xxe.encode())
    assert exc.value.code == "exchange.forbidden"
    doctype_only = f'<?xml version="1.0"?><!DOCTYPE adx SYSTEM "http://example.invalid/adx.dtd">{ADX_HEAD}</adx>'
    with pytest.raises(ExchangeError) as exc:
        read_adx(doctype_only.encode())
    assert exc.value.code == "exchange.forbidden"


def test_adx_size_namespace_and_malformed_xml() -> None:
    doc = write_adx(CELLS, exported=EXPORTED)
    with pytest.raises(ExchangeError) as exc:
        read_adx(doc, max_bytes=len(doc) - 1)
    assert exc.value.code == "exchange.too_large"
    assert read_adx(doc, max_bytes=len(doc)) == CELLS
    with pytest.raises(ExchangeError) as exc:
        read_adx(doc.replace(b"urn:ihe:qrph:adx:2015", b"http://ihe.net/quality/schema/adx"))
    assert wheres(exc) == ["adx"] and "urn:ihe:qrph:adx:2015" in exc.value.problems[0].message
    with pytest.raises(ExchangeError) as exc:
        read_adx(f'{ADX_HEAD}\n<group orgUnit="5101" period="2026-01-01/P1Y">\n</adx>'.encode())
    assert wheres(exc) == ["line 3, column 3"] and exc.value.code == "exchange.malformed"
    with pytest.raises(ExchangeError) as exc:
        read_adx(b'<adx xmlns="urn:ihe:qrph:adx:2015"><group orgUnit="5101" period="2026-01-01/P1Y"/></adx>')
    assert wheres(exc) == ["adx@exported"]


def test_sdmx_every_problem_is_named_and_nothing_is_returned() -> None:
    rows = ["STRUCTURE,STRUCTURE_ID,ACTION,REF_AREA,INDICATOR,TIME_PERIOD,OBS_VALUE,COMMENT",
            "dataflow,X:Y(1.0),I,5101,A1,2026-M07,1,",
            "dataflow,X:Y(1.0),D,5101,A2,2026-M07,-,",
            "dataflow,X:Y(1.0),I,5101,A3,2026-W05,3,",
            "dataflow,X:Y(1.0),I,510,A4,2026,4,",
            "dataflow,X:Y(1.0),I,5101,A5,2026,,",
            "dataflow,X:Y(1.0),I,5101,A6,2026,6",
            'dataflow,X:Y(1.0),I,5101,A7,2026,7,"two\nlines"',
            "dataflow,X:Y(1.0),I,5101,A1,2026-07,8,"]
    with pytest.raises(ExchangeError) as exc:
        read_sdmx_csv("\r\n".join(rows).encode())
    assert wheres(exc) == ["line 3, column ACTION", "line 4, column TIME_PERIOD", "line 5, column REF_AREA",
                           "line 6, column OBS_VALUE", "line 7", "line 10"]
    assert "line 2" in exc.value.problems[-1].message  # 2026-07 is 2026-M07: a duplicate of line 2
    with pytest.raises(ExchangeError) as exc:
        read_sdmx_csv(b"REF_AREA,INDICATOR\r\n5101,A1\r\n")
    assert wheres(exc) == ["line 1"] and exc.value.code == "exchange.malformed"


def test_too_many_values_is_said() -> None:
    doc = write_data_value_set(CELLS)
    with pytest.raises(ExchangeError) as exc:
        read_data_value_set(doc, max_values=3)
    assert wheres(exc) == ["dataValues[3]"] and exc.value.code == "exchange.too_large"
    assert "3" in exc.value.problems[0].message
    with pytest.raises(ExchangeError) as exc:
        read_adx(write_adx(CELLS, exported=EXPORTED), max_values=4)
    assert exc.value.code == "exchange.too_large"
    with pytest.raises(ExchangeError) as exc:
        read_sdmx_csv(write_sdmx_csv(CELLS), max_values=2)
    assert wheres(exc) == ["line 5"]  # the first row's comment has a line break: it spans lines 2 and 3
    with pytest.raises(ExchangeError) as exc:
        write_sdmx_csv(CELLS, max_values=2)
    assert exc.value.code == "exchange.too_large"


def test_writers_refuse_bad_or_unmapped_cells() -> None:
    bad = [Cell("510", "A1", "2026-M13", "1.50", "a\x00b"), Cell("5101", "A1", "2026-Y", "1"),
           Cell("5101", "A1", "2026-Y", "2")]
    with pytest.raises(ExchangeError) as exc:
        write_data_value_set(bad)
    assert wheres(exc) == ["cells[0].unit", "cells[0].period", "cells[0].value", "cells[0].comment", "cells[2]"]
    mapping = CodeMap(indicators={"A1": ElementRef("de1")}, units={"5101": "ou1"}, source="m.yaml")
    with pytest.raises(ExchangeError) as exc:
        write_adx([Cell("5101", "A1", "2026-Y", "1"), Cell("5102", "A2", "2026-Y", "1")], mapping, exported=EXPORTED)
    assert wheres(exc) == ["cells[1].indicator", "cells[1].unit"]


# ---- mapping files ---------------------------------------------------------------------------------

def test_mapping_file_problems_name_file_line_and_fix(tmp_path: Path) -> None:
    path = tmp_path / "map.yaml"
    path.write_text("""dataSet: ds1
indicators:
  A1: de1
  A2: de1
  "bad code!": de2
  A3: {dataElement: de3, adx: {value: x}}
  A4: {dataElement: de4, colour: red}
  A5: {dataElement: de5, adx: {GENDER: F}}
  A6: {dataElement: de5, categoryOptionCombo: c2, adx: {GENDER: F}}
units:
  "5101": ou1
  "5102": ou1
  "510": ou3
  "5103": 342
extra: 1
""", encoding="utf-8")
    with pytest.raises(ExchangeError) as exc:
        load_map(path)
    got = [(p.where, p.message) for p in exc.value.problems]
    assert [w for w, _ in got] == [f"{path}:{n}" for n in (15, 4, 5, 6, 7, 9, 12, 13, 14)]
    assert all(p.code == "exchange.mapping" for p in exc.value.problems)
    messages = dict(got)
    assert "A1" in messages[f"{path}:4"] and "one to one" in messages[f"{path}:4"]
    assert "A5" in messages[f"{path}:9"]
    assert "5101" in messages[f"{path}:12"] and "one to one" in messages[f"{path}:12"]
    assert "quoted text" in messages[f"{path}:14"]
    assert "unknown key" in messages[f"{path}:15"] and "unknown key" in messages[f"{path}:7"]


def test_mapping_sections_left_out_map_by_identity(tmp_path: Path) -> None:
    path = tmp_path / "map.yaml"
    path.write_text('units:\n  "510104": DiszpKrYNg8\n', encoding="utf-8")
    mapping = load_map(path)
    doc = b'{"dataValues": [{"dataElement": "A1", "period": "2026", "orgUnit": "DiszpKrYNg8", "value": "5"}]}'
    assert read_data_value_set(doc, mapping) == [Cell("510104", "A1", "2026-Y", "5")]
    assert load_map(None) is IDENTITY
    with pytest.raises(ExchangeError) as exc:  # identity: a DHIS2 code with "_" is no unit code of ours
        read_data_value_set(doc.replace(b"DiszpKrYNg8", b"OU_559"))
    assert wheres(exc) == ["dataValues[0].orgUnit"]
    with pytest.raises(ExchangeError) as exc:
        load_map(tmp_path / "missing.yaml")
    assert exc.value.code == "exchange.mapping"
