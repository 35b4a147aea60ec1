"""The framework model (指标体系) and its structural and linkage (衔接) checks."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, localcontext

from aggregator.grading import DEFAULT_GRADES, GRADE_ORDER, GradeRule
from aggregator.numbers import MAX_PLACES, WORK

LEVELS = ("province", "city", "county", "township")
LEVEL_ZH = {"province": "省", "city": "市", "county": "县", "township": "乡镇"}
CODE_LENGTHS = {"province": 2, "city": 4, "county": 6, "township": 9}
DIRECTIONS = ("higher", "lower")
METHODS = ("completion_ratio", "threshold", "efficacy", "minmax", "zscore", "rank", "growth", "versus_peers",
           "task_list", "negative_list", "raters", "survey")
REQUIRED_PARAMS: dict[str, tuple[str, ...]] = {"threshold": ("baseline", "challenge"), "growth": ("target_growth",)}
NEEDS_TARGET = frozenset({"completion_ratio", "threshold"})
ASSESSED_METHODS = frozenset({"task_list", "negative_list", "raters", "survey"})  # no reported value
# Methods that score a value against the indicator's target: only these need targets to cascade.
# The others score against last cycle (growth) or against the class (efficacy, minmax, zscore, rank,
# versus_peers), so a level below has no target to cover, only values to report.
TARGETED_METHODS = frozenset({"completion_ratio", "threshold"})
MISSING_POLICIES = ("zero", "renormalise")
FREQUENCIES = ("", "M", "Q", "H", "Y")
ADJUSTMENT_KINDS = ("bonus", "deduction", "veto")
# Roll-up rules; weighted_mean names the weight, e.g. "weighted_mean:POP" (each unit's reported POP).
ROLLUP_RULES = ("sum", "mean", "min", "max", "weighted_mean", "ratio_of_sums", "all", "latest")
# Rules whose decomposed targets can be checked against the parent's target.
COVERAGE_RULES = ("sum", "mean", "min", "max", "all")
# How an interim period (H, Q, M) derives its target from the year's (aggregator/interim.py):
# proportional = target × elapsed share (flows: investment completed); same = the annual target
# (levels and rates: forest coverage %); none = not appraised before the year. "" = by method and roll-up.
INTERIM_RULES = ("proportional", "same", "none")
# What an interim rule can scale: the target, and the absolute values some methods compare with.
SCALED_PARAMS: dict[str, tuple[str, ...]] = {"threshold": ("baseline", "challenge"),
                                             "efficacy": ("satisfactory", "allowable")}
DEFAULT_GRADED = ("Y",)  # an old framework (no graded_periods) grades the year only
_GRADED = re.compile(r"^(Y|H[12]?|Q[1-4]?|M(0[1-9]|1[0-2])?)$")  # a kind (H: every half) or one period (H1)
_INTERIM_PERIOD = re.compile(r"^(H[12]|Q[1-4]|M(0[1-9]|1[0-2]))$")


def rule_name(rule: str) -> str:
    """``weighted_mean:POP`` → ``weighted_mean``."""
    return rule.split(":", 1)[0]


def valid_rule(rule: str) -> bool:
    name, _, by = rule.partition(":")
    if name == "weighted_mean":
        return bool(by) and valid_indicator_code(by)
    return name in ROLLUP_RULES and not by
ROOT_WEIGHT = Decimal(100)
_CYCLE = re.compile(r"^[0-9]{4}$")
_PERIOD = re.compile(r"^([0-9]{4})-(Y|H[12]|Q[1-4]|M(0[1-9]|1[0-2]))$")
_INDICATOR = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")


def valid_cycle(cycle: str) -> bool:
    """An appraisal year: four digits."""
    return bool(_CYCLE.match(cycle))


def valid_period(period: str, cycle: str) -> bool:
    """A reporting period of ``cycle``: 2026-Y, 2026-H1, 2026-Q3, 2026-M07."""
    m = _PERIOD.match(period)
    return bool(m) and m is not None and m.group(1) == cycle


def valid_indicator_code(code: str) -> bool:
    return bool(_INDICATOR.match(code))


def valid_graded_period(text: str) -> bool:
    """What ``graded_periods`` may list: Y, a kind (H, Q, M: every one of them) or one period (H1, Q3, M07)."""
    return bool(_GRADED.match(text))


def valid_interim_period(text: str) -> bool:
    """A key of ``period_targets``: one interim period of the year, H1, Q3, M07 (the year's target is ``target``)."""
    return bool(_INTERIM_PERIOD.match(text))


def level_of(code: str) -> str:
    """The level a division code stands at, from its length alone ("" for no level's length)."""
    return next((level for level, n in CODE_LENGTHS.items() if len(code) == n), "")


def parent_code(code: str) -> str:
    """The code one level above (its prefix); "" for a province or a code of no level."""
    level = level_of(code)
    if level in ("", "province"):
        return ""
    return code[:CODE_LENGTHS[LEVELS[LEVELS.index(level) - 1]]]


@dataclass(frozen=True)
class Unit:
    code: str
    name: str
    unit_class: str = ""


@dataclass(frozen=True)
class Link:
    """衔接: this leaf decomposes ``parent_indicator``; ``share`` of its value counts toward it.

    A leaf may feed several parent indicators (shares such as 0.6 and 0.4), and several leaves
    may feed one parent indicator (their shares add up per unit) — many-to-many.
    """

    parent_framework_digest: str
    parent_indicator: str
    rule: str
    share: Decimal = Decimal(1)


@dataclass(frozen=True)
class Indicator:
    code: str
    name: str
    weight: Decimal
    parent_code: str = ""
    leaf: bool = False
    measure_unit: str = ""
    direction: str = "higher"
    target: Decimal | None = None
    unit_targets: Mapping[str, Decimal] = field(default_factory=dict)
    method: str = "completion_ratio"
    cap: Decimal = Decimal("1.2")
    must_cascade: bool = False
    links: tuple[Link, ...] = ()
    rollup: str = "sum"
    params: Mapping[str, str] = field(default_factory=dict)
    class_targets: Mapping[str, Decimal] = field(default_factory=dict)  # 分类考评: per class of units
    provider: str = ""  # 数据提供单位, e.g. 市统计局
    frequency: str = ""  # 报送频次: M (monthly), Q, H, Y
    interim: str = ""  # INTERIM_RULES; "" = the default for its method and roll-up (aggregator/interim.py)
    period_targets: Mapping[str, Decimal] = field(default_factory=dict)  # 分期目标: Q1 → target for Q1

    def target_for(self, unit: str, unit_class: str = "") -> Decimal | None:
        """差异化目标: a unit's own target, else its class's, else the indicator's."""
        if unit in self.unit_targets:
            return self.unit_targets[unit]
        return self.class_targets.get(unit_class, self.target)


@dataclass(frozen=True)
class Adjustment:
    """A bonus (加分), deduction (减分) or veto (一票否决) item outside the 100 points.

    ``max_points`` caps one unit's points from this item; a veto caps the grade at ``grade_cap``.
    """

    code: str
    name: str
    kind: str
    max_points: Decimal | None = None
    grade_cap: str = ""


@dataclass(frozen=True)
class FrameworkRef:
    issuer: str
    cycle: str
    unit_class: str
    version: int
    digest: str


@dataclass(frozen=True)
class Framework:
    issuer: str
    issuer_name: str
    cycle: str
    unit_class: str
    version: int
    title: str
    issued_at: int
    expires_at: int
    units: tuple[Unit, ...]
    indicators: tuple[Indicator, ...]
    parent: FrameworkRef | None = None
    adjustments: tuple[Adjustment, ...] = ()
    bonus_cap: Decimal | None = None
    deduction_cap: Decimal | None = None
    grades: tuple[GradeRule, ...] = DEFAULT_GRADES
    missing_policy: str = "zero"
    graded_periods: tuple[str, ...] = DEFAULT_GRADED  # which periods get a grade (等次): Y, H1, Q …

    def leaves(self) -> list[Indicator]:
        return [i for i in self.indicators if i.leaf]

    def indicator(self, code: str) -> Indicator | None:
        return next((i for i in self.indicators if i.code == code), None)

    def unit_class_of(self, code: str) -> str:
        return next((u.unit_class for u in self.units if u.code == code), "")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a framework, named by indicator code (or '' for the whole); ``where``
    names the field inside it (e.g. ("period_targets", "Q5")), so a file can point at its line or cell."""

    indicator: str
    message: str
    where: tuple[str | int, ...] = ()

    def __str__(self) -> str:
        return f"[{self.indicator}] {self.message}" if self.indicator else self.message


def reportable_keys(fw: Framework) -> set[str]:
    """What a unit may report against ``fw``: its leaves, plus the numerator and denominator of
    ratio-of-sums leaves and the weights named by weighted means (own rules and links alike)."""
    keys = {i.code for i in fw.leaves()}
    for i in fw.leaves():
        for rule in (i.rollup, *(link.rule for link in i.links)):
            name, _, by = rule.partition(":")
            if name == "ratio_of_sums":
                keys |= {i.code + ".num", i.code + ".den"}
            elif name == "weighted_mean" and by:
                keys.add(by)
    return keys


def check_structure(fw: Framework, *, units_known: bool = True) -> list[Problem]:
    """Codes unique, tree without cycles, weights adding up, leaves measurable.

    ``units_known=False`` checks a file whose units the issuing node fills in at publish time.
    """
    problems: list[Problem] = []
    if not valid_cycle(fw.cycle):
        problems.append(Problem("", f"考评年度 {fw.cycle!r} 应为四位数字，如 2026 (cycle must be a year)"))
    by_code: dict[str, Indicator] = {}
    for ind in fw.indicators:
        if not valid_indicator_code(ind.code):
            problems.append(Problem(ind.code, "指标编码只能含字母、数字、点、横线、下划线，至多32位 (invalid indicator code)"))
        if ind.code in by_code:
            problems.append(Problem(ind.code, "指标编码重复 (duplicate indicator code)"))
        by_code[ind.code] = ind
    unit_codes = [u.code for u in fw.units]
    if len(set(unit_codes)) != len(unit_codes):
        problems.append(Problem("", "被考评单位重复 (duplicate unit codes)"))
    if units_known and not fw.units:
        problems.append(Problem("", "没有被考评单位 (the framework names no units)"))
    for ind in fw.indicators:
        if ind.parent_code and ind.parent_code not in by_code:
            problems.append(Problem(ind.code, f"上级指标 {ind.parent_code} 不存在 (parent indicator does not exist)"))
        seen = {ind.code}
        cur = ind
        while cur.parent_code and cur.parent_code in by_code:
            if cur.parent_code in seen:
                problems.append(Problem(ind.code, "指标层级存在循环 (cycle in the indicator tree)"))
                break
            seen.add(cur.parent_code)
            cur = by_code[cur.parent_code]
        if ind.weight < 0:
            problems.append(Problem(ind.code, "权重不能为负 (weight must not be negative)"))
        if ind.leaf:
            problems.extend(_check_leaf(ind, list(fw.units) if units_known else None))
    children: dict[str, list[Indicator]] = {}
    for ind in fw.indicators:
        children.setdefault(ind.parent_code, []).append(ind)
        if ind.leaf and any(o.parent_code == ind.code for o in fw.indicators):
            problems.append(Problem(ind.code, "末级指标不能有下级指标 (a leaf cannot have children)"))
    top = children.get("", [])
    total = sum((i.weight for i in top), Decimal(0))
    if top and total != ROOT_WEIGHT:
        problems.append(Problem("", f"一级指标权重之和为 {total}，应为 100 (level-1 weights must add up to 100)"))
    for code, kids in children.items():
        if code and code in by_code and not by_code[code].leaf:
            s = sum((k.weight for k in kids), Decimal(0))
            if s != by_code[code].weight:
                problems.append(
                    Problem(code, f"下级指标权重之和为 {s}，应等于本指标权重 {by_code[code].weight} "
                                  "(children's weights must add up to the group's weight)")
                )
    for ind in fw.indicators:
        if not ind.leaf and ind.code not in children:
            problems.append(Problem(ind.code, "分组指标没有下级指标 (a group indicator has no children)"))
    return problems + _check_outcomes(fw, set(by_code))


def _check_outcomes(fw: Framework, indicator_codes: set[str]) -> list[Problem]:
    """Adjustment items, grade rules and the missing-data policy."""
    problems: list[Problem] = []
    if fw.missing_policy not in MISSING_POLICIES:
        problems.append(Problem("", f"缺失数据处理 {fw.missing_policy!r} 未知，可用：{', '.join(MISSING_POLICIES)} "
                                    "(unknown missing-data policy)"))
    seen: set[str] = set()
    for adj in fw.adjustments:
        if adj.code in seen or adj.code in indicator_codes:
            problems.append(Problem(adj.code, "加减分项编码重复 (duplicate item code)"))
        seen.add(adj.code)
        if adj.kind not in ADJUSTMENT_KINDS:
            problems.append(Problem(adj.code, f"加减分项类型 {adj.kind!r} 未知，可用：bonus/deduction/veto (unknown kind)"))
        if adj.kind == "veto" and adj.grade_cap not in GRADE_ORDER:
            problems.append(Problem(adj.code, f"一票否决须指明等次上限，如 一般 (veto needs a grade cap among {GRADE_ORDER})"))
        if adj.max_points is not None and adj.max_points < 0:
            problems.append(Problem(adj.code, "单项分值上限不能为负 (max_points must not be negative)"))
    names = [g.name for g in fw.grades]
    if len(set(names)) != len(names) or not fw.grades:
        problems.append(Problem("", "等次规则为空或重复 (grade rules empty or duplicated)"))
    for g in fw.grades:
        if g.quota is not None and not 0 <= g.quota <= 1:
            problems.append(Problem("", f"等次 {g.name} 的名额比例应在 0 与 1 之间 (quota must be a share)"))
    return problems + _check_graded(fw.graded_periods)


def _check_graded(graded: tuple[str, ...]) -> list[Problem]:
    if not graded:
        return [Problem("", "评定等次的报告期 graded_periods 不能为空，如 [Y] (list at least one graded period, e.g. [Y])",
                        ("graded_periods",))]
    out: list[Problem] = []
    for i, p in enumerate(graded):
        if not valid_graded_period(p):
            out.append(Problem("", f"评定等次的报告期 {p[:16]!r} 无效，应为 Y、H、Q、M（该类每期）或具体报告期如 H1、Q3、M07 "
                                   "(a graded period is Y, a kind H/Q/M, or one period such as H1, Q3, M07)",
                               ("graded_periods", i)))
        elif p in graded[:i]:
            out.append(Problem("", f"评定等次的报告期 {p} 重复 (graded period listed twice)", ("graded_periods", i)))
    return out


def _check_leaf(ind: Indicator, units: list[Unit] | None) -> list[Problem]:
    out: list[Problem] = []
    if ind.direction not in DIRECTIONS:  # anything else must not silently score as lower-is-better
        out.append(Problem(ind.code, f"方向 {ind.direction!r} 无效，应为 higher 或 lower (direction)"))
    if ind.method not in METHODS:
        out.append(Problem(ind.code, f"评分方法 {ind.method!r} 未知，可用：{', '.join(METHODS)} (unknown method)"))
    if not valid_rule(ind.rollup):
        out.append(Problem(ind.code, f"汇总规则 {ind.rollup!r} 未知，可用：{', '.join(ROLLUP_RULES)}；"
                                     "加权平均写作 weighted_mean:权重指标 (unknown roll-up)"))
    for link in ind.links:
        if not valid_rule(link.rule):
            out.append(Problem(ind.code, f"衔接规则 {link.rule!r} 未知 (unknown link rule)"))
        if link.share <= 0:
            out.append(Problem(ind.code, f"衔接份额应为正数，实为 {link.share} (link share must be positive)"))
    if sum((link.share for link in ind.links), Decimal(0)) > 1:  # or one value would count more than once above
        out.append(Problem(ind.code, f"衔接份额合计 {sum((link.share for link in ind.links), Decimal(0))} 超过 1 "
                                     "(link shares of one indicator must total at most 1)"))
    if len({link.parent_indicator for link in ind.links}) != len(ind.links):
        out.append(Problem(ind.code, "同一上级指标衔接了多次 (the same parent indicator is linked twice)"))
    if units is None:
        if ind.method in NEEDS_TARGET and ind.target is None and not ind.unit_targets and not ind.class_targets:
            out.append(Problem(ind.code, "没有目标值 (target missing)"))
        cap = [Problem(ind.code, "封顶系数应不小于 1 (cap must be at least 1)")] if ind.cap < 1 else []
        return out + cap + _check_targets(ind) + _check_interim(ind)
    for u in units if ind.method in NEEDS_TARGET else []:
        if ind.target_for(u.code, u.unit_class) is None:
            out.append(Problem(ind.code, f"单位 {u.code} 没有目标值 (target missing for unit)"))
    unit_codes = {u.code for u in units}
    for unit in ind.unit_targets:
        if unit not in unit_codes:
            out.append(Problem(ind.code, f"目标值所指单位 {unit} 不在被考评单位中 (target for an unknown unit)"))
    if ind.cap < 1:
        out.append(Problem(ind.code, "封顶系数应不小于 1 (cap must be at least 1)"))
    if ind.frequency not in FREQUENCIES:
        out.append(Problem(ind.code, f"报送频次 {ind.frequency!r} 未知，可用：M/Q/H/Y (unknown reporting frequency)"))
    for name in REQUIRED_PARAMS.get(ind.method, ()):
        if name not in ind.params:
            out.append(Problem(ind.code, f"评分方法 {ind.method} 缺少参数 {name} (missing parameter)"))
    return out + _check_targets(ind) + _check_interim(ind)


def _check_interim(ind: Indicator) -> list[Problem]:
    """The interim rule and the per-period targets (分期目标) must mean something for this leaf."""
    out: list[Problem] = []
    if ind.interim and ind.interim not in INTERIM_RULES:
        out.append(Problem(ind.code, f"中期目标方式 {ind.interim[:32]!r} 未知，可用：proportional（按时间进度）、"
                                     "same（同全年目标）、none（中期不考核） (unknown interim rule)", ("interim",)))
    elif ind.interim == "proportional" and ind.method not in TARGETED_METHODS and ind.method not in SCALED_PARAMS:
        out.append(Problem(ind.code, f"评分方法 {ind.method} 不按目标值评分，没有可按时间进度折算的目标；"
                                     "中期目标方式请写 same 或 none "
                                     f"(method {ind.method} has no target to pro-rate: interim must be same or none)",
                           ("interim",)))
    if not ind.period_targets:
        return out
    if ind.method not in TARGETED_METHODS:
        return [*out, Problem(ind.code, f"评分方法 {ind.method} 不按目标值评分，分期目标不起作用；请删去 period_targets "
                                        f"(method {ind.method} scores no target: remove period_targets)",
                              ("period_targets",))]
    if not ind.target:
        out.append(Problem(ind.code, "分期目标须以非零的全年目标值 target 为基准（各单位的分期目标按其全年目标同比例折算）；"
                                     "请填写 target (period targets need a non-zero annual target)", ("period_targets",)))
    for key in ind.period_targets:
        if not valid_interim_period(key):
            out.append(Problem(ind.code, f"分期目标的报告期 {key[:16]!r} 无效，应为 H1、H2、Q1–Q4 或 M01–M12；"
                                         "全年目标请写 target "
                                         "(a period target is for H1, H2, Q1–Q4 or M01–M12; the year's is target)",
                               ("period_targets", key)))
    return out


def _check_targets(ind: Indicator) -> list[Problem]:
    """Completion ratio needs a positive target (higher is better) or a non-negative one (lower)."""
    if ind.method != "completion_ratio":
        return []
    targets = ([ind.target] if ind.target is not None else []) + [*ind.unit_targets.values(),
                                                                   *ind.class_targets.values(),
                                                                   *ind.period_targets.values()]
    if ind.direction == "higher" and any(t <= 0 for t in targets):
        return [Problem(ind.code, "完成率法的目标值应为正数 (completion-ratio targets must be positive)")]
    if ind.direction == "lower" and any(t < 0 for t in targets):
        return [Problem(ind.code, "目标值不能为负 (targets must not be negative)")]
    return []


def check_links(parent: Framework, parent_digest: str, child: Framework, child_targets_unit: str, *,
                cascading: bool = True) -> list[Problem]:
    """The linkage checks (docs/design.md §3.1) for a child framework derived from ``parent``.

    ``child_targets_unit`` is the unit (in the parent framework) whose target the child's
    decomposed targets must cover: the child framework's issuer. ``cascading=False``: a framework
    for the node's own departments, which need not decompose every must-cascade indicator (the
    governments below do); what it does link is checked all the same.
    """
    problems: list[Problem] = []
    if child.parent is None or child.parent.digest != parent_digest:
        problems.append(Problem("", "子指标体系未钉住所依据的上级指标体系 (child framework does not pin its parent)"))
    elif (child.parent.issuer, child.parent.cycle, child.parent.unit_class, child.parent.version) != (
        parent.issuer, parent.cycle, parent.unit_class, parent.version,
    ):
        problems.append(Problem("", "钉住的上级指标体系信息与摘要不符 (parent pin does not match the parent framework)"))
    if child.cycle != parent.cycle:
        problems.append(Problem("", f"考评年度 {child.cycle} 与上级指标体系的 {parent.cycle} 不同 "
                                    "(framework for another cycle than its parent)"))
    linked: dict[str, list[tuple[Indicator, Link]]] = {}
    for ind in child.leaves():
        for link in ind.links:
            if link.parent_framework_digest != parent_digest:
                problems.append(Problem(ind.code, "衔接引用的上级指标体系不是现行版本 (link cites another framework)"))
                continue
            p = parent.indicator(link.parent_indicator)
            if p is None or not p.leaf:
                problems.append(Problem(ind.code, f"衔接的上级指标 {link.parent_indicator} 在上级指标体系中不存在 "
                                                  "(linked parent indicator does not exist)"))
                continue
            linked.setdefault(p.code, []).append((ind, link))
            if p.measure_unit != ind.measure_unit:
                problems.append(
                    Problem(ind.code, f"计量单位 {ind.measure_unit!r} 与上级指标 {p.code} 的 {p.measure_unit!r} 不一致 "
                                      "(unit of measure differs from the parent's)"))
            if p.direction != ind.direction:
                problems.append(Problem(ind.code, f"方向与上级指标 {p.code} 不一致 (direction differs from the parent's)"))
    for code, contributions in linked.items():
        p = parent.indicator(code)
        assert p is not None
        problems.extend(_check_contributions(p, contributions, child, child_targets_unit,
                                             parent.unit_class_of(child_targets_unit)))
    for p in parent.leaves():
        if cascading and p.must_cascade and p.code not in linked:
            problems.append(Problem(p.code, "上级必须分解的指标没有下级指标衔接 (must-cascade indicator is not linked)"))
    return problems


SINGLE_LINK_RULES = ("weighted_mean", "ratio_of_sums", "all", "latest")


def _check_contributions(p: Indicator, contributions: list[tuple[Indicator, Link]], child: Framework, unit: str,
                         parent_class: str) -> list[Problem]:
    """The leaves feeding one parent indicator: one rule, and targets that cover the parent's."""
    first = contributions[0][0].code
    rules = {link.rule for _, link in contributions}
    if len(rules) > 1:
        return [Problem(first, f"衔接上级指标 {p.code} 的规则不一致：{', '.join(sorted(rules))} (links disagree on the rule)")]
    rule = rules.pop()
    simple = len(contributions) == 1 and contributions[0][1].share == 1
    if rule_name(rule) in SINGLE_LINK_RULES and not simple:
        return [Problem(first, f"规则 {rule} 只能由一个末级指标按全额衔接 {p.code} (this rule takes one leaf at share 1)")]
    if p.method not in TARGETED_METHODS:
        return []
    parent_target = p.target_for(unit, parent_class)
    if parent_target is None:
        return [Problem(first, f"上级指标 {p.code} 没有给 {unit} 下达目标值 (parent target missing)")]
    per_unit: list[Decimal] = []
    for u in child.units:
        parts = [(ind.target_for(u.code, u.unit_class), link.share) for ind, link in contributions]
        if any(t is None for t, _ in parts):
            return [Problem(first, "分解目标缺失，无法核对衔接 (decomposed targets missing)")]
        with localcontext(WORK):
            per_unit.append(sum((t * share for t, share in parts if t is not None), Decimal(0)))
    name = rule_name(rule)
    if name not in COVERAGE_RULES or not per_unit:
        return []  # weights, denominators and dates are only known from reported data
    if name == "all":  # every unit must itself meet the parent's target
        name = "min" if p.direction == "higher" else "max"
    composed = compose(name, per_unit)
    if (composed >= parent_target) if p.direction == "higher" else (composed <= parent_target):
        return []
    feeding = "+".join(f"{ind.code}×{link.share}" if link.share != 1 else ind.code for ind, link in contributions)
    return [Problem(first, f"分解目标（{feeding}）按 {rule} 合成为 {composed}，未覆盖上级指标 {p.code} 的目标 "
                           f"{parent_target} (decomposed targets do not cover the parent's target)")]


def compose(rule: str, values: Iterable[Decimal]) -> Decimal:
    vals = list(values)
    if not vals:
        raise ValueError("compose() of no values")
    with localcontext(WORK):
        return _compose(rule, vals)


def _compose(rule: str, vals: list[Decimal]) -> Decimal:
    if rule == "sum":
        return sum(vals, Decimal(0))
    if rule == "mean":
        return sum(vals, Decimal(0)) / len(vals)
    if rule == "min":
        return min(vals)
    if rule == "max":
        return max(vals)
    raise ValueError(f"unknown roll-up rule {rule!r}")


def derive_child_framework(
    parent: Framework,
    parent_digest: str,
    issuer_name: str,
    issuer: str,
    units: Iterable[Unit],
    *,
    unit_class: str,
    issued_at: int,
    expires_at: int,
    version: int = 1,
) -> Framework:
    """Decompose ``parent`` for ``issuer``'s own units (层层分解), linking every leaf to its parent leaf.

    Each leaf keeps its code, unit of measure and direction and links to the parent leaf with
    the parent's roll-up rule. For ``sum`` the issuer's own target is split evenly and rounded
    (up, or down when lower is better) at the target's precision, so the decomposed targets always cover it; for the other rules
    every unit receives the issuer's target.
    """
    unit_list = tuple(units)
    indicators: list[Indicator] = []
    for ind in parent.indicators:
        if not ind.leaf:
            indicators.append(replace(ind, unit_targets={}, class_targets={}, links=()))
            continue
        own = ind.target_for(issuer, parent.unit_class_of(issuer))
        target = own
        if own is not None and rule_name(ind.rollup) == "sum" and unit_list:
            target = _split(ind, own, len(unit_list), _places(own))
        periods = {} if own is None else _period_targets(ind, own, len(unit_list))
        # Assessed indicators (ratings, surveys, task lists, negative lists) are judged at each level;
        # there is no value to roll up, so they stay local rather than linked.
        links = () if ind.method in ASSESSED_METHODS else (Link(parent_digest, ind.code, ind.rollup),)
        indicators.append(replace(ind, target=target, unit_targets={}, class_targets={}, links=links,
                                  period_targets=periods))
    return Framework(
        issuer=issuer,
        issuer_name=issuer_name,
        cycle=parent.cycle,
        unit_class=unit_class,
        version=version,
        title=f"{issuer_name}{parent.cycle}年度绩效考评指标体系（分解自{parent.issuer_name}）",
        issued_at=issued_at,
        expires_at=min(expires_at, parent.expires_at),
        units=unit_list,
        indicators=tuple(indicators),
        parent=FrameworkRef(parent.issuer, parent.cycle, parent.unit_class, parent.version, parent_digest),
        # The level below is scored by the same rules unless its office writes its own framework.
        adjustments=parent.adjustments, bonus_cap=parent.bonus_cap, deduction_cap=parent.deduction_cap,
        grades=parent.grades, missing_policy=parent.missing_policy, graded_periods=parent.graded_periods,
    )


def _places(d: Decimal) -> int:
    exp = d.as_tuple().exponent
    return -exp if isinstance(exp, int) and exp < 0 else 0


def _split(ind: Indicator, own: Decimal, n: int, places: int) -> Decimal:
    """``own`` over ``n`` units at ``places`` decimals, rounded toward covering it: up when more is
    better, down when less is."""
    rounding = ROUND_CEILING if ind.direction == "higher" else ROUND_FLOOR
    return (own / n).quantize(Decimal(1).scaleb(-places), rounding=rounding)


def _period_targets(ind: Indicator, own: Decimal, n: int) -> dict[str, Decimal]:
    """分期目标 go down as the issuer's own (the period target scaled by the issuer's annual target over
    the default one), then split like the annual target, at the precision of the two (at most 10
    decimals), so every level keeps the parent's schedule."""
    if not ind.target or not ind.period_targets:
        return {}
    out = {}
    with localcontext(WORK):
        for period, t in ind.period_targets.items():
            places = min(MAX_PLACES, max(_places(t), _places(own)))
            mine = own * t / ind.target
            out[period] = _split(ind, mine, n if rule_name(ind.rollup) == "sum" and n else 1, places)
    return out
