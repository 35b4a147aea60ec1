"""Results use (结果运用): which units a node's configured rules put on which list, and why. Pure: no I/O.

A rule (node.yaml ``results_use:``, parsed by nodes/config.py) names the list it fills, the list's
title and the body that uses it (organisation department, discipline inspection, finance …) and
``when`` it holds for a unit. Its conditions, all of which must hold:

- ``grade``: the unit's grade is one of these in the cycle, and — with ``cycles: N`` — in each of the
  N cycles running up to it (2025 一般、2026 一般: "一般 two years running"); a cycle with no final
  publication of the unit breaks the run;
- ``rank_bottom: N``: the unit ranks among the last N of its class;
- ``score_below: X``: its score is below X.

Rules are evaluated over FINAL publications only (the latest final version per cycle, period
``<cycle>-Y`` and class), each a :class:`sync.publication.Published`. A unit is on a list iff one of
the list's rules holds for it; its entry names the first such rule in the configured order and says
why ("2025 一般、2026 一般"). Lists come in the order their first rule is configured (every list, even
an empty one: "no unit this year" is information too), entries by class, rank and unit code.

:data:`DEFAULT_RULES`, used when a node configures none, follow the rules of 福州市 (Fuzhou) the
issue cites: 优秀/良好 → 绩效奖励 (finance); 一般 → 公开批评 (organisation); 差, or 一般 two years
running → 书面整改报告并约谈 (discipline).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from aggregator.numbers import to_text
from sync.publication import FINAL, Figure, Published

CODE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")  # rule, list and body codes (use_lists.list is 32 characters)
MAX_CYCLES = 10  # "N cycles running": more than ten years of history is a typing error
BODIES = {"organisation": ("组织部", "organisation department"),
          "discipline": ("纪检监察", "discipline inspection"),
          "finance": ("财政", "finance")}


@dataclass(frozen=True)
class When:
    grades: frozenset[str] = frozenset()  # empty: any grade
    cycles: int = 1  # the grade held in this many cycles running, up to the one evaluated
    rank_bottom: int | None = None
    score_below: Decimal | None = None


@dataclass(frozen=True)
class Rule:
    code: str
    list: str
    title: str
    body: str
    when: When


@dataclass(frozen=True)
class Entry:
    unit: str
    name: str
    unit_class: str
    rank: int
    rule: str
    because: str


@dataclass(frozen=True)
class Drafted:
    """One list as the rules make it (not yet signed)."""

    list: str
    title: str
    body: str
    entries: tuple[Entry, ...]


DEFAULT_RULES: tuple[Rule, ...] = (
    Rule("reward_excellent_good", "reward", "绩效奖励", "finance", When(frozenset({"优秀", "良好"}))),
    Rule("criticise_fair", "criticism", "公开批评", "organisation", When(frozenset({"一般"}))),
    Rule("rectify_poor", "rectification_talk", "书面整改报告并约谈", "discipline", When(frozenset({"差"}))),
    Rule("rectify_fair_twice", "rectification_talk", "书面整改报告并约谈", "discipline",
         When(frozenset({"一般"}), cycles=2)),
)


def body_name(body: str, lang: str = "zh-CN") -> str:
    names = BODIES.get(body)
    return body if names is None else names[1 if lang == "en" else 0]


def history_needed(rules: Iterable[Rule]) -> int:
    """How many cycles back (before the evaluated one) the rules look."""
    return max((r.when.cycles for r in rules), default=1) - 1


def cycles_back(cycle: str, n: int) -> list[str]:
    """``cycle`` and the ``n`` before it, newest first."""
    year = int(cycle)
    return [str(year - i) for i in range(n + 1)]


def finals_of(publications: Iterable[Published], cycle: str) -> list[Published]:
    """The final annual publications of ``cycle`` among ``publications``: the latest version of each
    class (a later revision replaces an earlier final)."""
    latest: dict[str, Published] = {}
    for p in publications:
        if p.state != FINAL or p.cycle != cycle or p.period != f"{cycle}-Y":
            continue
        key = p.framework.unit_class
        if key not in latest or p.version > latest[key].version:
            latest[key] = p
    return [latest[k] for k in sorted(latest)]


Index = dict[str, dict[str, tuple[Published, Figure]]]  # cycle → unit → its publication and figure


def index(by_cycle: dict[str, list[Published]]) -> Index:
    out: Index = {}
    for c, pubs in by_cycle.items():
        at = out.setdefault(c, {})
        for p in pubs:
            for f in p.units:
                at.setdefault(f.unit, (p, f))
    return out


def holds(rule: Rule, unit: str, cycle: str, held: Index) -> str | None:
    """Why ``rule`` holds for ``unit`` in ``cycle`` (for people), or None when it does not."""
    w = rule.when
    current = held.get(cycle, {}).get(unit)
    if current is None:
        return None
    pub, fig = current
    parts: list[str] = []
    if w.grades or w.cycles > 1:
        run = []
        for c in reversed(cycles_back(cycle, w.cycles - 1)):
            found = held.get(c, {}).get(unit)
            if found is None or not found[1].grade or (w.grades and found[1].grade not in w.grades):
                return None
            run.append(f"{c} {found[1].grade}")
        parts.append("、".join(run))
    if w.rank_bottom is not None:
        size = len(pub.units)
        if fig.rank <= 0 or fig.rank <= size - w.rank_bottom:
            return None
        parts.append(f"排名 {fig.rank}/{size}（后 {w.rank_bottom} 名）")
    if w.score_below is not None:
        if not fig.score < w.score_below:
            return None
        parts.append(f"得分 {to_text(fig.score)} < {to_text(w.score_below)}")
    return "；".join(parts)


def evaluate(rules: Sequence[Rule], cycle: str, publications: Iterable[Published]) -> list[Drafted]:
    """Every list the rules name, for ``cycle``, from the final publications of it and the cycles before."""
    pubs = list(publications)
    by_cycle = {c: finals_of(pubs, c) for c in cycles_back(cycle, history_needed(rules))}
    held = index(by_cycle)
    units = sorted({(p.framework.unit_class, f.rank, f.unit): f.name for p in by_cycle[cycle] for f in p.units}.items())
    out: list[Drafted] = []
    for code in dict.fromkeys(r.list for r in rules):
        of_list = [r for r in rules if r.list == code]
        entries = []
        for (klass, rank, unit), name in units:
            for r in of_list:
                because = holds(r, unit, cycle, held)
                if because is not None:
                    entries.append(Entry(unit, name, klass, rank, r.code, because))
                    break
        out.append(Drafted(code, of_list[0].title, of_list[0].body, tuple(entries)))
    return out


def used(rules: Sequence[Rule], cycle: str, publications: Iterable[Published]) -> list[str]:
    """Digests of the final publications :func:`evaluate` rests on, sorted."""
    pubs = list(publications)
    return sorted(p.digest for c in cycles_back(cycle, history_needed(rules)) for p in finals_of(pubs, c))

