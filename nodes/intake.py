"""Data intake, the pure part: the task book's rows, a provider's grid for one period, and the checks
every entered cell passes, whichever way it came in (the entry page, an Excel file, a DHIS2 or ADX
document, the API). No I/O: the service (nodes/services/intake.py) hands in what the store holds.

A cell is (unit, key) for one period: ``key`` is a leaf indicator or one of the extra keys a leaf
needs (``A3.num``/``A3.den`` for a ratio of sums, a weighted mean's weight), as
``aggregator.framework.reportable_keys`` lists them. Every problem names where it is (``where``:
the grid cell, ``Sheet!C7``, ``dataValues[3]``) and says the fix; a batch with any problem is taken
in no part (``check`` returns the problems and nothing else).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from aggregator.errors import BadInput
from aggregator.framework import ASSESSED_METHODS, Framework
from aggregator.numbers import NumberError, parse_decimal, to_text

OUTLIER_RATIO = Decimal("0.5")  # a change of more than half against last period or last year needs a comment
STATUSES = ("draft", "submitted", "confirmed", "objected", "approved", "returned")
EDITABLE = frozenset({"", "draft", "returned", "objected", "approved"})  # an approved value may be corrected: new review


@dataclass(frozen=True)
class Column:
    """One key a provider enters: a leaf (or its numerator/denominator/weight) of the framework."""

    key: str
    indicator: str  # the leaf it belongs to
    name: str
    measure_unit: str = ""
    minimum: Decimal | None = None
    maximum: Decimal | None = None


@dataclass(frozen=True)
class Row:
    unit: str
    name: str


@dataclass(frozen=True)
class CellState:
    value: str = ""  # canonical decimal text; "" = nothing entered
    comment: str = ""
    status: str = ""  # "" = never entered; else one of STATUSES
    previous: str = ""  # the approved value of the period before, for comparison
    last_year: str = ""  # the approved value of the same period last year
    reason: str = ""  # why it was returned or objected to
    attachments: tuple[str, ...] = ()  # names of its evidence files


@dataclass(frozen=True)
class Grid:
    cycle: str
    period: str
    provider: str
    rows: tuple[Row, ...]
    columns: tuple[Column, ...]
    cells: Mapping[tuple[str, str], CellState] = field(default_factory=dict)
    opens_at: int = 0
    due_at: int = 0  # 0: no deadline set
    open: bool = True  # inside its window, or unlocked by the office

    def cell(self, unit: str, key: str) -> CellState:
        return self.cells.get((unit, key), CellState())

    def column(self, key: str) -> Column | None:
        return next((c for c in self.columns if c.key == key), None)


@dataclass(frozen=True)
class CellInput:
    unit: str
    key: str
    value: str  # as typed: full-width digits and the like are read by parse_decimal
    comment: str = ""
    where: str = ""  # how the source names the place: "510104017/A1", "数据!C7", "dataValues[3]"


@dataclass(frozen=True)
class Checked:
    unit: str
    key: str
    value: str  # canonical; "" clears a draft
    comment: str
    as_entered: str
    warning: str = ""  # an outlier that its comment explains


@dataclass(frozen=True)
class Problem:
    where: str
    message: str
    code: str


class IntakeRefused(BadInput):
    """A batch with problems: nothing of it was taken. ``problems`` names each one."""

    default_code = "intake.refused"

    def __init__(self, problems: Sequence[Problem], source: str = "") -> None:
        head = f"{source}: " if source else ""
        shown = "；".join(f"{p.where} {p.message}" for p in problems[:20])
        more = f"；另有 {len(problems) - 20} 处 (and {len(problems) - 20} more)" if len(problems) > 20 else ""
        super().__init__(f"{head}{len(problems)} 处错误，未保存任何数据 ({len(problems)} problems; nothing was saved)："
                         f"{shown}{more}", code=problems[0].code if len(problems) == 1 else "intake.refused")
        self.problems = list(problems)


def value_columns(fw: Framework, bounds: Mapping[str, tuple[Decimal | None, Decimal | None]] | None = None,
                  only: Iterable[str] | None = None) -> tuple[Column, ...]:
    """The keys a provider enters against ``fw`` (assessed leaves, such as ratings and surveys, are the
    opinion providers' and not here), in framework order; ``only`` keeps those leaves."""
    wanted = set(only) if only is not None else None
    bounds = bounds or {}
    out: list[Column] = []
    for ind in fw.leaves():
        if ind.method in ASSESSED_METHODS or (wanted is not None and ind.code not in wanted):
            continue
        lo, hi = bounds.get(ind.code, (None, None))
        if lo is None and ind.measure_unit in ("%", "％") and ind.method != "growth":
            lo = Decimal(0)
        out.append(Column(ind.code, ind.code, ind.name, ind.measure_unit, lo, hi))
        for rule in (ind.rollup, *(link.rule for link in ind.links)):
            name, _, by = rule.partition(":")
            if name == "ratio_of_sums":
                out += [Column(f"{ind.code}.num", ind.code, f"{ind.name}（分子）", "", Decimal(0)),
                        Column(f"{ind.code}.den", ind.code, f"{ind.name}（分母）", "", Decimal(0))]
            elif name == "weighted_mean" and by and all(c.key != by for c in out):
                out.append(Column(by, ind.code, f"{ind.name}（权数 {by}）", "", Decimal(0)))
    first: dict[str, Column] = {}
    for c in out:
        first.setdefault(c.key, c)  # a weight shared by two leaves is one column
    return tuple(first.values())


def _outlier(value: Decimal, against: str, label: str) -> str:
    if not against:
        return ""
    base = parse_decimal(against, label)
    if base == 0:
        return "" if value == 0 else f"{label} 为 0，本期为 {to_text(value)}"
    change = abs(value - base) / abs(base)
    if change > OUTLIER_RATIO:
        pct = (change * 100).quantize(Decimal(1))
        return f"较{label}（{against}）变化 {pct}%"
    return ""


def check(grid: Grid, inputs: Sequence[CellInput], *, submitting: bool = False,
          where: Callable[[CellInput], str] | None = None) -> tuple[list[Checked], list[Problem]]:
    """Every input checked against the grid: in it (the provider's units and keys), editable now,
    a number in the column's bounds, and an outlier against last period or last year explained by a
    comment. Returns what to take, or the problems (then take nothing)."""
    name = where or (lambda c: c.where or f"{c.unit}/{c.key}")
    rows = {r.unit for r in grid.rows}
    out: list[Checked] = []
    problems: list[Problem] = []
    seen: set[tuple[str, str]] = set()
    if not grid.open:
        return [], [Problem("", "本期填报已截止，需绩效办解锁后才能补报 (the period is closed; the office must unlock it)",
                            "intake.closed")]
    for c in inputs:
        at = name(c)
        col = grid.column(c.key)
        if c.unit not in rows:
            problems.append(Problem(at, f"单位 {c.unit[:16]} 不在您的填报任务中 (unit not in your tasks)", "intake.not_assigned"))
            continue
        if col is None:
            problems.append(Problem(at, f"指标 {c.key[:32]} 不在您的填报任务中 (indicator not in your tasks)",
                                    "intake.not_assigned"))
            continue
        if (c.unit, c.key) in seen:
            problems.append(Problem(at, "同一单元格出现两次 (the same cell twice)", "intake.duplicate"))
            continue
        seen.add((c.unit, c.key))
        state = grid.cell(c.unit, c.key)
        if state.status not in EDITABLE:
            problems.append(Problem(at, f"该数据状态为「{STATUS_ZH.get(state.status, state.status)}」，审核完成或退回前不能修改 "
                                        "(in review: wait for the decision)", "intake.in_review"))
            continue
        raw = c.value.strip()
        comment = c.comment.strip()[:500]
        if not raw:
            if submitting:
                problems.append(Problem(at, "提交前须填写数值 (a value is needed to submit)", "intake.empty"))
            else:
                out.append(Checked(c.unit, c.key, "", comment, ""))
            continue
        try:
            value = parse_decimal(raw, col.name)
        except NumberError as exc:
            problems.append(Problem(at, f"{raw[:40]!r} 不是有效数字：{exc} (not a number)", "intake.not_a_number"))
            continue
        unit = f" {col.measure_unit}" if col.measure_unit else ""
        if col.minimum is not None and value < col.minimum:
            problems.append(Problem(at, f"{to_text(value)}{unit} 低于下限 {to_text(col.minimum)}{unit} (below the minimum)",
                                    "intake.below_minimum"))
            continue
        if col.maximum is not None and value > col.maximum:
            problems.append(Problem(at, f"{to_text(value)}{unit} 超过上限 {to_text(col.maximum)}{unit} (above the maximum)",
                                    "intake.above_maximum"))
            continue
        warning = _outlier(value, state.previous, "上期") or _outlier(value, state.last_year, "去年同期")
        if warning and not comment:
            problems.append(Problem(at, f"{warning}，变化较大，请在备注中说明原因 (an outlier: explain it in the comment)",
                                    "intake.outlier_needs_comment"))
            continue
        out.append(Checked(c.unit, c.key, to_text(value), comment, raw, warning))
    return ([], problems) if problems else (out, [])


STATUS_ZH = {"": "未填报", "draft": "草稿", "submitted": "已提交待审核", "confirmed": "被考评单位已确认",
             "objected": "被考评单位有异议", "approved": "已审核通过", "returned": "已退回"}


# --- periods: which a frequency asks for, what comes before, their windows (China Standard Time)
CST = 8 * 3600
DUE_DAYS = 20  # a period is due this many days after it ends, unless the office sets another date


def periods_of(cycle: str, frequency: str) -> list[str]:
    f = frequency or "Y"
    if f == "M":
        return [f"{cycle}-M{m:02d}" for m in range(1, 13)]
    if f == "Q":
        return [f"{cycle}-Q{q}" for q in range(1, 5)]
    if f == "H":
        return [f"{cycle}-H1", f"{cycle}-H2"]
    return [f"{cycle}-Y"]


def _months(period: str) -> tuple[int, int]:
    """First and last month of a period."""
    kind = period[5]
    if kind == "M":
        m = int(period[6:])
        return m, m
    if kind == "Q":
        q = int(period[6:])
        return 3 * q - 2, 3 * q
    if kind == "H":
        h = int(period[6:])
        return 6 * h - 5, 6 * h
    return 1, 12


def _month_start(year: int, month: int) -> int:
    import calendar

    if month > 12:
        year, month = year + 1, month - 12
    return calendar.timegm((year, month, 1, 0, 0, 0, 0, 0, 0)) - CST


def window_of(period: str) -> tuple[int, int]:
    """(opens_at, due_at): open from the period's first day, due ``DUE_DAYS`` after its last (CST)."""
    year = int(period[:4])
    first, last = _months(period)
    return _month_start(year, first), _month_start(year, last + 1) + DUE_DAYS * 86400


def previous_period(period: str) -> str:
    year, kind = int(period[:4]), period[5]
    if kind == "Y":
        return f"{year - 1}-Y"
    n, count = int(period[6:]), {"M": 12, "Q": 4, "H": 2}[kind]
    if n == 1:
        return f"{year - 1}-{kind}{count:02d}" if kind == "M" else f"{year - 1}-{kind}{count}"
    return f"{year}-{kind}{n - 1:02d}" if kind == "M" else f"{year}-{kind}{n - 1}"


def same_period_last_year(period: str) -> str:
    return f"{int(period[:4]) - 1}{period[4:]}"


# --- evidence files (台账, closure evidence): kept once under their SHA-256
MAX_ATTACHMENT = 10 * 1024 * 1024
ATTACHMENT_TYPES = {".pdf": "application/pdf", ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
                    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                    ".ofd": "application/ofd", ".txt": "text/plain", ".csv": "text/csv", ".zip": "application/zip"}


def safe_name(name: str) -> str:
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = re.sub(r"[\x00-\x1f\x7f\"<>:|?*]", "_", base).strip(" .") or "file"
    return base[:120]


@dataclass(frozen=True)
class EvidenceFile:
    name: str
    content_type: str
    sha256: str


def evidence_file(filename: str, data: bytes, code: str = "intake.attachment") -> EvidenceFile:
    """An uploaded evidence file checked (a listed type, not empty, at most MAX_ATTACHMENT): the one
    check of every upload into the attachment store (台账, closure evidence, an appeal's materials).
    ``code``: the prefix of the refusals' codes (``<code>_type``, ``_empty``, ``_too_large``)."""
    name = safe_name(filename)
    ext = ("." + name.rsplit(".", 1)[-1].lower()) if "." in name else ""
    if ext not in ATTACHMENT_TYPES:
        raise BadInput(f"{name}: 不支持的文件类型，可用 {'、'.join(sorted(ATTACHMENT_TYPES))} (file type not accepted)",
                       code=f"{code}_type")
    if not data:
        raise BadInput(f"{name}: 文件为空 (empty file)", code=f"{code}_empty")
    if len(data) > MAX_ATTACHMENT:
        raise BadInput(f"{name}: 文件 {len(data) // 1024} KB，超过上限 {MAX_ATTACHMENT // 1024 // 1024} MB (too large)",
                       code=f"{code}_too_large")
    return EvidenceFile(name, ATTACHMENT_TYPES[ext], hashlib.sha256(data).hexdigest())
