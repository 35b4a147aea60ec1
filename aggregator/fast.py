"""Whole-hierarchy recompute, vectorised, with the same numbers as the Decimal engine.

For completion-ratio frameworks over a deep hierarchy (a province's 3,000+ units × 100+
indicators × 12 periods) the per-value Decimal engine is too slow for a full recompute. This
engine keeps every value as a scaled integer (×10⁴, the published value precision), so roll-ups
are exact integer sums, and computes each leaf's points in micro-points (×10⁶) with the same
rule as :mod:`aggregator.scoring`: points = ROUND_HALF_UP(weight × min(ratio, cap), 6 places),
total = ROUND_HALF_UP(Σ points, 2 places). The quotient is taken in binary floating point, which
is exact to far better than a micro-point; the rare quotient that lands within 10⁻⁶ of a
rounding tie is recomputed with the Decimal engine's own steps, so the published totals equal the
Decimal engine's to the last digit.

Interim periods (aggregator/interim.py): each period may scale each leaf's targets by a factor
(``scales[period][leaf]``, a :class:`~fractions.Fraction`; None: the leaf is not appraised in that
period and the others are re-scaled to the full weight) and may be left ungraded (``graded``).
Without them every period is scored like the year, against the annual targets, and graded.

A single changed value is applied along its path only (:meth:`FastHierarchy.update`): the roll-up
changes by the delta at each ancestor, and only the affected sibling groups are re-scored,
re-ranked and re-graded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, localcontext
from fractions import Fraction

import numpy as np
import numpy.typing as npt

from aggregator.grading import DEFAULT_GRADES, GradeRule, assign_grades
from aggregator.numbers import WORK, round_leaf

SCALE = 10_000  # values: 4 decimals
MICRO = 1_000_000  # leaf points: 6 decimals
CENT_IN_MICRO = MICRO // 100
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Leaves:
    """The leaves of the framework used at every level (each decomposes its parent's namesake)."""

    weights_micro: I64  # weight × 10⁶
    higher: npt.NDArray[np.bool_]  # direction: True when higher is better
    mean_rule: npt.NDArray[np.bool_]  # roll-up: mean (else sum)
    cap_num: int = 12  # cap as a fraction: 12/10 = 1.2
    cap_den: int = 10


class FastHierarchy:
    """Units in level order, each level grouped by parent (GB/T 2260 codes sort that way)."""

    def __init__(self, codes: Sequence[str], parents: Sequence[int], leaves: Leaves, targets: I64,
                 township_values: I64, grades: Sequence[GradeRule] = DEFAULT_GRADES,
                 scales: Sequence[Sequence[Fraction | None]] = (), graded: Sequence[bool] = ()) -> None:
        self.codes = list(codes)
        self.parent = np.asarray(parents, dtype=np.int64)
        n = len(self.codes)
        depth = np.zeros(n, dtype=np.int64)
        for i in range(n):
            depth[i] = 0 if self.parent[i] < 0 else depth[self.parent[i]] + 1
        self.depth = depth
        self.levels = [np.flatnonzero(depth == d) for d in range(int(depth.max()) + 1)]
        self.children: list[list[int]] = [[] for _ in range(n)]
        for i in range(n):
            if self.parent[i] >= 0:
                self.children[int(self.parent[i])].append(i)
        self.leaves = leaves
        self.targets = targets  # [unit, leaf]: the unit's target in its parent's framework (scaled)
        bottom = self.levels[-1]
        if township_values.shape[0] != len(bottom):
            raise ValueError("one row of values per unit of the lowest level")
        self.values = np.zeros((n, targets.shape[1], township_values.shape[2]), dtype=np.int64)
        self.values[bottom] = township_values
        self.points = np.zeros_like(self.values)
        self.totals = np.zeros((n, township_values.shape[2]), dtype=np.int64)  # cents
        self.ranks = np.zeros_like(self.totals)
        self.grades: list[list[str]] = [[""] * township_values.shape[2] for _ in range(n)]
        self.grade_rules = tuple(grades)
        self._periods(scales, graded)

    def _periods(self, scales: Sequence[Sequence[Fraction | None]], graded: Sequence[bool]) -> None:
        """Interim targets per period, rounded half up to 0.0001 as aggregator/interim.scaled does."""
        n_leaves, n_periods = self.targets.shape[1], self.values.shape[2]
        self.graded = list(graded) or [True] * n_periods
        self.included = np.ones((n_leaves, n_periods), dtype=np.bool_)
        self.period_targets: I64 | None = None  # None: every period against the annual targets
        if not scales:
            return
        self.period_targets = np.repeat(self.targets[:, :, None], n_periods, axis=2)
        for p, row in enumerate(scales):
            for j, factor in enumerate(row):
                if factor is None:
                    self.included[j, p] = False
                elif factor != 1:
                    t = self.targets[:, j].astype(object) * factor.numerator  # Python integers: no overflow
                    whole = (abs(t) * 2 + factor.denominator) // (2 * factor.denominator)
                    self.period_targets[:, j, p] = np.where(t >= 0, whole, -whole).astype(np.int64)
        w = self.leaves.weights_micro
        self.weight_total = int(w.sum())
        self.weight_counted = [int(w[self.included[:, p]].sum()) for p in range(n_periods)]

    def _cents(self, micro: I64, period: int | None = None) -> I64:
        """Totals in cents from micro-points; re-scaled to the full weight where leaves are left out."""
        if self.period_targets is None:
            return (micro + CENT_IN_MICRO // 2) // CENT_IN_MICRO
        counted = np.asarray(self.weight_counted if period is None else self.weight_counted[period], dtype=np.int64)
        den = np.maximum(counted, 1) * CENT_IN_MICRO
        return np.asarray((2 * micro * self.weight_total + den) // (2 * den), dtype=np.int64)

    # ---------------------------------------------------------------- roll-up
    def roll_up(self) -> None:
        for d in range(len(self.levels) - 2, -1, -1):
            kids = self.levels[d + 1]
            parents = self.parent[kids]
            starts = np.flatnonzero(np.r_[True, parents[1:] != parents[:-1]])
            sums = np.add.reduceat(self.values[kids], starts, axis=0)
            owners = parents[starts]
            counts = np.diff(np.r_[starts, len(kids)])[:, None, None]
            means = (2 * sums + counts) // (2 * counts)  # ROUND_HALF_UP to 4 decimals (values ≥ 0)
            self.values[owners] = np.where(self.leaves.mean_rule[None, :, None], means, sums)

    # ----------------------------------------------------------------- scores
    def _points(self, units: npt.NDArray[np.int64]) -> I64:
        """Micro-points of every leaf and period of ``units`` (each scored in its parent's framework)."""
        v = self.values[units]  # [unit, leaf, period]
        t = self.targets[units][:, :, None] if self.period_targets is None else self.period_targets[units]
        w = self.leaves.weights_micro[None, :, None]
        hi = self.leaves.higher[None, :, None]
        cn, cd = self.leaves.cap_num, self.leaves.cap_den
        num = np.where(hi, v, t)  # ratio = num / den, direction-aware
        den = np.where(hi, t, v)
        capped = (num * cd > cn * den) | (~hi & (v <= 0))
        zero = hi & (t <= 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            q = np.clip(w * (num.astype(np.float64) / np.where(den == 0, 1, den)), 0.0, None)
        out = np.floor(q + 0.5).astype(np.int64)
        near = (np.abs(q - np.floor(q) - 0.5) < 1e-6) & ~capped & ~zero
        tt = np.broadcast_to(t, v.shape)
        for idx in zip(*np.nonzero(near), strict=True):  # within 10⁻⁶ of a tie: decide as the Decimal engine does
            out[idx] = self._reference(int(v[idx]), int(tt[idx]), int(idx[1]))
        cap_points = (self.leaves.weights_micro * cn + cd // 2) // cd  # weight × cap
        out = np.where(capped, cap_points[None, :, None], out)
        return np.where(zero | ~self.included[None, :, :], 0, out)

    def _reference(self, v: int, t: int, leaf: int) -> int:
        """One leaf's micro-points by the Decimal engine's steps (methods.completion_ratio, then
        round_leaf), for the quotients the floating-point path cannot decide."""
        with localcontext(WORK):
            x, target = Decimal(v) / SCALE, Decimal(t) / SCALE
            cap = Decimal(self.leaves.cap_num) / self.leaves.cap_den
            weight = Decimal(int(self.leaves.weights_micro[leaf])) / MICRO
            lower = cap if x <= 0 else target / x  # a value of zero or less (nothing bad happened) earns the cap
            ratio = (x / target if target > 0 else Decimal(0)) if self.leaves.higher[leaf] else lower
            share = min(max(ratio, Decimal(0)), cap)
            return int(round_leaf(share * weight) * MICRO)

    def score_all(self) -> None:
        units = np.flatnonzero(self.parent >= 0)
        for block in np.array_split(units, max(1, len(units) // 256)):  # bounded temporaries
            self.points[block] = self._points(block)
        micro = self.points[units].sum(axis=1)
        self.totals[units] = self._cents(micro)
        self._rank_all(units)
        for parent in range(len(self.codes)):
            if self.children[parent]:
                for period in range(self.totals.shape[1]):
                    self._grade(parent, period)

    def _rank_all(self, units: npt.NDArray[np.int64]) -> None:
        parents = self.parent[units]
        for period in range(self.totals.shape[1]):
            scores = self.totals[units, period]
            order = np.lexsort((-scores, parents))
            s_par, s_sc = parents[order], scores[order]
            new_group = np.r_[True, s_par[1:] != s_par[:-1]]
            new_score = new_group | np.r_[True, s_sc[1:] != s_sc[:-1]]
            pos = np.arange(len(order))
            group_start = np.maximum.accumulate(np.where(new_group, pos, 0))
            first_of_score = np.maximum.accumulate(np.where(new_score, pos, 0))
            self.ranks[units[order], period] = first_of_score - group_start + 1
            if self.period_targets is not None and not self.weight_counted[period]:
                self.ranks[units, period] = 0  # nothing appraised in this period: nobody is ranked

    def _rank_group(self, parent: int, period: int) -> None:
        kids = self.children[parent]
        if self.period_targets is not None and not self.weight_counted[period]:
            return
        scores = {k: int(self.totals[k, period]) for k in kids}
        ordered = sorted(kids, key=lambda k: -scores[k])
        rank, prev = 0, None
        for i, k in enumerate(ordered, start=1):
            if scores[k] != prev:
                rank, prev = i, scores[k]
            self.ranks[k, period] = rank

    def _grade(self, parent: int, period: int) -> None:
        kids = self.children[parent]
        if not self.graded[period] or (self.period_targets is not None and not self.weight_counted[period]):
            return
        graded = assign_grades({str(k): Decimal(int(self.totals[k, period])) / 100 for k in kids}, self.grade_rules)
        for k in kids:
            self.grades[k][period] = graded[str(k)].grade

    def full_recompute(self) -> None:
        self.roll_up()
        self.score_all()

    # ----------------------------------------------------------------- update
    def update(self, township: int, leaf: int, period: int, value: int) -> list[int]:
        """Set one lowest-level value and recompute only its path; returns the units touched."""
        touched = []
        self.values[township, leaf, period] = value
        node = township
        while node >= 0:
            parent = int(self.parent[node])
            if parent < 0:
                break
            # the parent's rolled-up value of this leaf
            kids = self.children[parent]
            col = self.values[kids, leaf, period]
            if self.leaves.mean_rule[leaf]:
                n = len(kids)
                self.values[parent, leaf, period] = (2 * int(col.sum()) + n) // (2 * n)
            else:
                self.values[parent, leaf, period] = int(col.sum())
            # re-score node among its siblings (only its own leaf points changed)
            self.points[node, leaf, period] = self._points_one(node, leaf, period)
            micro = self.points[node, :, period].sum()
            self.totals[node, period] = self._cents(micro, period)
            self._rank_group(parent, period)
            self._grade(parent, period)
            touched.append(node)
            node = parent
        return touched

    def _points_one(self, unit: int, leaf: int, period: int) -> int:
        if not self.included[leaf, period]:
            return 0
        t = self.targets[unit, leaf] if self.period_targets is None else self.period_targets[unit, leaf, period]
        return self._reference(int(self.values[unit, leaf, period]), int(t), leaf)
