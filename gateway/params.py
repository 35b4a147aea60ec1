"""Query parameters, each with the constraint the server enforces stated for the OpenAPI document
(the same rules as the body fields in gateway/schemas.py)."""

from __future__ import annotations

from typing import Annotated, Literal

from litestar.params import PathParameter, QueryParameter

CYCLE = r"^[0-9]{4}$"
PERIOD = r"^[0-9]{4}-(Y|H[12]|Q[1-4]|M(0[1-9]|1[0-2]))$"
INDICATOR = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$"
NODE = r"^([0-9]{2}|[0-9]{4}|[0-9]{6}|[0-9]{9})$"
FRAMEWORK = r"^[0-9a-f]{8,64}$"

_CYCLE_DOC = "考评年度 appraisal year, e.g. 2026"
_PERIOD_DOC = "报告期 reporting period: 2026-Y, 2026-H1, 2026-Q3, 2026-M07"

Cycle = Annotated[str, QueryParameter(pattern=CYCLE, description=_CYCLE_DOC)]
OptCycle = Annotated[str | None, QueryParameter(pattern=CYCLE, description=_CYCLE_DOC)]
Period = Annotated[str, QueryParameter(pattern=PERIOD, description=_PERIOD_DOC)]
OptPeriod = Annotated[str | None, QueryParameter(pattern=PERIOD, description=_PERIOD_DOC + "; all periods if absent")]
Indicator = Annotated[str, QueryParameter(pattern=INDICATOR, description="指标编码 indicator code")]
OptIndicator = Annotated[str | None, QueryParameter(pattern=INDICATOR, description="指标编码 indicator code")]
OptNode = Annotated[str | None, QueryParameter(pattern=NODE, description="区划代码; this node if absent")]
OptFramework = Annotated[str | None, QueryParameter(
    pattern=FRAMEWORK, description="本节点指标体系的摘要或其前缀（至少8位）(this node's framework: its digest or a prefix "
                                   "of at least 8 hex digits); the version in force if absent")]
OptVersion = Annotated[int | None, QueryParameter(
    ge=1, le=2**63 - 1, description="本节点指标体系的版本 (version of this node's framework; ignored when framework is "
                                    "given); the version in force if absent")]
WarningLevel = Annotated[Literal["green", "yellow", "red"] | None,
                         QueryParameter(description="只看这一预警等级 (one warning level only): green/yellow/red")]
OptAction = Annotated[str | None, QueryParameter(max_length=64, description="只看这一种操作 (one action), e.g. reject.results")]
Envelopes = Annotated[bool, QueryParameter(description="include the signed cascade bytes (base64)")]
Depth = Annotated[int, QueryParameter(ge=0, le=3, description="levels to descend")]
Years = Annotated[int, QueryParameter(ge=2, le=10, description="years running")]
AuditLimit = Annotated[int, QueryParameter(ge=1, le=1000, description="entries per page, newest first")]
AuditBefore = Annotated[int | None, QueryParameter(ge=1, le=2**63 - 1,
                                                   description="only entries older than this seq (the last page's next)")]
ReviewLimit = Annotated[int, QueryParameter(ge=0, le=1000)]
Grade = Annotated[Literal["优秀", "良好", "一般", "差"], QueryParameter(description="等次")]
ReviewStatus = Annotated[Literal["pending", "returned", "accepted", "rejected"], QueryParameter(description="审核状态")]

LoginPath = Annotated[str, PathParameter(pattern=r"^[a-z][a-z0-9._-]{1,31}$", description="用户名 login")]
Sha256Path = Annotated[str, PathParameter(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of a file")]
OptUnit = Annotated[str | None, QueryParameter(pattern=r"^[0-9A-Za-z-]{2,32}$", description="被考评单位代码 unit code")]
OptKey = Annotated[str | None, QueryParameter(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
                                              description="指标编码或其前缀 indicator code or prefix")]
OptPage = Annotated[int | None, QueryParameter(ge=0, le=100_000, description="页码，从 0 起 (page, from 0)")]
OptDone = Annotated[str | None, QueryParameter(pattern=r"^[0-9a-f]{1,64}$", description="刚完成的操作 (what was just done)")]
