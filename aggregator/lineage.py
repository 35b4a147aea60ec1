"""区划调整: division units over time, the changes that reshape them, and carrying values across them.

A division code is not an identity. 名山县 511821 became 名山区 511803 (2012): the same unit, a new code
and name. 杭州 上城区 330102 and 江干区 330104 were abolished in 2021 and a new 上城区 was set up under the
old code 330102, with new borders. So every unit has a **uid** that never changes: its first code and the
date it came into force (``511821@2010-01-01``). A code names a uid only on a given date.

A :class:`Lineage` is a base tree (codes and names in force on a base date) plus an ordered list of
:class:`DivisionChange` events, each with its effective date and its issuer (the node code of the level
that issues it):

* :class:`Rename`: same unit, same code, new name;
* :class:`Recode`: same unit, new code under the same parent, maybe a new name (撤县设区);
* :class:`Move`: same unit under another parent, with the code it gets there (简阳市 512081 → 510185);
* :class:`Merge`: several units into one, either a surviving unit (which keeps its uid) or a new unit
  (a new uid, even when it reuses a code of one of the merged units);
* :class:`Split`: one unit into several, with a share of each indicator per part (a default share, as
  by the named ``rule``, e.g. population, and per-indicator overrides); a part that carries the
  unit's own code continues the unit.

The tree follows the federation's code rule (docs/parts/divisions.md): a unit's parent is the unit whose
code is its own code cut to the level above. A unit that changes code takes its whole subtree along
(the townships of 名山县 511821xxx become 511803xxx: same uids). The children of a unit that ends (merged
or split away) must be placed by the event itself (``children``: code → new code under the result), so no
unit is ever left without a parent.

Rules checked while the events are replayed (each a :class:`DivisionChangeError` with a stable code):
an event naming a unit not in force (``division.unknown_unit``), split shares not summing to 1
(``division.shares_not_one``), a new code still held by a unit in force (``division.code_in_use``), a move
under the unit's own subtree (``division.cycle``), an issuer that is not the parent of every unit touched
(``division.not_issuer``: a city changes its own counties, a county its townships, the province its cities;
a move between two parents is issued by the parent of both), events out of date order
(``division.out_of_order``), and malformed codes, names, parents or children.

:meth:`Lineage.carry` maps one date's per-unit values onto a later tree (纵向比较): a merge sums
``additive`` indicators and takes the weighted mean of ``intensive`` ones (weighted by an additive
indicator the caller names), a split apportions additive values by the shares and gives each part the
intensive value of the whole, and a rename, recode or move changes nothing (same uid).

Cycle rule (:meth:`Lineage.tree_for_cycle`): a cycle is appraised and rolled up over the tree in force
on its **last day**. 政府绩效考评 is annual and its results are used for the government that exists when
the year is judged; a merger effective mid-year makes the year's appraisal that of the merged unit, with
the predecessors' values of the year carried onto it. Growth compares with the previous cycle's values
carried from that cycle's tree onto this one (:meth:`Lineage.carry_cycle`). History keeps every old
code under its name of the time (:meth:`Lineage.history`).

Pure: no I/O, no imports from sync/, nodes/ or gateway/.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, localcontext
from typing import ClassVar, Literal

from aggregator.errors import BadInput
from aggregator.framework import CODE_LENGTHS, LEVELS, level_of, parent_code

ONE = Decimal(1)
ADDITIVE, INTENSIVE = "additive", "intensive"
Kind = Literal["additive", "intensive"]
MAX_NAME = 100
_DIGITS = re.compile(r"^[0-9]+$")


class DivisionChangeError(BadInput):
    """A base tree, change or carry request that cannot be used; the message names the event and field."""

    default_code = "division.invalid"


def uid_of(code: str, since: date) -> str:
    """The stable identity of a unit: its first code and the date it came into force."""
    return f"{code}@{since.isoformat()}"


# ------------------------------------------------------------------ events

@dataclass(frozen=True, kw_only=True)
class Relocation:
    """A child of a unit that ends, placed under the result with ``new_code`` (and ``name``, if it
    changes); its own descendants follow by prefix."""

    code: str
    new_code: str
    name: str = ""


@dataclass(frozen=True, kw_only=True)
class Part:
    """One part of a split: its code and name, its default share (as by the split's ``rule``) and
    per-indicator overrides."""

    code: str
    name: str
    share: Decimal
    shares: Mapping[str, Decimal] = field(default_factory=dict)

    def share_for(self, indicator: str) -> Decimal:
        return self.shares.get(indicator, self.share)


@dataclass(frozen=True, kw_only=True)
class DivisionChange:
    """One change, in force from ``effective`` (inclusive), issued by the node ``issuer``; ``ref`` is
    the approval it carries out (批复文号), for people."""

    effective: date
    issuer: str
    ref: str = ""
    kind: ClassVar[str] = ""

    def describe(self) -> str:
        return f"{self.kind} {self.effective.isoformat()}"


@dataclass(frozen=True, kw_only=True)
class Rename(DivisionChange):
    kind: ClassVar[str] = "rename"
    unit: str
    name: str


@dataclass(frozen=True, kw_only=True)
class Recode(DivisionChange):
    """A new code for the same unit under the same parent (撤县设区: 名山县 511821 → 名山区 511803)."""

    kind: ClassVar[str] = "recode"
    unit: str
    code: str
    name: str = ""


@dataclass(frozen=True, kw_only=True)
class Move(DivisionChange):
    """The same unit under another parent, with the code it has there (简阳市 512081 → 510185)."""

    kind: ClassVar[str] = "move"
    unit: str
    parent: str
    code: str
    name: str = ""


@dataclass(frozen=True, kw_only=True)
class Merge(DivisionChange):
    """``units`` into one: with ``survivor``, ``code`` is a unit in force that absorbs them and keeps its
    uid; otherwise a new unit ``code`` (which may reuse the code of one of the merged units)."""

    kind: ClassVar[str] = "merge"
    units: tuple[str, ...]
    code: str
    name: str
    survivor: bool = False
    children: tuple[Relocation, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Split(DivisionChange):
    """``unit`` into ``parts``; a part with the unit's own code continues the unit."""

    kind: ClassVar[str] = "split"
    unit: str
    parts: tuple[Part, ...]
    rule: str = ""  # what the default shares measure, e.g. "population" (常住人口)
    children: tuple[Relocation, ...] = ()


# ------------------------------------------------------------------ trees and links

@dataclass(frozen=True)
class Division:
    """A unit as in force on some date."""

    uid: str
    code: str
    name: str

    @property
    def level(self) -> str:
        return level_of(self.code)

    @property
    def parent(self) -> str:
        return parent_code(self.code)


@dataclass(frozen=True)
class Tree:
    """The units in force on ``on``, by code: a forest (a unit whose parent is not listed is a root)."""

    on: date
    units: Mapping[str, Division]

    def get(self, code: str) -> Division:
        unit = self.units.get(code)
        if unit is None:
            raise DivisionChangeError(f"区划代码 {code[:16]} 在 {self.on.isoformat()} 不在册 (no unit holds this code on "
                                      "that date)", code="division.unknown_unit")
        return unit

    def parent(self, code: str) -> Division | None:
        return self.units.get(parent_code(code))

    def children(self, code: str) -> list[Division]:
        return sorted((u for u in self.units.values() if u.parent == code), key=lambda u: u.code)

    def roots(self) -> list[Division]:
        return sorted((u for u in self.units.values() if u.parent not in self.units), key=lambda u: u.code)

    def by_uid(self) -> dict[str, Division]:
        return {u.uid: u for u in self.units.values()}


@dataclass(frozen=True)
class Link:
    """``source`` passed (a share of) itself to ``target`` on ``effective``: a merge (share 1) or a split."""

    source: str
    target: str
    effective: date
    kind: str
    share: Decimal = ONE
    shares: Mapping[str, Decimal] = field(default_factory=dict)

    def share_for(self, indicator: str) -> Decimal:
        return self.shares.get(indicator, self.share)


@dataclass(frozen=True)
class _Step:
    """What a merge or split does to values (recodes, renames and moves do nothing to them)."""

    effective: date
    kind: str  # merge | split
    sources: tuple[str, ...]  # merge: every participant (survivor included); split: the one unit
    targets: tuple[tuple[str, Part | None], ...]  # merge: the one result; split: each part's uid and Part


@dataclass(frozen=True)
class Entry:
    """One period of a unit's history: from ``since`` it had ``code`` and ``name``."""

    since: date
    code: str
    name: str


@dataclass(frozen=True)
class Story:
    """One unit's 沿革 (``Lineage.story``): its codes and names with their dates, when it ended, and the
    links to the units it came from and became, each with that unit's code and name of the time."""

    uid: str
    entries: tuple[Entry, ...]
    ended: date | None
    came_from: tuple[tuple[Link, Entry], ...]
    became: tuple[tuple[Link, Entry], ...]

    def former(self, code: str) -> list[Entry]:
        """The unit's entries under codes other than ``code`` (新津县 510132 for 新津区 510118)."""
        return [e for e in self.entries if e.code != code]


# ------------------------------------------------------------------ the lineage

class Lineage:
    """A base tree and the changes after it, replayed and checked once (the module docstring says how)."""

    def __init__(self, base: Iterable[tuple[str, str]], since: date, changes: Sequence[DivisionChange] = ()) -> None:
        self.since = since
        self.changes = tuple(changes)
        self._history: dict[str, list[tuple[date, tuple[str, str] | None]]] = {}
        self._links: list[Link] = []
        self._steps: list[_Step] = []
        self._current: dict[str, tuple[str, str]] = {}  # uid → (code, name), during replay
        self._by_code: dict[str, str] = {}  # code → uid, during replay
        self._kids: dict[str, set[str]] = {}  # parent code → codes in force under it, during replay
        for code, name in base:
            where = f"基础区划 (base tree) {code[:16]}"
            self._check_code(code, where)
            self._check_name(name, where)
            if code in self._by_code:
                raise DivisionChangeError(f"{where}：代码重复 (code listed twice)", code="division.duplicate_code")
            self._create(code, name, since)
        self._at = since
        for i, change in enumerate(self.changes):
            self._apply(i + 1, change)

    # -------------------------------------------------------------- queries

    def tree_at(self, on: date) -> Tree:
        """The tree in force on ``on`` (every change effective on or before it applied)."""
        self._not_before_base(on)
        units: dict[str, Division] = {}
        for uid, hist in self._history.items():
            state = _state_on(hist, on)
            if state is not None:
                units[state[0]] = Division(uid, state[0], state[1])
        return Tree(on, units)

    def tree_for_cycle(self, cycle_start: date, cycle_end: date) -> Tree:
        """The tree a cycle is appraised and rolled up over: the one in force on its last day."""
        if cycle_end < cycle_start:
            raise DivisionChangeError(f"考评周期结束日 {cycle_end} 早于开始日 {cycle_start} (cycle ends before it starts)",
                                      code="division.cycle_reversed")
        self._not_before_base(cycle_start)
        return self.tree_at(cycle_end)

    def changes_during(self, start: date, end: date) -> list[DivisionChange]:
        """The changes effective within [start, end]: what a cycle's appraisal notes beside its units."""
        return [c for c in self.changes if start <= c.effective <= end]

    def history(self, uid: str) -> list[Entry]:
        """Every code and name ``uid`` had, oldest first (an ended unit's last entry is its last state)."""
        return [Entry(d, s[0], s[1]) for d, s in self._hist(uid) if s is not None]

    def ended(self, uid: str) -> date | None:
        hist = self._hist(uid)
        return hist[-1][0] if hist[-1][1] is None else None

    def name_at(self, uid: str, on: date) -> str:
        return self._state(uid, on)[1]

    def code_at(self, uid: str, on: date) -> str:
        return self._state(uid, on)[0]

    def uid_at(self, code: str, on: date) -> str:
        self._not_before_base(on)
        for uid, hist in self._history.items():
            state = _state_on(hist, on)
            if state is not None and state[0] == code:
                return uid
        raise DivisionChangeError(f"区划代码 {code[:16]} 在 {on.isoformat()} 不在册 (no unit holds this code on that date)",
                                  code="division.unknown_unit")

    def predecessors(self, uid: str) -> list[Link]:
        self._hist(uid)
        return [link for link in self._links if link.target == uid]

    def successors(self, uid: str) -> list[Link]:
        self._hist(uid)
        return [link for link in self._links if link.source == uid]

    def story(self, code: str, on: date) -> Story:
        """沿革 of the unit holding ``code`` on ``on``: every code and name it had, when it ended, the
        units it came from (merged into it or split from) and what it became, each under its code and
        name of the time: what a unit's page shows beside its results of earlier years."""
        uid = self.uid_at(code, on)
        came = [(link, self._entry_before(link.source, link.effective)) for link in self.predecessors(uid)]
        went = [(link, self._entry_on(link.target, link.effective)) for link in self.successors(uid)]
        return Story(uid, tuple(self.history(uid)), self.ended(uid),
                     tuple((lk, e) for lk, e in came if lk.source != uid),
                     tuple((lk, e) for lk, e in went if lk.target != uid))

    def _entry_before(self, uid: str, day: date) -> Entry:
        entries = [e for e in self.history(uid) if e.since < day]
        return entries[-1] if entries else self.history(uid)[0]

    def _entry_on(self, uid: str, day: date) -> Entry:
        entries = [e for e in self.history(uid) if e.since <= day]
        return entries[-1] if entries else self.history(uid)[0]

    # -------------------------------------------------------------- carrying values

    def carry(self, values: Mapping[str, Mapping[str, Decimal]], at: date, to: date, kinds: Mapping[str, str],
              weights: Mapping[str, str] | None = None, *,
              unweighted: str = "raise") -> dict[str, dict[str, Decimal]]:
        """Map per-unit values keyed by the codes in force on ``at`` onto the tree in force on ``to``.

        ``kinds`` says for every indicator whether it is ``additive`` (summed on a merge, apportioned on
        a split) or ``intensive`` (a rate: weighted mean on a merge, unchanged on a split); ``weights``
        names, for an intensive indicator, the additive indicator that weighs it (常住人口 for a per-capita
        figure). A carried unit lacks an indicator when any of the units it comes from lacked it: a
        partial sum would pass for a fall. ``unweighted``: what a merge does with an intensive
        indicator that has no weight: ``raise`` (``division.missing_weight``) or ``drop`` (the merged
        unit lacks it, and whoever needs it enters it: nothing is guessed)."""
        weights = dict(weights or {})
        if unweighted not in ("raise", "drop"):
            raise ValueError(f"unweighted must be raise or drop, not {unweighted!r}")
        if to < at:
            raise DivisionChangeError(f"只能向后映射：{at} → {to} (values are carried forward in time only)",
                                      code="division.carry_backwards")
        for ind, kind in kinds.items():
            if kind not in (ADDITIVE, INTENSIVE):
                raise DivisionChangeError(f"指标 {ind[:40]} 的类型 {kind[:20]!r} 应为 additive 或 intensive (unknown kind)",
                                          code="division.bad_kind")
        for ind, w in weights.items():
            if kinds.get(ind) != INTENSIVE or kinds.get(w) != ADDITIVE:
                raise DivisionChangeError(f"指标 {ind[:40]} 的权重 {w[:40]} 应为可加指标，且 {ind[:40]} 应为强度指标 "
                                          "(a weight must be additive and weigh an intensive indicator)",
                                          code="division.bad_weight")
        start = self.tree_at(at)
        cur: dict[str, dict[str, Decimal]] = {}
        for code, vals in values.items():
            for ind in vals:
                if ind not in kinds:
                    raise DivisionChangeError(f"指标 {ind[:40]} 未说明是可加 (additive) 还是强度 (intensive) 指标 "
                                              "(say the kind of every indicator)", code="division.kind_missing")
            cur[start.get(code).uid] = dict(vals)
        with localcontext() as ctx:
            ctx.prec = 60  # shares times values stay exact for the bounded inputs of aggregator.numbers
            for step in self._steps:
                if at < step.effective <= to:
                    self._carry_step(step, cur, kinds, weights, unweighted == "drop")
        end = self.tree_at(to)
        return {u.code: cur[u.uid] for u in end.units.values() if u.uid in cur}

    def origins(self, at: date, to: date) -> dict[str, tuple[str, ...]]:
        """For every unit in force on ``to``, the codes in force on ``at`` its values come from (itself
        under its old code after a rename, recode or move; the merged units; the unit a part was split
        from): what a carried value names as its source. Units with no origin on ``at`` are left out."""
        if to < at:
            raise DivisionChangeError(f"只能向后映射：{at} → {to} (values are carried forward in time only)",
                                      code="division.carry_backwards")
        cur: dict[str, set[str]] = {u.uid: {u.code} for u in self.tree_at(at).units.values()}
        for step in self._steps:
            if at < step.effective <= to:
                found = [cur.pop(u) for u in step.sources if u in cur]
                if found:
                    for uid, _part in step.targets:
                        cur[uid] = set().union(*found)
        end = self.tree_at(to)
        return {u.code: tuple(sorted(cur[u.uid])) for u in end.units.values() if u.uid in cur}

    def carry_cycle(self, values: Mapping[str, Mapping[str, Decimal]], previous_end: date, cycle_end: date,
                    kinds: Mapping[str, str], weights: Mapping[str, str] | None = None) -> dict[str, dict[str, Decimal]]:
        """The previous cycle's values (keyed by its tree's codes) on this cycle's tree: growth's ``previous``."""
        return self.carry(values, previous_end, cycle_end, kinds, weights)

    @staticmethod
    def _carry_step(step: _Step, cur: dict[str, dict[str, Decimal]], kinds: Mapping[str, str],
                    weights: Mapping[str, str], drop_unweighted: bool = False) -> None:
        if step.kind == "merge":
            rows = [cur.get(u) for u in step.sources]
            target = step.targets[0][0]
            for u in step.sources:
                cur.pop(u, None)
            present = [r for r in rows if r is not None]
            if len(present) < len(rows):
                return  # a participant without values: the result has none (see carry)
            names = set(present[0]).intersection(*present[1:])
            out: dict[str, Decimal] = {}
            for ind in sorted(names):
                if kinds[ind] == ADDITIVE:
                    out[ind] = sum((r[ind] for r in present), Decimal(0))
                    continue
                w = weights.get(ind, "")
                if not w and drop_unweighted:
                    continue
                if not w:
                    raise DivisionChangeError(f"强度指标 {ind[:40]} 在合并时需要权重指标 (an intensive indicator needs a "
                                              "weight when units merge: name one in weights)", code="division.missing_weight")
                if w not in names:
                    continue
                total = sum((r[w] for r in present), Decimal(0))
                if total != 0:
                    out[ind] = sum((r[ind] * r[w] for r in present), Decimal(0)) / total
            cur[target] = out
            return
        row = cur.pop(step.sources[0], None)
        if row is None:
            return
        for uid, part in step.targets:
            assert part is not None
            cur[uid] = {ind: (v * part.share_for(ind) if kinds[ind] == ADDITIVE else v) for ind, v in row.items()}

    # -------------------------------------------------------------- replay

    def _apply(self, i: int, ch: DivisionChange) -> None:
        where = f"第 {i} 条变更（{ch.describe()}）(change {i})"
        if ch.effective < self._at:
            raise DivisionChangeError(f"{where}：生效日期早于前一条变更 {self._at} (changes must be in date order)",
                                      code="division.out_of_order")
        self._at = ch.effective
        if isinstance(ch, Rename):
            uid = self._in_force(ch.unit, where)
            self._issuer(ch, ch.unit, where)
            self._check_name(ch.name, where)
            self._set(uid, ch.unit, ch.name, ch.effective)
        elif isinstance(ch, Recode):
            uid = self._in_force(ch.unit, where)
            self._issuer(ch, ch.unit, where)
            self._check_code(ch.code, where)
            if level_of(ch.code) != level_of(ch.unit) or parent_code(ch.code) != parent_code(ch.unit):
                raise DivisionChangeError(f"{where}：新代码 {ch.code} 应与 {ch.unit} 同级、同上级（换上级请用 move）"
                                          "(a recode keeps the level and the parent; use a move)", code="division.recode_parent")
            self._free(ch.code, where)
            if ch.name:
                self._check_name(ch.name, where)
            self._recode(uid, ch.code, ch.name, ch.effective, where)
        elif isinstance(ch, Move):
            self._move(ch, where)
        elif isinstance(ch, Merge):
            self._merge(ch, where)
        elif isinstance(ch, Split):
            self._split(ch, where)
        else:
            raise DivisionChangeError(f"{where}：未知的变更类型 (unknown kind of change)", code="division.unknown_change")

    def _move(self, ch: Move, where: str) -> None:
        uid = self._in_force(ch.unit, where)
        self._in_force(ch.parent, where)
        if ch.parent.startswith(ch.unit):
            raise DivisionChangeError(f"{where}：不能把 {ch.unit} 划入其自身或下级 {ch.parent} (a move under its own subtree "
                                      "makes a cycle)", code="division.cycle")
        level = level_of(ch.unit)
        if level == "province" or level_of(ch.parent) != LEVELS[LEVELS.index(level) - 1]:
            raise DivisionChangeError(f"{where}：{ch.parent} 不是 {ch.unit} 的上一级 (the new parent must be one level up)",
                                      code="division.bad_parent")
        old_parent = parent_code(ch.unit)
        if old_parent == ch.parent:
            raise DivisionChangeError(f"{where}：上级未变（只改代码请用 recode）(same parent: use a recode)",
                                      code="division.same_parent")
        # A move touches two parents: only the level above both may issue it.
        for p in (old_parent, ch.parent):
            if parent_code(p) != ch.issuer:
                raise DivisionChangeError(f"{where}：{ch.issuer} 无权调整 {p} 的下级（应由 {parent_code(p) or '国家'} 发布）"
                                          f"(only the parent level {parent_code(p) or '国家'} may change this unit)",
                                          code="division.not_issuer")
        self._check_code(ch.code, where)
        if level_of(ch.code) != level or parent_code(ch.code) != ch.parent:
            raise DivisionChangeError(f"{where}：新代码 {ch.code} 应为 {ch.parent} 的下一级代码 (the new code must extend the "
                                      "new parent's)", code="division.move_code")
        self._free(ch.code, where)
        if ch.name:
            self._check_name(ch.name, where)
        self._recode(uid, ch.code, ch.name, ch.effective, where)

    def _merge(self, ch: Merge, where: str) -> None:
        if len(set(ch.units)) != len(ch.units) or not ch.units:
            raise DivisionChangeError(f"{where}：合并的单位为空或重复 (units empty or listed twice)", code="division.bad_merge")
        uids = [self._in_force(u, where) for u in ch.units]
        level = level_of(ch.units[0])
        for u in ch.units:
            self._issuer(ch, u, where)
            if level_of(u) != level:
                raise DivisionChangeError(f"{where}：{u} 与 {ch.units[0]} 不同级 (merged units must be of one level)",
                                          code="division.merge_levels")
        self._check_name(ch.name, where)
        self._check_code(ch.code, where)
        if level_of(ch.code) != level or parent_code(ch.code) != ch.issuer:
            raise DivisionChangeError(f"{where}：合并后代码 {ch.code} 应为 {ch.issuer} 的下一级、与被合并单位同级 "
                                      "(the result's code must be a child of the issuer at the merged units' level)",
                                      code="division.merge_code")
        if ch.survivor:
            survivor = self._in_force(ch.code, where)
            ending = [u for u, code in zip(uids, ch.units, strict=True) if code != ch.code]
            participants = [*ending, survivor]
        else:
            if ch.code not in ch.units:
                self._free(ch.code, where)
            ending, participants = uids, uids
        if len(participants) < 2 or not ending:
            raise DivisionChangeError(f"{where}：合并至少涉及两个单位且至少撤销一个 (a merge joins two units or more; use a "
                                      "rename or recode for one)", code="division.merge_too_small")
        ending_codes = {self._current[u][0] for u in ending}
        for u in ending:
            self._end(u, ch.effective)
        if ch.survivor:
            target = survivor
            self._set(survivor, ch.code, ch.name, ch.effective)
        else:
            target = self._create(ch.code, ch.name, ch.effective)
        self._relocate(ch.children, ending_codes, {ch.code}, ch.effective, where)
        for u in ending:
            self._links.append(Link(u, target, ch.effective, "merge"))
        self._steps.append(_Step(ch.effective, "merge", tuple(participants), ((target, None),)))

    def _split(self, ch: Split, where: str) -> None:
        uid = self._in_force(ch.unit, where)
        self._issuer(ch, ch.unit, where)
        codes = [p.code for p in ch.parts]
        if len(ch.parts) < 2 or len(set(codes)) != len(codes):
            raise DivisionChangeError(f"{where}：拆分至少分为两部分且代码不重复 (a split has two parts or more, each its own "
                                      "code)", code="division.bad_split")
        _check_shares(ch.parts, where)
        survives = ch.unit in codes
        for p in ch.parts:
            self._check_name(p.name, where)
            self._check_code(p.code, where)
            if level_of(p.code) != level_of(ch.unit) or parent_code(p.code) != ch.issuer:
                raise DivisionChangeError(f"{where}：拆分后代码 {p.code} 应为 {ch.issuer} 的下一级 (a part's code must be a "
                                          "child of the issuer at the unit's level)", code="division.part_code")
            if p.code != ch.unit:
                self._free(p.code, where)
        if not survives:
            self._end(uid, ch.effective)
        targets: list[tuple[str, Part | None]] = []
        for p in ch.parts:
            if p.code == ch.unit:
                self._set(uid, p.code, p.name, ch.effective)
                targets.append((uid, p))
            else:
                new = self._create(p.code, p.name, ch.effective)
                targets.append((new, p))
                self._links.append(Link(uid, new, ch.effective, "split", p.share, dict(p.shares)))
        self._relocate(ch.children, set() if survives else {ch.unit}, set(codes), ch.effective, where,
                       optional_from=ch.unit if survives else "")
        self._steps.append(_Step(ch.effective, "split", (uid,), tuple(targets)))

    def _relocate(self, children: Sequence[Relocation], ending: set[str], results: set[str], on: date, where: str,
                  optional_from: str = "") -> None:
        """Place the children of ending units (all of them) or of a surviving split unit (those named)
        under the results. Children of an ending unit whose code a result reuses stay where they are
        (the new 上城区 330102 keeps the 街道 330102xxx of the old one) unless named."""
        orphans = {c for e in ending - results for c in self._kids.get(e, ())}
        named = set()
        for r in children:
            if r.code in named:
                raise DivisionChangeError(f"{where}：下级 {r.code} 重复安置 (child placed twice)", code="division.child_twice")
            named.add(r.code)
            uid = self._in_force(r.code, where)
            if parent_code(r.code) not in ending and parent_code(r.code) != optional_from:
                raise DivisionChangeError(f"{where}：{r.code} 不是被调整单位的下级 (not a child of a changed unit)",
                                          code="division.not_a_child")
            self._check_code(r.new_code, where)
            if level_of(r.new_code) != level_of(r.code) or parent_code(r.new_code) not in results:
                raise DivisionChangeError(f"{where}：下级新代码 {r.new_code} 应在调整后的单位之下 (the child's new code must "
                                          "extend a result's code)", code="division.child_code")
            if r.name:
                self._check_name(r.name, where)
            if r.new_code != r.code:
                self._free(r.new_code, where)
                self._recode(uid, r.new_code, r.name, on, where)
            elif r.name:
                self._set(uid, r.code, r.name, on)
        left = sorted(orphans - named)
        if left:
            raise DivisionChangeError(f"{where}：被撤销单位的下级 {', '.join(left[:5])} 未安置 (children of an abolished unit "
                                      "must be placed: list them in children)", code="division.orphan")

    def _recode(self, uid: str, code: str, name: str, on: date, where: str) -> None:
        old = self._current[uid][0]
        subtree = sorted(self._descendants(old))
        moving = {old, *subtree}
        for c in subtree:
            new = code + c[len(old):]
            if new in self._by_code and new not in moving:
                raise DivisionChangeError(f"{where}：下级代码 {new} 已被占用 (a descendant's new code is in use)",
                                          code="division.descendant_code_in_use")
        renamed = [(self._by_code[c], code + c[len(old):], self._current[self._by_code[c]][1]) for c in subtree]
        for c in moving:
            del self._by_code[c]
            self._kids.get(parent_code(c), set()).discard(c)
        self._set(uid, code, name or self._current[uid][1], on)
        for u, new, n in renamed:
            self._set(u, new, n, on)

    # -------------------------------------------------------------- helpers

    def _create(self, code: str, name: str, on: date) -> str:
        uid = uid_of(code, on)
        n = 2
        while uid in self._history:  # a code ended and reused on the same day twice
            uid, n = f"{uid_of(code, on)}#{n}", n + 1
        self._history[uid] = []
        self._set(uid, code, name, on)
        return uid

    def _set(self, uid: str, code: str, name: str, on: date) -> None:
        hist = self._history[uid]
        if hist and hist[-1][0] == on:
            hist.pop()  # two changes on one day: the day's last state is the one in force
        hist.append((on, (code, name)))
        old = self._current.get(uid)
        if old is not None and self._by_code.get(old[0]) == uid:
            del self._by_code[old[0]]
            self._kids.get(parent_code(old[0]), set()).discard(old[0])
        self._current[uid] = (code, name)
        self._by_code[code] = uid
        self._kids.setdefault(parent_code(code), set()).add(code)

    def _end(self, uid: str, on: date) -> None:
        code = self._current.pop(uid)[0]
        if self._by_code.get(code) == uid:
            del self._by_code[code]
            self._kids.get(parent_code(code), set()).discard(code)
        self._history[uid].append((on, None))

    def _descendants(self, code: str) -> list[str]:
        out, todo = [], list(self._kids.get(code, ()))
        while todo:
            c = todo.pop()
            out.append(c)
            todo.extend(self._kids.get(c, ()))
        return out

    def _in_force(self, code: str, where: str) -> str:
        uid = self._by_code.get(code)
        if uid is None:
            raise DivisionChangeError(f"{where}：单位 {code[:16]} 在 {self._at} 不在册 (no unit holds this code on that date)",
                                      code="division.unknown_unit")
        return uid

    def _free(self, code: str, where: str) -> None:
        holder = self._by_code.get(code)
        if holder is not None:
            raise DivisionChangeError(f"{where}：代码 {code} 仍由在册单位 {self._current[holder][1]} 使用 (the code is still "
                                      "held by a unit in force)", code="division.code_in_use")

    @staticmethod
    def _issuer(ch: DivisionChange, code: str, where: str) -> None:
        if parent_code(code) != ch.issuer:
            raise DivisionChangeError(f"{where}：{ch.issuer[:16]} 不是 {code[:16]} 的上级，无权调整 (only the parent level "
                                      f"{parent_code(code) or '国家'} may change this unit)", code="division.not_issuer")

    @staticmethod
    def _check_code(code: str, where: str) -> None:
        if not _DIGITS.match(code) or len(code) not in CODE_LENGTHS.values():
            raise DivisionChangeError(f"{where}：代码 {code[:16]!r} 应为 2、4、6 或 9 位数字 (a node code has 2, 4, 6 or 9 "
                                      "digits)", code="division.bad_code")

    @staticmethod
    def _check_name(name: str, where: str) -> None:
        if not name.strip() or len(name) > MAX_NAME:
            raise DivisionChangeError(f"{where}：名称为空或过长 (name empty or longer than {MAX_NAME})",
                                      code="division.bad_name")

    def _not_before_base(self, on: date) -> None:
        if on < self.since:
            raise DivisionChangeError(f"{on} 早于基础区划日期 {self.since} (before the base tree)",
                                      code="division.before_base")

    def _hist(self, uid: str) -> list[tuple[date, tuple[str, str] | None]]:
        hist = self._history.get(uid)
        if hist is None:
            raise DivisionChangeError(f"未知的区划单位 {uid[:40]} (unknown unit id)", code="division.unknown_uid")
        return hist

    def _state(self, uid: str, on: date) -> tuple[str, str]:
        self._not_before_base(on)
        state = _state_on(self._hist(uid), on)
        if state is None:
            raise DivisionChangeError(f"单位 {uid[:40]} 在 {on} 不在册 (not in force on that date)",
                                      code="division.not_in_force")
        return state


def _state_on(hist: Sequence[tuple[date, tuple[str, str] | None]], on: date) -> tuple[str, str] | None:
    state: tuple[str, str] | None = None
    for since, s in hist:
        if since > on:
            break
        state = s
    return state


def _check_shares(parts: Sequence[Part], where: str) -> None:
    indicators = sorted({k for p in parts for k in p.shares})
    for p in parts:
        for s in (p.share, *p.shares.values()):
            if not s.is_finite() or s < 0 or s > 1:
                raise DivisionChangeError(f"{where}：{p.code} 的分配比例 {s} 应在 0 与 1 之间 (shares lie in [0, 1])",
                                          code="division.share_range")
    for ind in ("", *indicators):
        total = sum((p.share_for(ind) if ind else p.share for p in parts), Decimal(0))
        if total != ONE:
            what = f"指标 {ind[:40]} 的" if ind else "默认"
            raise DivisionChangeError(f"{where}：{what}分配比例之和为 {total}，应为 1 (shares must sum to 1 per indicator)",
                                      code="division.shares_not_one")


def cycle_bounds(cycle: str) -> tuple[date, date]:
    """An annual cycle "2020" → (2020-01-01, 2020-12-31)."""
    if not re.fullmatch(r"[0-9]{4}", cycle):
        raise DivisionChangeError(f"考评年度 {cycle[:8]!r} 应为四位年份 (a cycle is a year)", code="division.bad_cycle")
    year = int(cycle)
    return date(year, 1, 1), date(year, 12, 31)
