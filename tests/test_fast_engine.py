"""The vectorised hierarchy engine gives the Decimal engine's numbers, and updates incrementally."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator import interim
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


# ------------------------------------------------------------- interim periods (issue 9 item 11)
PERIODS = ["2026-Q1", "2026-M07", "2026-H1", "2026-Y"]
MODES = ("", "proportional", "same", "none", "period")  # "": the default for the leaf's roll-up


def interim_leaf(j: int, weight_micro: int, higher: bool, mean: bool, mode: str,
                 unit_targets: dict[str, Decimal] | None = None) -> Indicator:
    period = mode == "period"
    return Indicator(code=f"L{j}", name="x", weight=Decimal(weight_micro) / MICRO, parent_code="G", leaf=True,
                     direction="higher" if higher else "lower", rollup="mean" if mean else "sum",
                     interim="" if period else mode, unit_targets=unit_targets or {},
                     target=Decimal(20) if period else None,
                     period_targets={"Q1": Decimal(3), "M07": Decimal("15.5"), "H1": Decimal(9)} if period else {})


def interim_scores(h: FastHierarchy, spec: list[tuple[int, bool, bool, str]], graded: tuple[str, ...],
                   parent: int, period: int) -> dict[str, tuple[Decimal, int, str]]:
    kids = h.children[parent]
    inds = [Indicator(code="G", name="G", weight=Decimal(sum(w for w, *_ in spec)) / MICRO)]
    inds += [interim_leaf(j, w, hi, mean, mode, {CODES[k]: Decimal(int(h.targets[k, j])) / SCALE for k in kids})
             for j, (w, hi, mean, mode) in enumerate(spec)]
    fw = Framework("x", "x", "2026", "c", 1, "t", 0, 1, tuple(Unit(CODES[k], "x") for k in kids), tuple(inds),
                   graded_periods=graded)
    vals = {CODES[k]: {f"L{j}": Decimal(int(h.values[k, j, period])) / SCALE for j in range(len(spec))} for k in kids}
    return {s.unit: (s.score, s.rank, s.grade)
            for s in score_units(fw, vals, datetime(2026, 1, 1, tzinfo=UTC), PERIODS[period])}


def interim_hierarchy(seed: int, spec: list[tuple[int, bool, bool, str]], graded: tuple[str, ...],
                      values: np.ndarray | None = None) -> FastHierarchy:
    rng = np.random.default_rng(seed)
    targets = rng.integers(1, 50, size=(len(CODES), len(spec))).astype(np.int64) * SCALE
    if values is None:
        values = rng.integers(0, 80, size=(6, len(spec), len(PERIODS))).astype(np.int64) * SCALE // 4
    leaves = Leaves(np.array([w for w, *_ in spec], dtype=np.int64), np.array([hi for _, hi, _, _ in spec]),
                    np.array([m for _, _, m, _ in spec]))
    # The factors come from the same place the Decimal engine takes them: aggregator/interim.py.
    fw = Framework("x", "x", "2026", "c", 1, "t", 0, 1, (), (), graded_periods=graded)
    inds = [interim_leaf(j, w, hi, mean, mode) for j, (w, hi, mean, mode) in enumerate(spec)]
    h = FastHierarchy(CODES, PARENTS, leaves, targets, values,
                      scales=[[None if (sc := interim.scale_of(i, p)) is None else sc.factor for i in inds]
                              for p in PERIODS],
                      graded=[interim.graded(fw, p) for p in PERIODS])
    h.full_recompute()
    return h


interim_specs = st.lists(st.tuples(st.integers(1, 40).map(lambda x: x * 250_000), st.booleans(), st.booleans(),
                                   st.sampled_from(MODES)), min_size=1, max_size=5)
graded_sets = st.sampled_from([("Y",), ("Y", "H1"), ("Q",), ("M07", "Y")])


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), interim_specs, graded_sets)
def test_interim_periods_same_numbers_as_decimal_engine(seed: int, spec: list[tuple[int, bool, bool, str]],
                                                        graded: tuple[str, ...]) -> None:
    h = interim_hierarchy(seed, spec, graded)
    for parent in (0, 1, 2, 3, 4, 5):
        for period in range(len(PERIODS)):
            expected = interim_scores(h, spec, graded, parent, period)
            for k in h.children[parent]:
                got = (Decimal(int(h.totals[k, period])) / 100, int(h.ranks[k, period]), h.grades[k][period])
                assert got == expected[CODES[k]], (PERIODS[period], CODES[k])


def test_interim_quarter_is_pro_rated_and_ungraded() -> None:
    h = interim_hierarchy(7, [(10_000_000, True, False, "")], ("Y",))
    q1, year = PERIODS.index("2026-Q1"), PERIODS.index("2026-Y")
    assert h.period_targets is not None
    assert np.array_equal(4 * h.period_targets[:, 0, q1], h.targets[:, 0])  # whole targets × SCALE: exact quarters
    assert all(h.grades[k][q1] == "" for k in range(1, len(CODES))) and all(h.grades[k][year] for k in range(1, 12))


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000), st.integers(6, 11), st.integers(0, 2), st.integers(0, 3), st.integers(0, 200),
       st.lists(st.sampled_from(MODES), min_size=3, max_size=3))
def test_interim_incremental_update_equals_full_recompute(seed: int, town: int, leaf: int, period: int, value: int,
                                                          modes: list[str]) -> None:
    spec = [(w, hi, m, mode) for (w, hi, m), mode in zip([(2_000_000, True, False), (3_000_000, False, True),
                                                           (5_000_000, True, False)], modes, strict=True)]
    h = interim_hierarchy(seed, spec, ("Y", "H1"))
    h.update(town, leaf, period, value * SCALE)
    fresh = interim_hierarchy(seed, spec, ("Y", "H1"), h.values[h.levels[-1]].copy())
    assert np.array_equal(fresh.values, h.values) and np.array_equal(fresh.totals, h.totals)
    assert np.array_equal(fresh.ranks, h.ranks) and fresh.grades == h.grades
