"""Every request and response body of the gateway, as msgspec Structs: the OpenAPI document
describes each with a component schema, and every constraint the server enforces on a field
(code, cycle and period formats, lengths, ranges, enumerations) is stated here, so a request
that fits the schema is never refused as malformed (400). Semantic refusals (an indicator the
framework does not have, a period of another cycle, a bundle no longer pending) answer 404, 409
or 422 with a problem document (gateway/problems.py).
"""

from __future__ import annotations

import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

# --- field formats (the same rules as aggregator.framework and nodes.config)
Cycle = Annotated[str, Meta(pattern=r"^[0-9]{4}$", description="考评年度 appraisal year, e.g. 2026",
                            examples=["2026"])]
Period = Annotated[str, Meta(pattern=r"^[0-9]{4}-(Y|H[12]|Q[1-4]|M(0[1-9]|1[0-2]))$",
                             description="报告期 reporting period of the cycle: 2026-Y, 2026-H1, 2026-Q3, 2026-M07",
                             examples=["2026-Y"])]
IndicatorCode = Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$", description="指标编码",
                                    examples=["A1"])]
NodeCode = Annotated[str, Meta(pattern=r"^([0-9]{2}|[0-9]{4}|[0-9]{6}|[0-9]{9})$",
                               description="区划代码 (GB/T 2260 / 统计用区划代码): 2, 4, 6 or 9 digits",
                               examples=["510104"])]
BundleId = Annotated[str, Meta(pattern=r"^[0-9a-f]{64}$", description="结果包 id: SHA-256 of its payload")]
DecimalText = Annotated[str, Meta(
    pattern=r"^[+-]?[0-9０-９٠-٩]{1,17}(\.[0-9０-９٠-٩]{1,10})?$",
    description="a decimal number as text: fewer than 18 integer digits, at most 10 decimals "
                "(full-width and Arabic-Indic digits are read as digits)", examples=["12.5"])]
BoundedInt = Annotated[int, Meta(gt=-(10**18), lt=10**18)]
Score100 = Annotated[float, Meta(ge=0, le=100)]
Name = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"\S")]
Note = Annotated[str, Meta(max_length=500)]
GRADES = ("优秀", "良好", "一般", "差")
Grade = Literal["优秀", "良好", "一般", "差"]
ReviewStatus = Literal["pending", "returned", "accepted", "rejected"]


class Problem(Struct, kw_only=True):
    """RFC 9457 problem details; ``code`` is stable and machine-readable."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    instance: str | UnsetType = UNSET
    errors: list[dict[str, Any]] | UnsetType = UNSET


# ------------------------------------------------------------------- node
class NodeRef(Struct, kw_only=True):
    code: str
    name: str


class NodeInfo(Struct, kw_only=True):
    code: str
    name: str
    level: str
    parent: str | None
    path: list[str]
    children: list[NodeRef]


class Health(NodeInfo, kw_only=True):
    status: Literal["ok"]


class Counts(Struct, kw_only=True):
    frameworks: int
    results: int
    bundles: int
    scores: int
    audit: int
    outbox_pending: int
    rejected: int


class FrameworkSummary(Struct, kw_only=True, rename={"unit_class": "class"}):
    digest: str
    issuer: str
    cycle: str
    unit_class: str
    version: int
    role: str


class SyncBrief(Struct, kw_only=True):
    outbox_pending: int
    last_error: str


class ReadCacheStats(Struct, kw_only=True):
    """The read path's cache (nodes/read_cache.py): ``generation`` counts committed writes; an answer
    computed under an older one is never served."""

    generation: int
    hits: int
    misses: int


class Status(NodeInfo, kw_only=True):
    counts: Counts
    frameworks: list[FrameworkSummary]
    sync: SyncBrief
    read_cache: ReadCacheStats


class Direction(Struct, kw_only=True):
    subject: str
    acknowledged: int
    pending: int
    last_sent_at: int
    last_error: str
    last_error_at: int


class UpDirection(Direction, kw_only=True):
    parent: str


class ChildSync(Struct, kw_only=True):
    code: str
    name: str
    bundles: int
    last_seq: int
    last_at: int
    rejected: int
    reported_seq: int  # the last bundle the child says (in its signed report) it signed for this node
    missing: int  # bundles it signed that have not arrived: a gap, being pulled


class Returned(Struct, kw_only=True):
    bundle_id: str
    seq: int
    reason: str
    returned_at: int


class ParentHeartbeat(Struct, kw_only=True):
    parent: str
    issued_at: int
    expires_at: int
    fresh: bool
    missing_frameworks: list[str]
    last_error: str
    returned: list[Returned]


class GiveUp(Struct, kw_only=True):
    what: str
    reason: str
    at: int


class ReportUp(Struct, kw_only=True):
    last_sent_at: int
    last_error: str


class HeldRef(Struct, kw_only=True, rename={"unit_class": "class"}):
    issuer: str
    cycle: str
    unit_class: str
    version: int
    digest: str


class CascadeRefusal(Struct, kw_only=True):
    framework_digest: str
    code: str
    reason: str
    refused_at: int


class ListBehind(Struct, kw_only=True):
    """A 区划调整 change list issuer whose lists the descendant's parent holds up to ``expected_seq``
    and the descendant only up to ``held_seq`` (0: none)."""

    issuer: str
    expected_seq: int
    held_seq: int


class DescendantCascade(Struct, kw_only=True):
    """One descendant's cascade state, from the signed report it sent (sync/reports.py): current when
    it holds the latest framework its parent issued to it, per cycle and class; and the change lists
    its parent holds that it has not taken."""

    node: str
    parent: str
    state: Literal["current", "lagging", "refused", "unreported"]
    reported_at: int
    fresh: bool
    audit_seq: int
    expected: list[HeldRef]
    held: list[HeldRef]
    refusals: list[CascadeRefusal]
    division_lists_behind: list[ListBehind]


class SyncStatus(Struct, kw_only=True):
    results_to_parent: UpDirection | None
    cascade_to_children: Direction | None
    from_children: list[ChildSync]
    nats_connected: bool
    transport_last_error: str
    grpc_tls: bool
    parent_heartbeat: ParentHeartbeat | None
    revocation_lists: dict[str, int]
    gave_up: list[GiveUp]
    report_to_parent: ReportUp | None
    descendants: list[DescendantCascade]


# ------------------------------------------------------------- frameworks
class Link(Struct, kw_only=True):
    parent_indicator: str
    rule: str
    share: str
    parent_framework_digest: str


class IndicatorView(Struct, kw_only=True):
    code: str
    name: str
    parent_code: str
    weight: str
    leaf: bool
    unit: str
    direction: str
    rollup: str
    target: str | None
    links: list[Link]


class ParentPin(Struct, kw_only=True):
    issuer: str
    version: int
    digest: str


class FrameworkView(Struct, kw_only=True, rename={"unit_class": "class"}):
    digest: str
    role: str
    issuer: str
    issuer_name: str
    cycle: str
    unit_class: str
    version: int
    title: str
    parent: ParentPin | None
    units: list[NodeRef]
    indicators: list[IndicatorView]
    cascade: str | UnsetType = UNSET  # base64 of the signed CascadeMessage, with ?envelopes=true


class PublishFramework(Struct, kw_only=True, forbid_unknown_fields=True):
    yaml: Annotated[str, Meta(max_length=2 * 1024 * 1024, description="指标体系 YAML 文本")]
    filename: Annotated[str, Meta(max_length=255, description="only labels messages")] = "framework.yaml"


class Published(Struct, kw_only=True):
    digest: str


# ---------------------------------------------------------------- results
class FrameworkLabel(Struct, kw_only=True, rename={"unit_class": "class"}):
    """The framework version a figure answers (one version is shown at a time)."""

    issuer: str
    cycle: str
    unit_class: str
    version: int
    digest: str


class Ranking(Struct, kw_only=True):
    unit: str
    name: str
    period: str
    score: str
    rank: int  # 0: not assessed
    grade: str | None
    assessed: bool  # False: the unit reported nothing; listed, not scored, not ranked, not graded
    complete: bool  # False: a measured indicator has no value; ranked below every complete unit
    interim: bool  # True: an interim period (half, quarter, month), scored against interim targets
    graded: bool  # False: the framework gives this period no grades (grade is empty)
    framework_digest: str
    framework: FrameworkLabel
    explanation: dict[str, Any]


class ValueRow(Struct, kw_only=True):
    node: str
    period: str
    indicator: str
    value: str
    source: str
    framework_digest: str
    framework: FrameworkLabel


class WarningRow(Struct, kw_only=True):
    indicator: str
    unit: str
    level: str
    expected: str
    actual: str
    progress: str
    name: str
    framework: FrameworkLabel


class Flags(Struct, kw_only=True):
    grade: str
    years: int
    units: list[str]


class DrillRow(Struct, kw_only=True):
    """A unit of the subtree: its name from a signed framework, its level and parent from its code."""

    unit: str
    name: str
    parent: str
    level: Literal["province", "city", "county", "township"]
    value: str
    source: Literal["entered", "reported", "rolled_up"]


class DroppedRow(Struct, kw_only=True):
    """A row left out of the answer: ``by`` dropped it from the answer of ``via`` (its child)."""

    unit: str  # as the answer named it, at most 40 characters
    code: str  # drilldown.*
    reason: str
    by: str
    via: str


class Drilldown(Struct, kw_only=True):
    indicator: str
    cycle: str
    period: str
    framework: FrameworkLabel  # this node's framework version; each level below answers its own that pins it
    rows: list[DrillRow]
    partial: list[str]  # nodes whose part is missing: unreachable, or not holding this version
    complete: bool
    dropped: list[DroppedRow]  # at most 100 listed
    dropped_total: int


class EnterValues(Struct, kw_only=True, forbid_unknown_fields=True):
    cycle: Cycle
    period: Period
    values: Annotated[dict[IndicatorCode, DecimalText | BoundedInt], Meta(max_length=5000)]


class Entered(Struct, kw_only=True):
    bundle_id: str


class MilestoneIn(Struct, kw_only=True, forbid_unknown_fields=True):
    code: IndicatorCode
    due: datetime.date
    done: datetime.date | None = None
    quality: Annotated[float, Meta(ge=0, le=1)] = 1.0


class EventIn(Struct, kw_only=True, forbid_unknown_fields=True):
    item: IndicatorCode
    points: Annotated[float, Meta(ge=0, lt=10**6)] = 0.0
    note: Note = ""


Many = Meta(max_length=500)  # = nodes.assessments.MAX_ITEMS


class EnterAssessment(Struct, kw_only=True, forbid_unknown_fields=True):
    cycle: Cycle
    period: Period
    unit: NodeCode
    ratings: Annotated[dict[IndicatorCode, Annotated[list[Score100], Meta(min_length=1, max_length=500)]], Many] \
        | UnsetType = UNSET
    surveys: Annotated[dict[IndicatorCode, Annotated[dict[Annotated[str, Meta(max_length=64)], Score100], Many]],
                       Many] | UnsetType = UNSET
    milestones: Annotated[dict[IndicatorCode, Annotated[list[MilestoneIn], Many]], Many] | UnsetType = UNSET
    events: Annotated[list[EventIn], Many] | UnsetType = UNSET
    previous: Annotated[dict[IndicatorCode, DecimalText | BoundedInt], Many] | UnsetType = UNSET

    def body(self) -> dict[str, Any]:
        """The assessment document as nodes.assessments.normalise reads it."""
        out: dict[str, Any] = msgspec.to_builtins(self)
        for k in ("cycle", "period", "unit"):
            out.pop(k, None)
        return out


class Assessed(Struct, kw_only=True):
    unit: str
    recorded: list[str]


class ReviewItem(Struct, kw_only=True):
    node: str
    name: str
    bundle_id: str
    seq: int
    cycle: str
    period: str
    received_at: int
    reviewer: str
    reviewed_at: int
    reason: str


class _Decision(Struct, kw_only=True, forbid_unknown_fields=True, tag_field="decision"):
    """The reviewer is whoever the request acts as (its session or the token): never a field."""

    node: NodeCode
    bundle_id: BundleId


class Approve(_Decision, tag="approve"):
    """审核通过: the bundle's values count, and this node's signed approval names the reviewer."""

    note: Note = ""


class Return(_Decision, tag="return"):
    """退回: the bundle counts for nothing; the child is told the reason with the next heartbeat."""

    note: Annotated[str, Meta(min_length=1, max_length=500, pattern=r"\S", description="退回理由 (required)")]


ReviewDecision = Approve | Return


class Reviewed(Struct, kw_only=True):
    bundle_id: str
    status: str


class Revoke(Struct, kw_only=True, forbid_unknown_fields=True):
    code: NodeCode
    serial: Annotated[int, Meta(ge=1, le=2**63 - 1)]
    reason: Annotated[str, Meta(max_length=200)] = ""


class Revoked(Struct, kw_only=True):
    code: str
    serial: int
    list_version: int


# ------------------------------------------------------------------ audit
class AuditBreakView(Struct, kw_only=True):
    seq: int
    reason: str


class AuditEntryView(Struct, kw_only=True):
    seq: int
    at: int
    actor: str
    action: str
    subject: str
    detail: dict[str, Any]
    hash: str


class AuditCounterView(Struct, kw_only=True):
    """Refusals, replays or gaps of one (sender, action, code): ``total`` ever counted, ``pending``
    counted in the open window and not yet folded into a summary entry."""

    sender: str
    action: str
    code: str
    total: int
    pending: int
    window_start: int
    last_at: int


class AuditLog(Struct, kw_only=True):
    """Newest first. ``intact``: the chain verifies from the checkpoint (``verified_seq``, verified
    from genesis earlier) to its tip; ``appraise audit verify`` re-verifies it all. ``next``: pass as
    ``before`` for the next, older page (null: none)."""

    intact: bool
    first_break: AuditBreakView | None
    verified_seq: int
    entries: list[AuditEntryView]
    next: int | None
    counters: list[AuditCounterView]


# --- people and intake (issue 10)
UnitCode = Annotated[str, Meta(pattern=r"^[0-9A-Za-z-]{2,32}$", description="被考评单位：区划代码或部门代码",
                               examples=["510104017"])]
EntryKey = Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
                               description="末级指标编码，或其分子/分母（A3.num / A3.den）、加权平均的权数")]
Login = Annotated[str, Meta(pattern=r"^[a-z][a-z0-9._-]{1,31}$", description="用户名 login")]
Role = Literal["office", "provider", "opinion", "reviewer", "unit", "auditor"]


class UserIn(Struct, kw_only=True, forbid_unknown_fields=True):
    """A new account. Without ``password`` it gets a one-time password, returned once, to be changed at
    the first sign-in; a given password must have at least 10 characters."""

    login: Login
    name: Name
    roles: Annotated[list[Role], Meta(min_length=1, max_length=6)]
    org: Annotated[str, Meta(max_length=64)] = ""
    units: Annotated[list[UnitCode], Meta(max_length=10_000)] = []
    indicators: Annotated[list[EntryKey], Meta(max_length=1000)] = []
    password: Annotated[str, Meta(min_length=10, max_length=256)] | UnsetType = UNSET
    oidc_subject: Annotated[str, Meta(max_length=255)] = ""


class UserCreated(Struct, kw_only=True):
    login: str
    one_time_password: str  # "" when a password was given


class UserView(Struct, kw_only=True):
    login: str
    name: str
    org: str
    roles: list[str]
    units: list[str]
    indicators: list[str]
    disabled: bool
    must_change: bool
    locked_until: int
    oidc: bool


class TaskView(Struct, kw_only=True):
    unit: str
    indicator: str
    provider: str
    frequency: str
    confirm: bool
    minimum: str
    maximum: str


class TasksGenerated(Struct, kw_only=True):
    cycle: str
    tasks: int


class GenerateTasks(Struct, kw_only=True, forbid_unknown_fields=True):
    cycle: Cycle


class CellIn(Struct, kw_only=True, forbid_unknown_fields=True):
    unit: UnitCode
    key: EntryKey
    value: Annotated[str, Meta(max_length=64, description="as typed: full-width digits are read as digits")]
    comment: Note = ""


class SaveEntries(Struct, kw_only=True, forbid_unknown_fields=True):
    """A batch of cells for one period: drafts, or (``submit``) for review. All of it is taken, or none."""

    cycle: Cycle
    period: Period
    submit: bool = False
    cells: Annotated[list[CellIn], Meta(min_length=1, max_length=50_000)]


class EntriesSaved(Struct, kw_only=True):
    saved: int
    submitted: int
    late: int
    warnings: list[str]


class CellRef(Struct, kw_only=True, forbid_unknown_fields=True):
    unit: UnitCode
    key: EntryKey


class DecideEntries(Struct, kw_only=True, forbid_unknown_fields=True):
    """审核: approve the cells (they count, and this node's own are signed and sent up) or return them."""

    cycle: Cycle
    period: Period
    decision: Literal["approve", "return"]
    reason: Note = ""
    cells: Annotated[list[CellRef], Meta(min_length=1, max_length=50_000)]


class EntriesDecided(Struct, kw_only=True):
    approved: int
    returned: int
    bundles: list[str]


class GridCellView(Struct, kw_only=True):
    unit: str
    key: str
    value: str
    comment: str
    status: str
    previous: str
    last_year: str
    reason: str
    attachments: list[str]


class GridColumnView(Struct, kw_only=True):
    key: str
    indicator: str
    name: str
    measure_unit: str
    minimum: str
    maximum: str


class GridView(Struct, kw_only=True):
    cycle: str
    period: str
    provider: str
    opens_at: int
    due_at: int
    open: bool
    units: list[dict[str, str]]
    columns: list[GridColumnView]
    cells: list[GridCellView]


class Imported(Struct, kw_only=True):
    format: str
    periods: list[str]
    saved: int
    submitted: int


# --- the public results site (gateway/controllers/public.py; built by nodes/public_data.py)

class PublicFrameworkRef(Struct, kw_only=True):
    issuer: str
    cycle: str
    unit_class: str
    version: int
    digest: str


class PublicLinks(Struct, kw_only=True):
    proof: str
    csv: str
    sdmx: str
    json: str


class PublicPublicationSummary(Struct, kw_only=True):
    """One published result (final, or publicity the office made public: state ``publicity``, 公示中)."""

    digest: Annotated[str, Meta(description="SHA-256 of the signed publication: its identity and ETag")]
    node: str
    node_name: str
    cycle: str
    period: str
    unit_class: str
    state: Literal["publicity", "final"]
    version: int
    published_at: Annotated[int, Meta(description="Unix seconds")]
    window_opens: int
    window_closes: int
    framework: PublicFrameworkRef
    unit_count: int
    links: PublicLinks


class PublicValue(Struct, kw_only=True):
    indicator: str
    name: str
    value: Annotated[str, Meta(description="decimal text, exactly as signed")]
    source: Literal["reported", "provided", "entered"]
    bundle_id: Annotated[str, Meta(description="reported: the signed bundle it rests on (in the proof)")]


class PublicGroup(Struct, kw_only=True):
    code: str
    name: str
    weight: str
    points: Annotated[str, Meta(description="Σ of the unit's published leaf points under this group")]


class PublicUnit(Struct, kw_only=True):
    unit: str
    name: str
    score: str
    rank: Annotated[int, Meta(description="0 when not assessed")]
    grade: str
    assessed: bool
    values: list[PublicValue]
    groups: list[PublicGroup]


class PublicPublication(PublicPublicationSummary, kw_only=True):
    """A published result with every figure, exactly as signed (verify with its proof)."""

    reason: str
    previous: Annotated[str, Meta(description="digest of the version this one follows; empty for the first")]
    as_of: int
    units: list[PublicUnit]
