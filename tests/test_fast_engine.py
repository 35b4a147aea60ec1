"""The vectorised hierarchy engine gives the Decimal engine's numbers, and updates incrementally."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.fast import MICRO, SCALE, FastHierarchy, Leaves
from aggregator.framework import Framework, Indicator, Unit
from aggregator.scoring import score_units

# province 0; cities 1, 2; counties 3, 4 (city 1) and 5 (city 2); townships 6..11
PARENTS = [-1, 0, 0, 1, 1, 2, 3, 3, 4, 4, 5, 5]
CODES = ["51", "5101", "5107", "510104", "510105", "510703", *[f"51010401{i}" for i in range(6)]]


def hierarchy(seed: int, weights: list[int], higher: list[bool], mean: list[bool]) -> FastHierarchy:
    rng = np.random.default_rng(seed)
    n_leaves = len(weights)
    targets = rng.integers(1, 50, size=(len(CODES), n_leaves)).astype(np.int64) * SCALE
    values = rng.integers(0, 80, size=(6, n_leaves, 2)).astype(np.int64) * SCALE // 2
    leaves = Leaves(np.array(weights, dtype=np.int64), np.array(higher), np.array(mean))
    h = FastHierarchy(CODES, PARENTS, leaves, targets, values)
    h.full_recompute()
    return h


def decimal_scores(h: FastHierarchy, parent: int, period: int) -> dict[str, tuple[Decimal, int, str]]:
    kids = h.children[parent]
    inds = [Indicator(code="G", name="G", weight=Decimal(sum(int(w) for w in h.leaves.weights_micro)) / MICRO)]
    for j, w in enumerate(h.leaves.weights_micro):
        inds.append(Indicator(code=f"L{j}", name="x", weight=Decimal(int(w)) / MICRO, parent_code="G", leaf=True,
                              direction="higher" if h.leaves.higher[j] else "lower",
                              unit_targets={CODES[k]: Decimal(int(h.targets[k, j])) / SCALE for k in kids}))
    fw = Framework("x", "x", "2026", "c", 1, "t", 0, 1, tuple(Unit(CODES[k], "x") for k in kids), tuple(inds))
    vals = {CODES[k]: {f"L{j}": Decimal(int(h.values[k, j, period])) / SCALE for j in range(len(inds) - 1)}
            for k in kids}
    return {s.unit: (s.score, s.rank, s.grade) for s in score_units(fw, vals, datetime(2026, 1, 1, tzinfo=UTC))}


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000),
       st.lists(st.tuples(st.integers(1, 40) .map(lambda x: x * 250_000), st.booleans(), st.booleans()),
                min_size=1, max_size=6))
def test_same_numbers_as_decimal_engine(seed: int, spec: list[tuple[int, bool, bool]]) -> None:
    h = hierarchy(seed, [w for w, _, _ in spec], [hi for _, hi, _ in spec], [m for _, _, m in spec])
    for parent in (0, 1, 2, 3, 4, 5):
        for period in (0, 1):
            expected = decimal_scores(h, parent, period)
            for k in h.children[parent]:
                got = (Decimal(int(h.totals[k, period])) / 100, int(h.ranks[k, period]), h.grades[k][period])
                assert got == expected[CODES[k]]


def test_exact_tie_rounds_half_up() -> None:
    # One micro-point of weight, value half the target: exactly 0.5 micro-points → rounds up to 1.
    leaves = Leaves(np.array([1], dtype=np.int64), np.array([True]), np.array([False]))
    targets = np.full((len(CODES), 1), 2 * SCALE, dtype=np.int64)
    values = np.full((6, 1, 1), SCALE, dtype=np.int64)
    h = FastHierarchy(CODES, PARENTS, leaves, targets, values)
    h.full_recompute()
    assert h.points[6, 0, 0] == 1


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000), st.integers(6, 11), st.integers(0, 2), st.integers(0, 1), st.integers(0, 200))
def test_incremental_update_equals_full_recompute(seed: int, town: int, leaf: int, period: int, value: int) -> None:
    h = hierarchy(seed, [2_000_000, 3_000_000, 5_000_000], [True, False, True], [False, True, False])
    touched = h.update(town, leaf, period, value * SCALE)
    assert touched[0] == town and len(touched) == 3
    fresh = FastHierarchy(CODES, PARENTS, h.leaves, h.targets, h.values[h.levels[-1]].copy())
    fresh.full_recompute()
    assert np.array_equal(fresh.values, h.values) and np.array_equal(fresh.totals, h.totals)
    assert np.array_equal(fresh.ranks, h.ranks) and fresh.grades == h.grades
