"""Our reporting periods and their equals in DHIS2, ADX and SDMX.

Ours are the calendar year and its halves, quarters and months (``2026-Y``, ``2026-H1``,
``2026-Q3``, ``2026-M07``). Each other notation has more kinds of period (weeks, days, financial
years, bi-months, ...); a period with no equal here is refused with a message saying so, never
rounded to a near one, because a value for April-to-March is not a value for the year.

| ours | DHIS2 | ADX (ISO 8601 start/duration) | SDMX (reporting period) |
|---|---|---|---|
| 2026-Y | 2026 | 2026-01-01/P1Y | 2026 (also read: 2026-A1) |
| 2026-H1, H2 | 2026S1, 2026S2 | 2026-01-01/P6M, 2026-07-01/P6M | 2026-S1, 2026-S2 |
| 2026-Q3 | 2026Q3 | 2026-07-01/P3M | 2026-Q3 |
| 2026-M07 | 202607 | 2026-07-01/P1M | 2026-M07 (also read: 2026-07) |
"""

from __future__ import annotations

import re

from aggregator.errors import BadInput

_OURS = re.compile(r"([0-9]{4})-(Y|H[12]|Q[1-4]|M(?:0[1-9]|1[0-2]))\Z")
_OURS_FORMS = "本平台的期间为年、半年、季度、月 (this platform's periods are the calendar year, half, quarter and month)"


class NoEqual(BadInput):
    """A period in another notation that has no equal among ours (or is not a period at all)."""

    default_code = "exchange.period"


def _split(ours: str) -> tuple[str, str]:
    m = _OURS.match(ours)
    if m is None:
        raise NoEqual(f"期间无效 {ours!r}，应如 2026-Y、2026-H1、2026-Q3、2026-M07 (invalid period)")
    return m.group(1), m.group(2)


# ---- DHIS2 ISO periods ---------------------------------------------------------------------------

_DHIS2 = re.compile(r"([0-9]{4})(?:(S[12]|Q[1-4])|(0[1-9]|1[0-2]))?\Z")
_DHIS2_KINDS = (
    (re.compile(r"[0-9]{4}-?W[0-9]{1,2}\Z|[0-9]{4}(?:Wed|Thu|Sat|Sun)W[0-9]{1,2}\Z"), "周 (weekly)"),
    (re.compile(r"[0-9]{4}BiW[0-9]{1,2}\Z"), "双周 (bi-weekly)"),
    (re.compile(r"[0-9]{8}\Z|[0-9]{4}-[0-9]{2}-[0-9]{2}\Z"), "日 (daily)"),
    (re.compile(r"[0-9]{6}B\Z"), "双月 (bi-monthly)"),
    (re.compile(r"[0-9]{4}(?:April|Nov)S[12]\Z"), "非自然半年 (six-monthly April/November)"),
    (re.compile(r"[0-9]{4}(?:April|July|Oct|Nov)\Z"), "财年 (financial year)"),
)


def to_dhis2(ours: str) -> str:
    year, part = _split(ours)
    if part == "Y":
        return year
    if part[0] == "H":
        return f"{year}S{part[1]}"
    if part[0] == "Q":
        return f"{year}{part}"
    return f"{year}{part[1:]}"


def from_dhis2(text: str) -> str:
    m = _DHIS2.match(text)
    if m is None:
        for pattern, kind in _DHIS2_KINDS:
            if pattern.match(text):
                raise NoEqual(f"DHIS2 {kind}期间 {text!r} 在本平台没有对应，请按年、半年、季度或月汇总后再导入 "
                              f"(a {kind.split('(')[1][:-1]} period has no equal here: aggregate to a year, half, quarter "
                              f"or month first); {_OURS_FORMS}")
        raise NoEqual(f"不是 DHIS2 期间 {text!r}，应如 2026、2026S1、2026Q3、202607 "
                      "(not a DHIS2 ISO period: write 2026, 2026S1, 2026Q3 or 202607)")
    year, half_or_quarter, month = m.groups()
    if half_or_quarter:
        return f"{year}-H{half_or_quarter[1]}" if half_or_quarter[0] == "S" else f"{year}-{half_or_quarter}"
    return f"{year}-M{month}" if month else f"{year}-Y"


# ---- ADX (ISO 8601 start date / duration) --------------------------------------------------------

_ADX = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})/P([0-9]{1,3})([YMWD])\Z")
_DURATIONS = {("1", "Y"): "Y", ("6", "M"): "H", ("3", "M"): "Q", ("1", "M"): "M"}
_STARTS = {"Y": ("01",), "H": ("01", "07"), "Q": ("01", "04", "07", "10"),
           "M": tuple(f"{m:02d}" for m in range(1, 13))}
_KIND_NAMES = {"Y": ("年", "year"), "H": ("半年", "half-year"), "Q": ("季度", "quarter"), "M": ("月", "month")}


def to_adx(ours: str) -> str:
    year, part = _split(ours)
    kind = part[0]
    if kind == "Y":
        return f"{year}-01-01/P1Y"
    if kind == "H":
        return f"{year}-{'01' if part == 'H1' else '07'}-01/P6M"
    if kind == "Q":
        return f"{year}-{(int(part[1]) - 1) * 3 + 1:02d}-01/P3M"
    return f"{year}-{part[1:]}-01/P1M"


def from_adx(text: str) -> str:
    m = _ADX.match(text)
    if m is None:
        raise NoEqual(f"不是 ADX 期间 {text!r}，应为“起始日期/时长”，如 2026-01-01/P1Y、2026-07-01/P3M "
                      "(not an ADX period: write start date/duration, such as 2026-01-01/P1Y or 2026-07-01/P3M)")
    year, month, day, count, unit = m.groups()
    kind = _DURATIONS.get((count, unit))
    if kind is None:
        raise NoEqual(f"ADX 时长 P{count}{unit} 在本平台没有对应，请按年 (P1Y)、半年 (P6M)、季度 (P3M) 或月 (P1M) 汇总 "
                      f"(the duration P{count}{unit} has no equal here: use P1Y, P6M, P3M or P1M); {_OURS_FORMS}")
    if day != "01" or month not in _STARTS[kind]:
        zh, en = _KIND_NAMES[kind]
        starts = "、".join(f"{year}-{s}-01" for s in _STARTS[kind]) if kind != "M" else f"{year}-MM-01"
        raise NoEqual(f"ADX 期间 {text!r} 不从自然{zh}的首日开始（如财年），在本平台没有对应，应从 {starts} 开始 "
                      f"(it does not start on a calendar {en} boundary, e.g. a financial year: it has no equal here)")
    if kind == "Y":
        return f"{year}-Y"
    if kind == "H":
        return f"{year}-H{1 if month == '01' else 2}"
    if kind == "Q":
        return f"{year}-Q{(int(month) - 1) // 3 + 1}"
    return f"{year}-M{month}"


# ---- SDMX reporting periods (SDMX 2.1/3.0 Standard Time Period) ------------------------------------

_SDMX = re.compile(r"([0-9]{4})(?:-(A1|S[12]|Q[1-4]|M(?:0[1-9]|1[0-2]))|-(0[1-9]|1[0-2]))?\Z")
_SDMX_KINDS = (
    (re.compile(r"[0-9]{4}-T[1-3]\Z"), "四个月 (trimester)"),
    (re.compile(r"[0-9]{4}-W[0-9]{2}\Z"), "周 (week)"),
    (re.compile(r"[0-9]{4}-D[0-9]{3}\Z|[0-9]{4}-[0-9]{2}-[0-9]{2}\Z"), "日 (day)"),
    (re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}/P.*\Z|.*T[0-9]{2}:.*\Z"), "时间区间或时刻 (time range or date-time)"),
)


def to_sdmx(ours: str) -> str:
    year, part = _split(ours)
    if part == "Y":
        return year
    if part[0] == "H":
        return f"{year}-S{part[1]}"
    return f"{year}-{part}"


def from_sdmx(text: str) -> str:
    m = _SDMX.match(text)
    if m is None:
        for pattern, kind in _SDMX_KINDS:
            if pattern.match(text):
                raise NoEqual(f"SDMX {kind}期间 {text!r} 在本平台没有对应，请按年、半年、季度或月汇总 "
                              f"(a {kind.split('(')[1][:-1]} period has no equal here: aggregate to a year, half, "
                              f"quarter or month); {_OURS_FORMS}")
        raise NoEqual(f"不是 SDMX 报告期 {text!r}，应如 2026、2026-A1、2026-S1、2026-Q3、2026-M07 "
                      "(not an SDMX reporting period: write 2026, 2026-A1, 2026-S1, 2026-Q3 or 2026-M07)")
    year, reporting, month = m.groups()
    if month:
        return f"{year}-M{month}"
    if reporting is None or reporting == "A1":
        return f"{year}-Y"
    if reporting[0] == "S":
        return f"{year}-H{reporting[1]}"
    return f"{year}-{reporting}"
