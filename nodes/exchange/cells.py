"""What every exchange format reads into and writes from: a :class:`Cell`, and the one error.

A document from another system is taken whole or not at all: a reader collects every problem
it finds (each naming its exact place in the document and the fix), and raises one
:class:`ExchangeError` carrying them all, so that a person fixes the file once rather than
once per problem, and no half of a document ever reaches the store.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from aggregator.errors import BadInput
from aggregator.framework import valid_indicator_code, valid_period
from aggregator.numbers import NumberError, parse_decimal, to_text

DEFAULT_MAX_VALUES = 100_000
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
MAX_COMMENT = 5000  # characters; DHIS2 keeps comments of a few thousand characters too
SHOWN_PROBLEMS = 20  # in the message; all of them are in ``ExchangeError.problems``

_DIVISION_LENGTHS = (2, 4, 6, 9, 12)
_DEPARTMENT = re.compile(r"[0-9A-Za-z-]{2,32}\Z")


@dataclass(frozen=True)
class Cell:
    """One value of a leaf indicator for a unit and a period, as a node holds it."""

    unit: str  # division code (2, 4, 6, 9 or 12 digits) or a department code such as 5101-TJJ
    indicator: str
    period: str  # 2026-Y, 2026-H1, 2026-Q3, 2026-M07
    value: str  # canonical decimal text (aggregator.numbers.to_text)
    comment: str = ""


@dataclass(frozen=True)
class Problem:
    """One problem of a document: ``where`` names the place exactly, ``message`` says the fix."""

    where: str
    message: str
    code: str = "exchange.invalid"

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


class ExchangeError(BadInput):
    """A document (or a mapping file, or cells to export) with problems; nothing was taken from it.

    ``code`` is the first problem's code (``exchange.malformed``, ``exchange.too_large``,
    ``exchange.forbidden``, ``exchange.mapping``, ``exchange.invalid``, ...)."""

    default_code = "exchange.invalid"

    def __init__(self, problems: Sequence[Problem], *, what: str = "文档 (document)") -> None:
        self.problems = list(problems)
        shown = "\n".join(f"  {p}" for p in self.problems[:SHOWN_PROBLEMS])
        more = len(self.problems) - SHOWN_PROBLEMS
        tail = f"\n  ……另有 {more} 处问题 (and {more} more)" if more > 0 else ""
        super().__init__(f"{what}有 {len(self.problems)} 处问题，未导入任何数值，请全部改正后重试 "
                         f"({len(self.problems)} problem(s); nothing was taken: fix them all and try again):\n{shown}{tail}",
                         code=self.problems[0].code if self.problems else None)


def valid_unit(code: str) -> bool:
    """A division code (all digits, 2/4/6/9/12 of them) or a department code ([0-9A-Za-z-]{2,32})."""
    if code.isascii() and code.isdigit():
        return len(code) in _DIVISION_LENGTHS
    return bool(_DEPARTMENT.match(code))


def valid_our_period(period: str) -> bool:
    return valid_period(period, period[:4])


def comment_problem(comment: str) -> str:
    """Why a comment cannot be exchanged ("" if it can): every format must carry it unchanged."""
    if len(comment) > MAX_COMMENT:
        return f"备注过长（至多 {MAX_COMMENT} 字），请缩短 (comment too long: at most {MAX_COMMENT} characters)"
    for ch in comment:
        if ch != "\n" and unicodedata.category(ch) in ("Cc", "Cs", "Co", "Cn"):
            return (f"备注含控制字符 U+{ord(ch):04X}，请删除（可用换行） "
                    f"(comment has the control character U+{ord(ch):04X}: remove it; line breaks are fine)")
    return ""


def parse_value(raw: str | int | Decimal) -> tuple[str, str]:
    """(canonical text, "") or ("", the problem and its fix)."""
    try:
        return to_text(parse_decimal(raw, "")), ""
    except NumberError as exc:
        return "", (f"{str(exc).removeprefix(': ')}；请填写十进制数字，如 12 或 -3.25，小数点用 '.' "
                    "(write a decimal number such as 12 or -3.25, with '.' as the decimal point)")


class Collector:
    """Collects a document's cells and problems: duplicates and the size cap are checked here."""

    def __init__(self, max_values: int = DEFAULT_MAX_VALUES) -> None:
        self.max_values = max_values
        self.problems: list[Problem] = []
        self.cells: list[Cell] = []
        self._seen: dict[tuple[str, str, str], str] = {}
        self._count = 0

    def problem(self, where: str, message: str, code: str = "exchange.invalid") -> None:
        self.problems.append(Problem(where, message, code))

    def room(self, where: str) -> bool:
        """Count one more value; False (with one problem said once) past ``max_values``: stop reading."""
        self._count += 1
        if self._count <= self.max_values:
            return True
        if self._count == self.max_values + 1:
            self.problem(where, f"文档含超过 {self.max_values} 个数值，请拆分为多个文档 "
                                f"(more than {self.max_values} values: split the document)", "exchange.too_large")
        return False

    def add(self, where: str, cell: Cell) -> None:
        key = (cell.unit, cell.indicator, cell.period)
        first = self._seen.get(key)
        if first is not None:
            self.problem(where, f"与 {first} 重复：同一单位 {cell.unit}、指标 {cell.indicator}、期间 {cell.period} "
                                f"只能有一个数值，请删去其一 (duplicates {first}: one value per unit, indicator and period)")
            return
        self._seen[key] = where
        self.cells.append(cell)

    def result(self) -> list[Cell]:
        if self.problems:
            raise ExchangeError(self.problems)
        return self.cells


def too_large(data: bytes, max_bytes: int) -> Problem | None:
    if len(data) > max_bytes:
        return Problem("document", f"文档大小 {len(data)} 字节，超过上限 {max_bytes} 字节，请拆分 "
                                   f"(document of {len(data)} bytes exceeds the limit of {max_bytes}: split it)",
                       "exchange.too_large")
    return None


@dataclass
class CellCheck:
    """What a writer checks of the cells it is given before writing any byte."""

    max_values: int = DEFAULT_MAX_VALUES
    problems: list[Problem] = field(default_factory=list)

    def check(self, cells: Sequence[Cell]) -> None:
        if len(cells) > self.max_values:
            self.problems.append(Problem("cells", f"共 {len(cells)} 个数值，超过上限 {self.max_values}，请分批导出 "
                                                  f"({len(cells)} values exceed the limit of {self.max_values}: "
                                                  "export in parts)", "exchange.too_large"))
            return
        seen: dict[tuple[str, str, str], int] = {}
        for i, cell in enumerate(cells):
            for where, message in _cell_problems(cell):
                self.problems.append(Problem(f"cells[{i}].{where}", message, "exchange.cells"))
            key = (cell.unit, cell.indicator, cell.period)
            if key in seen:
                self.problems.append(Problem(f"cells[{i}]", f"与 cells[{seen[key]}] 重复 (duplicates cells[{seen[key]}])",
                                             "exchange.cells"))
            seen.setdefault(key, i)

    def add(self, where: str, message: str, code: str = "exchange.cells") -> None:
        self.problems.append(Problem(where, message, code))

    def done(self) -> None:
        if self.problems:
            raise ExchangeError(self.problems, what="待导出的数值 (cells to export)")


def _cell_problems(cell: Cell) -> Iterable[tuple[str, str]]:
    if not valid_unit(cell.unit):
        yield "unit", f"单位编码无效 {cell.unit!r} (invalid unit code)"
    if not valid_indicator_code(cell.indicator):
        yield "indicator", f"指标编码无效 {cell.indicator!r} (invalid indicator code)"
    if not valid_our_period(cell.period):
        yield "period", f"期间无效 {cell.period!r}，应如 2026-Y、2026-H1、2026-Q3、2026-M07 (invalid period)"
    text, problem = parse_value(cell.value) if isinstance(cell.value, str) else ("", "应为文本 (expected text)")
    if problem:
        yield "value", problem
    elif text != cell.value:
        yield "value", f"数值应为规范写法 {text!r}，实为 {cell.value!r} (value must be canonical decimal text)"
    why = comment_problem(cell.comment)
    if why:
        yield "comment", why
