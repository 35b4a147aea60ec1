"""国家统计局 统计用区划代码 (the NBS statistical division codes), four levels, as the federation uses them.

The product ships one year's list as package data (``nodes/data/divisions/<year>.tsv.gz``, made by
``scripts/import_divisions.py`` from a registry package, provenance in ``SOURCE.md`` beside it);
``appraise divisions load`` stores a newer year's list in the user's division directory. The demo and the
benchmarks build their federation topology from it (:func:`topology`).

Two views of one list:

* the file: NBS's own 12-digit codes (``510104017000``), one row per unit, each naming its parent;
* the table: node codes as the federation uses them (province 2 digits, city 4, county 6, township 9:
  ``51``, ``5101``, ``510104``, ``510104017``), where every unit's parent is exactly one level up and
  its code is the child's code cut short — the rule node configurations and certificates are checked
  against (nodes/config.py, sync/trust.py).

The one documented skip (where NBS itself leaves a level out): a township may hang directly under a
不设区的地级市 (东莞 4419, 中山 4420, 儋州 4604: its county digits are 00, 441900003000), and a county
directly under its province when a list leaves out the 省直辖县级行政区划 grouping (its city digits are
90: 429004 仙桃市 under 42). The table fills the missing level with a *stand-in* whose node code is the
child's own code cut to that level: the county 441900 named after its city, the city 4290 named
省直辖县级行政区划. So every node still has a parent one level up whose code starts its own, and a
node configuration built from the topology is valid as it is.

Pure: everything here works on bytes or rows it is given; :func:`load`, :func:`available` and
:func:`store` are the small edge that reads and writes the directories.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from aggregator.errors import BadInput, NotFound

LEVELS = ("province", "city", "county", "township")
NODE_LENGTHS = {"province": 2, "city": 4, "county": 6, "township": 9}
LEVEL_NAMES = {"province": "省级", "city": "地级", "county": "县级", "township": "乡级"}
# What a list may call a level: ours, NBS's 级 names, and their short forms.
LEVEL_ALIASES = {**{lv: lv for lv in LEVELS}, **{v: k for k, v in LEVEL_NAMES.items()},
                 "省": "province", "地": "city", "市": "city", "县": "county", "乡": "township",
                 "1": "province", "2": "city", "3": "county", "4": "township"}
TSV_HEADER = "code12\tparent12\tlevel\tname"
SHIPPED_DIR = Path(__file__).resolve().parent / "data" / "divisions"
DIR_ENV = "FEDAPPRAISAL_DIVISIONS_DIR"
_FILE_NAME = re.compile(r"^(\d{4})\.tsv\.gz$")
_DIGITS12 = re.compile(r"^\d{12}$")


class DivisionError(BadInput):
    """A division list that cannot be used: ``file``, ``row`` and ``field`` say where (row is the line
    number in the file, 1 for a header; for JSON the entry's index from 1)."""

    default_code = "divisions.invalid"

    def __init__(self, file: str, row: int | None, field_name: str | None, message: str, *, code: str) -> None:
        where = file + (f":{row}" if row is not None else "") + (f" 字段 (field) {field_name}" if field_name else "")
        super().__init__(f"{where}: {message}", code=code)
        self.file = file
        self.row = row
        self.field = field_name


@dataclass(frozen=True, slots=True)
class Row:
    """One unit as a list gives it, in NBS's 12-digit form (validated by :func:`validate`)."""

    code12: str
    parent12: str  # "" for a province
    level: str
    name: str
    line: int = 0  # where it came from, for errors
    src: str = ""  # the file inside an archive it came from, if not the file itself


@dataclass(frozen=True, slots=True)
class Division:
    """One node of the table: ``code`` is the node code (2/4/6/9 digits), ``parent`` the parent's."""

    code: str
    name: str
    level: str
    parent: str | None
    code12: str
    stand_in: bool = False  # filled in for the documented skip; no row of the list

    def entry(self) -> dict[str, Any]:
        """As demo-topology.json lists a node."""
        return {"code": self.code, "name": self.name, "level": self.level, "parent": self.parent}


def level_of(code12: str) -> str | None:
    """The level a 12-digit code's zeros give, or None if they fit none: PP0000000000, PPCC00000000 (CC
    not 00), PPCCXX000000 (XX not 00), PPCCXXTTT000 (TTT not 000)."""
    if not _DIGITS12.match(code12) or code12[:2] == "00":
        return None
    if code12[9:] != "000":
        return None  # a village (村级): below what the federation has
    if code12[6:9] != "000":
        return "township"
    if code12[4:6] != "00":
        return "county"
    if code12[2:4] != "00":
        return "city"
    return "province"


def cut12(code12: str, level: str) -> str:
    """The 12-digit code of ``code12``'s ancestor at ``level``."""
    n = NODE_LENGTHS[level]
    return code12[:n] + "0" * (12 - n)


def pad12(code: str) -> str:
    return code + "0" * (12 - len(code))


# ---------------------------------------------------------------------------------------------------
# Reading a list: our TSV(.gz), an NBS-style CSV (code,name,level,parent), a JSON list of such objects.


def _norm_code(raw: str, level: str | None, file: str, line: int, field_name: str) -> str:
    text = raw.strip()
    if level is not None and len(text) == NODE_LENGTHS[level] and text.isdigit():
        text = pad12(text)  # a node code (2/4/6/9 digits) stands for its 12-digit code
    if not _DIGITS12.match(text):
        raise DivisionError(file, line, field_name, f"区划代码 {raw!r} 应为 12 位数字（或该层级的 2/4/6/9 位节点代码）"
                            "(a code is 12 digits, or the node code of its level)", code="divisions.code")
    return text


def _norm_level(raw: str, file: str, line: int) -> str:
    level = LEVEL_ALIASES.get(raw.strip())
    if level is None:
        raise DivisionError(file, line, "level", f"层级 {raw!r} 无效；应为 {'/'.join(LEVELS)} 之一 (unknown level)",
                            code="divisions.level")
    return level


def _parent_code(raw: str | None, file: str, line: int) -> str:
    text = (raw or "").strip()
    if not text:
        return ""
    if len(text) in (2, 4, 6, 9) and text.isdigit():
        return pad12(text)  # a node code; validate() checks that it is the right one
    return _norm_code(text, None, file, line, "parent")


def parse_tsv(data: bytes, file: str) -> list[Row]:
    """Our format: ``code12 TAB parent12 TAB level TAB name``, a header line optional; gzip or plain."""
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise DivisionError(file, None, None, f"gzip 数据损坏 (corrupt gzip): {exc}", code="divisions.format") from None
    text = _decode(data, file)
    rows: list[Row] = []
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip() or (line == 1 and raw.strip() == TSV_HEADER):
            continue
        cols = raw.split("\t")
        if len(cols) != 4:
            raise DivisionError(file, line, None, f"应为 4 列（制表符分隔: {TSV_HEADER}），实为 {len(cols)} 列 "
                                "(expected 4 tab-separated columns)", code="divisions.format")
        level = _norm_level(cols[2], file, line)
        rows.append(Row(_norm_code(cols[0], level, file, line, "code12"), _parent_code(cols[1], file, line),
                        level, cols[3].strip(), line))
    return rows


def parse_csv(data: bytes, file: str) -> list[Row]:
    """NBS-style CSV with a header naming ``code,name,level,parent`` (any order, more columns ignored)."""
    text = _decode(data, file)
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in ("code", "name", "level", "parent") if c not in (reader.fieldnames or [])]
    if missing:
        raise DivisionError(file, 1, ",".join(missing), "表头应含 code,name,level,parent 列 (the header must name "
                            "code,name,level,parent)", code="divisions.format")
    rows = []
    for rec in reader:
        line = reader.line_num
        level = _norm_level(rec["level"] or "", file, line)
        rows.append(Row(_norm_code(rec["code"] or "", level, file, line, "code"),
                        _parent_code(rec["parent"], file, line), level, (rec["name"] or "").strip(), line))
    return rows


def parse_json(data: bytes, file: str) -> list[Row]:
    """A JSON list of ``{"code", "name", "level", "parent"}`` (as shared/data/china-divisions.json)."""
    try:
        doc = json.loads(_decode(data, file))
    except json.JSONDecodeError as exc:
        raise DivisionError(file, exc.lineno, None, f"JSON 无法解析 (invalid JSON): {exc.msg}", code="divisions.format") from None
    items = doc.get("nodes") if isinstance(doc, dict) else doc
    if not isinstance(items, list):
        raise DivisionError(file, None, None, "应为对象列表，或含 nodes 列表的对象 (expected a list of objects)",
                            code="divisions.format")
    rows = []
    for i, rec in enumerate(items, start=1):
        if not isinstance(rec, dict):
            raise DivisionError(file, i, None, "应为对象 (expected an object)", code="divisions.format")
        level = _norm_level(str(rec.get("level", "")), file, i)
        parent = rec.get("parent")
        rows.append(Row(_norm_code(str(rec.get("code", "")), level, file, i, "code"),
                        _parent_code(None if parent is None else str(parent), file, i), level,
                        str(rec.get("name", "")).strip(), i))
    return rows


def _decode(data: bytes, file: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DivisionError(file, data.count(b"\n", 0, exc.start) + 1, None, "不是 UTF-8 文本 (not UTF-8 text)；"
                            "请另存为 UTF-8", code="divisions.format") from None


# ---------------------------------------------------------------------------------------------------
# Checking a list and building the table.


def validate(rows: Sequence[Row], file: str) -> list[Row]:
    """Every row checked; the rows sorted by code. Raises :class:`DivisionError` at the first bad row
    (in file order): 12 digits, level consistent with the code's zeros, a name, no duplicate code, the
    parent present, the code's own ancestor, and one level up (or the documented skip)."""
    by: dict[str, Row] = {}
    for r in rows:
        if level_of(r.code12) != r.level:
            fits = level_of(r.code12) or "无（不是区划代码）"
            raise DivisionError(r.src or file, r.line, "level", f"代码 {r.code12} 的零位表明层级为 {fits}，"
                                f"而此行写 {r.level} (the code's zeros do not fit the level)", code="divisions.level")
        if not r.name:
            raise DivisionError(r.src or file, r.line, "name", "名称为空 (empty name)", code="divisions.name")
        if r.code12 in by:
            raise DivisionError(r.src or file, r.line, "code", f"代码 {r.code12} 重复，已见于第 {by[r.code12].line} 行 "
                                "(duplicate code)", code="divisions.duplicate")
        by[r.code12] = r
    for r in rows:
        if r.level == "province":
            if r.parent12:
                raise DivisionError(r.src or file, r.line, "parent", f"省级单位没有上级，此行写 {r.parent12}；请留空 "
                                    "(a province has no parent)", code="divisions.parent")
            continue
        up = LEVELS[LEVELS.index(r.level) - 1]
        want = cut12(r.code12, up)
        if want in by and by[want].level == up:
            ok = r.parent12 == want
        elif r.level == "township" and r.code12[4:6] == "00":  # 不设区的地级市: county digits 00, the city is the parent
            want = cut12(r.code12, "city")
            ok = r.parent12 == want and want in by
        elif r.level == "county" and r.code12[2:4] == "90":  # 省直辖县级 without the grouping: the province is
            want = cut12(r.code12, "province")
            ok = r.parent12 == want and want in by
        else:
            ok = False
        if not ok:
            exists = "" if want in by else f"（{want} 不在表中 (not in the list)）"
            raise DivisionError(r.src or file, r.line, "parent", f"上级应为 {want}{exists}，此行写 {r.parent12 or '空 (empty)'}："
                                f"上级是代码截至上一层级的单位 (the parent is the unit one level up whose code starts "
                                "this one's; see docs/parts/divisions.md for the one skip)", code="divisions.parent")
    return sorted(rows, key=lambda r: r.code12)


@dataclass
class DivisionTable:
    """One year's divisions as nodes (see the module's docstring for the codes and the skip)."""

    year: int
    rows: list[Row]  # validated, sorted by code12: what the file holds
    source: str = ""
    _by: dict[str, Division] = field(default_factory=dict, repr=False)
    _by12: dict[str, str] = field(default_factory=dict, repr=False)
    _kids: dict[str, list[str]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        by12 = {r.code12: r for r in self.rows}
        for r in self.rows:
            code = r.code12[: NODE_LENGTHS[r.level]]
            parent: str | None = None
            if r.level != "province":
                plevel = by12[r.parent12].level
                parent = r.parent12[: NODE_LENGTHS[plevel]]
                up = LEVELS[LEVELS.index(r.level) - 1]
                if plevel != up:  # the skip: a stand-in one level up, its code the child's cut short
                    stand = code[: NODE_LENGTHS[up]]
                    if stand not in self._by:
                        pname = by12[r.parent12].name
                        name = pname if up == "county" else ("自治区直辖县级行政区划" if pname.endswith("自治区")
                                                             else "省直辖县级行政区划")
                        self._add(Division(stand, name, up, parent, pad12(stand), stand_in=True))
                    parent = stand
            self._add(Division(code, r.name, r.level, parent, r.code12))
            self._by12[r.code12] = code
        for kids in self._kids.values():
            kids.sort()

    def _add(self, d: Division) -> None:
        self._by[d.code] = d
        self._kids.setdefault(d.code, [])
        if d.parent is not None:
            self._kids.setdefault(d.parent, []).append(d.code)

    def __len__(self) -> int:
        return len(self._by)

    def __contains__(self, code: object) -> bool:
        return isinstance(code, str) and self.find(code) is not None

    def find(self, code: str) -> Division | None:
        """A node code (2/4/6/9 digits) or a 12-digit NBS code."""
        if len(code) == 12:
            node = self._by12.get(code)
            return self._by[node] if node is not None else None
        return self._by.get(code)

    def get(self, code: str) -> Division:
        d = self.find(code)
        if d is None:
            raise NotFound(f"{self.year} 年区划表中没有代码 {code!r} (no such division code)；"
                           "请用 appraise divisions show 查看上级的下级", code="divisions.unknown")
        return d

    def children(self, code: str) -> list[Division]:
        return [self._by[c] for c in self._kids[self.get(code).code]]

    def provinces(self) -> list[Division]:
        return [d for d in self._by.values() if d.level == "province"]

    def path(self, code: str) -> list[Division]:
        """From the province down to the unit itself."""
        out = [self.get(code)]
        while out[-1].parent is not None:
            out.append(self._by[out[-1].parent])
        return out[::-1]

    def subtree(self, code: str) -> Iterator[Division]:
        """The unit and everything below it, depth first in code order (parents before children)."""
        stack = [self.get(code).code]
        while stack:
            d = self._by[stack.pop()]
            yield d
            stack.extend(reversed(self._kids[d.code]))

    def counts(self, code: str | None = None) -> dict[str, int]:
        """Nodes per level in the unit's subtree (itself included; stand-ins count: they are nodes);
        the whole table for None."""
        out = dict.fromkeys(LEVELS, 0)
        for d in (self._by.values() if code is None else self.subtree(code)):
            out[d.level] += 1
        return out

    def topology(self, root: str, *, only: Sequence[str] = (), depth: int = 4,
                 max_children: int | None = None) -> list[dict[str, Any]]:
        """Entries as demo-topology.json's ``nodes``: ``root``'s chain from its province, then ``root``'s
        subtree down to level ``depth`` (1 province … 4 township, whatever the root's level), parents
        before children. ``only``: just these children of ``root`` (and their subtrees); ``max_children``:
        the first N children (in code order) of every node below the root's chain."""
        top = self.get(root)
        if not 1 <= depth <= 4:
            raise BadInput(f"depth 应为 1–4（1 省级 … 4 乡级），实为 {depth} (depth is 1 to 4)", code="divisions.depth")
        if max_children is not None and max_children < 1:
            raise BadInput(f"max_children 应为正整数，实为 {max_children} (max_children must be positive)",
                           code="divisions.max_children")
        kids = {c.code for c in self.children(top.code)}
        chosen = [self.get(c).code for c in only]
        stray = [c for c, code in zip(only, chosen, strict=True) if code not in kids]
        if stray:
            raise BadInput(f"{', '.join(stray)} 不是 {top.code} {top.name} 的直接下级 (not children of the root)；"
                           f"请用 appraise divisions show {top.code} 查看", code="divisions.only")
        limit = LEVELS[depth - 1]
        out = [d.entry() for d in self.path(top.code)[:-1]]
        stack: list[tuple[Division, bool]] = [(top, True)]
        while stack:
            d, is_root = stack.pop()
            if LEVELS.index(d.level) > LEVELS.index(limit):
                continue
            out.append(d.entry())
            below = [self._by[c] for c in self._kids[d.code]]
            if is_root and only:
                want = set(chosen)
                below = [c for c in below if c.code in want]
            if max_children is not None:
                below = below[:max_children]
            stack.extend((c, False) for c in reversed(below))
        return out


def build(rows: Sequence[Row], year: int, file: str) -> DivisionTable:
    return DivisionTable(year, validate(rows, file), source=file)


def parse(data: bytes, file: str, year: int) -> DivisionTable:
    """A list in any accepted format, by its name: ``.csv``, ``.json``, otherwise our TSV(.gz)."""
    name = file.lower()
    if name.endswith(".csv"):
        rows = parse_csv(data, file)
    elif name.endswith(".json"):
        rows = parse_json(data, file)
    else:
        rows = parse_tsv(data, file)
    if not rows:
        raise DivisionError(file, None, None, "文件中没有区划 (no divisions in the file)", code="divisions.empty")
    return build(rows, year, file)


def encode(rows: Iterable[Row]) -> bytes:
    """Our file: sorted TSV, gzip with mtime 0, so the same list gives the same bytes."""
    lines = [TSV_HEADER] + [f"{r.code12}\t{r.parent12}\t{r.level}\t{r.name}" for r in sorted(rows, key=lambda r: r.code12)]
    return gzip.compress(("\n".join(lines) + "\n").encode("utf-8"), compresslevel=9, mtime=0)


# ---------------------------------------------------------------------------------------------------
# The edge: where the years live.


def user_dir() -> Path:
    """Where ``appraise divisions load`` stores years: $FEDAPPRAISAL_DIVISIONS_DIR, else
    ~/.local/share/fedappraisal/divisions/."""
    env = os.environ.get(DIR_ENV)
    return Path(env) if env else Path.home() / ".local" / "share" / "fedappraisal" / "divisions"


@dataclass(frozen=True)
class Year:
    year: int
    path: Path
    origin: str  # "shipped" | "loaded"


def available() -> list[Year]:
    """Every year on hand, oldest first; a loaded year replaces a shipped one of the same year."""
    found: dict[int, Year] = {}
    for origin, folder in (("shipped", SHIPPED_DIR), ("loaded", user_dir())):
        if folder.is_dir():
            for p in sorted(folder.iterdir()):
                m = _FILE_NAME.match(p.name)
                if m:
                    found[int(m.group(1))] = Year(int(m.group(1)), p, origin)
    return [found[y] for y in sorted(found)]


def load(year: int | None = None) -> DivisionTable:
    """The newest year on hand, or ``year``."""
    years = available()
    if not years:
        raise NotFound(f"没有区划数据 (no division data): {SHIPPED_DIR} 与 {user_dir()} 中都没有 <年份>.tsv.gz；"
                       "请重新安装，或用 appraise divisions load 导入", code="divisions.none")
    pick = years[-1] if year is None else next((y for y in years if y.year == year), None)
    if pick is None:
        raise NotFound(f"没有 {year} 年的区划数据 (no divisions for {year})；现有 "
                       f"{', '.join(str(y.year) for y in years)}；请用 appraise divisions load 导入", code="divisions.year")
    st = pick.path.stat()
    return _load_file(str(pick.path), pick.year, st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=4)
def _load_file(path: str, year: int, _mtime: int, _size: int) -> DivisionTable:
    """Cached per file version: the tests, the demo and the benchmarks ask for the same year often."""
    return DivisionTable(year, validate(parse_tsv(Path(path).read_bytes(), path), path), source=path)


def store(table: DivisionTable, folder: Path | None = None) -> Path:
    """Writes ``<year>.tsv.gz`` atomically (a temporary file in the same folder, then a rename)."""
    folder = folder or user_dir()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{table.year}.tsv.gz"
    fd, tmp = tempfile.mkstemp(prefix=f".{table.year}.", suffix=".tmp", dir=folder)
    try:
        os.fchmod(fd, 0o644)  # a data file anyone may read, as the shipped one (mkstemp makes it 0600)
        with os.fdopen(fd, "wb") as f:
            f.write(encode(table.rows))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def topology(root: str, *, only: Sequence[str] = (), depth: int = 4, max_children: int | None = None,
             year: int | None = None) -> list[dict[str, Any]]:
    """:meth:`DivisionTable.topology` of the newest year on hand (or ``year``)."""
    return load(year).topology(root, only=only, depth=depth, max_children=max_children)


def cut(tree: list[dict[str, Any]], nodes: int) -> list[dict[str, Any]]:
    """The first ``nodes`` of a tree in depth-first order (parents first): whole cities, then whole
    counties of the last city, then as many townships of the last county as fit. Every kept node's
    parent is kept, so each size is a real piece of the hierarchy."""
    children: dict[str | None, list[dict[str, Any]]] = {}
    for n in tree:
        children.setdefault(n["parent"], []).append(n)
    out: list[dict[str, Any]] = []

    def walk(n: dict[str, Any]) -> None:
        if len(out) >= nodes:
            return
        out.append(n)
        for c in children.get(n["code"], []):
            walk(c)

    for root in children[None]:
        walk(root)
    order = {n["code"]: i for i, n in enumerate(tree)}
    return sorted(out, key=lambda n: (len(n["code"]), order[n["code"]]))  # parents before children
