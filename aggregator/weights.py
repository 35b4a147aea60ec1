"""Weighting methods: AHP (层次分析法), entropy weights (熵权法), and their combination.

These are analysis tools an office uses to *set* weights; the weights it then writes into a
framework are decimal strings like any other signed number. Computation is in binary floats with
a fixed algorithm (power iteration to a fixed tolerance, ``math.fsum``), so the same input gives
the same output everywhere; results are rounded to six decimals for publication.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from aggregator.errors import BadInput

# Saaty's random consistency index by matrix order (Saaty 1980; orders 11-15 from his extended table).
RANDOM_INDEX = {1: 0.0, 2: 0.0, 3: 0.58, 4: 0.90, 5: 1.12, 6: 1.24, 7: 1.32, 8: 1.41, 9: 1.45, 10: 1.49,
                11: 1.51, 12: 1.54, 13: 1.56, 14: 1.57, 15: 1.58}
CR_LIMIT = 0.10
# Offices write 1/3 as 0.33: a pair whose product is within 1 % of 1 counts as reciprocal.
RECIPROCAL_TOLERANCE = Fraction(1, 100)
PLACES = 6


class WeightsError(BadInput):
    """Input that cannot be weighted; the message names the entry and the fix (``weights.*``)."""

    default_code = "input.weights"


def parse_entry(value: object, where: str) -> Fraction:
    """A matrix entry: a positive number or a fraction string such as "1/3"."""
    if isinstance(value, bool):
        raise WeightsError(f"{where}: 应为正数或分数，实为布尔值 (expected a positive number or fraction)",
                           code="weights.boolean")
    try:
        if isinstance(value, int | str):
            f = Fraction(str(value).strip())
        elif isinstance(value, float):
            f = Fraction(repr(value))
        else:
            raise TypeError
    except (ValueError, ZeroDivisionError, TypeError):
        raise WeightsError(f"{where}: 应为正数或分数（如 3 或 \"1/3\"），实为 {value!r} "
                           "(expected a number or fraction)", code="weights.not_a_fraction") from None
    if f <= 0:
        raise WeightsError(f"{where}: 判断值必须为正，实为 {value!r} (entries must be positive)", code="weights.not_positive")
    return f


def _show(f: Fraction) -> str:
    return str(f) if f.denominator < 1000 else f"{float(f):.4g}"


@dataclass(frozen=True)
class AhpResult:
    criteria: tuple[str, ...]
    weights: tuple[float, ...]
    lambda_max: float
    ci: float
    cr: float

    @property
    def consistent(self) -> bool:
        return self.cr < CR_LIMIT

    def as_dict(self) -> dict[str, object]:
        return {"criteria": list(self.criteria), "weights": [round(w, PLACES) for w in self.weights],
                "lambda_max": round(self.lambda_max, PLACES), "ci": round(self.ci, PLACES),
                "cr": round(self.cr, PLACES), "consistent": self.consistent}


def ahp(criteria: Sequence[str], matrix: Sequence[Sequence[object]]) -> AhpResult:
    """Principal eigenvector weights of a pairwise comparison matrix, with λmax, CI and CR."""
    n = len(criteria)
    if n == 0:
        raise WeightsError("criteria: 至少需要一个准则 (at least one criterion)", code="weights.no_criteria")
    if len(set(criteria)) != n:
        raise WeightsError("criteria: 准则名称重复 (duplicate criteria)", code="weights.duplicate_criteria")
    if n > max(RANDOM_INDEX):
        raise WeightsError(f"criteria: 准则不宜超过 {max(RANDOM_INDEX)} 个，请分层 (too many criteria; split into levels)",
                           code="weights.too_many_criteria")
    if len(matrix) != n or any(not isinstance(row, Sequence) or isinstance(row, str) or len(row) != n
                               for row in matrix):
        raise WeightsError(f"matrix: 应为 {n}×{n} 方阵，与准则个数一致 (matrix must be square, {n}×{n})",
                           code="weights.not_square")
    a = [[parse_entry(matrix[i][j], f"matrix[{i}][{j}]") for j in range(n)] for i in range(n)]
    for i in range(n):
        if a[i][i] != 1:
            raise WeightsError(f"matrix[{i}][{i}]: 对角线应为 1，实为 {a[i][i]} (diagonal must be 1)",
                               code="weights.bad_diagonal")
        for j in range(i + 1, n):
            if abs(a[i][j] * a[j][i] - 1) > RECIPROCAL_TOLERANCE:
                raise WeightsError(
                    f"matrix[{j}][{i}]: 应为 matrix[{i}][{j}] 的倒数 {_show(1 / a[i][j])}，实为 {_show(a[j][i])} "
                    f"({criteria[j]} vs {criteria[i]}: matrix must be reciprocal)", code="weights.not_reciprocal")
    fa = [[float(x) for x in row] for row in a]
    w = [1.0 / n] * n
    for _ in range(1000):
        nxt = [math.fsum(fa[i][j] * w[j] for j in range(n)) for i in range(n)]
        total = math.fsum(nxt)
        nxt = [x / total for x in nxt]
        done = max(abs(x - y) for x, y in zip(nxt, w, strict=True)) < 1e-15
        w = nxt
        if done:
            break
    aw = [math.fsum(fa[i][j] * w[j] for j in range(n)) for i in range(n)]
    lambda_max = math.fsum(aw[i] / w[i] for i in range(n)) / n
    ci = 0.0 if n <= 2 else max(0.0, (lambda_max - n) / (n - 1))
    cr = 0.0 if RANDOM_INDEX[n] == 0 else ci / RANDOM_INDEX[n]
    return AhpResult(tuple(criteria), tuple(w), lambda_max, ci, cr)


@dataclass(frozen=True)
class EntropyResult:
    criteria: tuple[str, ...]
    weights: tuple[float, ...]
    entropy: tuple[float, ...]
    divergence: tuple[float, ...]

    def as_dict(self) -> dict[str, object]:
        return {"criteria": list(self.criteria), "weights": [round(w, PLACES) for w in self.weights],
                "entropy": [round(e, PLACES) for e in self.entropy],
                "divergence": [round(d, PLACES) for d in self.divergence]}


def entropy_weights(criteria: Sequence[str], values: Sequence[Sequence[object]],
                    directions: Sequence[str] | None = None) -> EntropyResult:
    """熵权法: rows are units, columns criteria; more dispersion → more weight.

    Each column is min-max normalised (reversed for lower-is-better), p_ij = x_ij / Σ_i x_ij,
    e_j = -Σ p ln p / ln m (0·ln 0 = 0), d_j = 1 - e_j, w_j = d_j / Σ d. A column with no
    spread carries no information (d = 0); if no column has spread, weights are equal.
    """
    n = len(criteria)
    m = len(values)
    if n == 0:
        raise WeightsError("criteria: 至少需要一个指标 (at least one criterion)", code="weights.no_criteria")
    if m < 2:
        raise WeightsError("values: 至少需要两个被评价单位的数据 (at least two rows of values)", code="weights.too_few_rows")
    dirs = list(directions) if directions is not None else ["higher"] * n
    if len(dirs) != n or any(d not in ("higher", "lower") for d in dirs):
        raise WeightsError("directions: 应与指标一一对应，取值 higher 或 lower (one direction per criterion)",
                           code="weights.bad_directions")
    table: list[list[float]] = []
    for i, row in enumerate(values):
        if not isinstance(row, Sequence) or isinstance(row, str) or len(row) != n:
            raise WeightsError(f"values[{i}]: 应有 {n} 个数值，与指标个数一致 (row length must match criteria)",
                               code="weights.bad_row")
        parsed = []
        for j, v in enumerate(row):
            if isinstance(v, bool) or not isinstance(v, int | float | str):
                raise WeightsError(f"values[{i}][{j}]: 应为数字，实为 {v!r} (expected a number)", code="weights.not_a_number")
            try:
                x = float(v)
            except ValueError:
                raise WeightsError(f"values[{i}][{j}]: 应为数字，实为 {v!r} (expected a number)",
                                   code="weights.not_a_number") from None
            if not math.isfinite(x):
                raise WeightsError(f"values[{i}][{j}]: 应为有限数字 (expected a finite number)", code="weights.not_finite")
            parsed.append(x)
        table.append(parsed)
    k = 1.0 / math.log(m)
    ent: list[float] = []
    for j in range(n):
        col = [table[i][j] for i in range(m)]
        lo, hi = min(col), max(col)
        if hi == lo:
            ent.append(1.0)
            continue
        norm = [(x - lo) / (hi - lo) if dirs[j] == "higher" else (hi - x) / (hi - lo) for x in col]
        total = math.fsum(norm)
        ps = [x / total for x in norm]
        ent.append(-k * math.fsum(p * math.log(p) for p in ps if p > 0))
    div = [max(0.0, 1.0 - e) for e in ent]
    s = math.fsum(div)
    weights = [1.0 / n] * n if s == 0 else [d / s for d in div]
    return EntropyResult(tuple(criteria), tuple(weights), tuple(ent), tuple(div))


def combine(subjective: Sequence[float], objective: Sequence[float], alpha: float | None = None) -> list[float]:
    """Combine subjective (e.g. AHP) and objective (e.g. entropy) weights.

    With ``alpha`` in [0, 1]: linear, w = α·s + (1-α)·o. Without: multiplicative synthesis,
    w_i = s_i·o_i / Σ s·o (both sources must agree for a weight to be large).
    """
    if len(subjective) != len(objective) or not subjective:
        raise WeightsError("主观与客观权重个数不一致 (weight vectors differ in length)", code="weights.length_mismatch")
    if alpha is not None:
        if not 0 <= alpha <= 1:
            raise WeightsError("alpha 应在 0 与 1 之间 (alpha must be in [0, 1])", code="weights.bad_alpha")
        return [alpha * s + (1 - alpha) * o for s, o in zip(subjective, objective, strict=True)]
    prod = [s * o for s, o in zip(subjective, objective, strict=True)]
    total = math.fsum(prod)
    if total == 0:
        raise WeightsError("主观与客观权重没有共同的非零项 (no criterion has weight in both)", code="weights.no_overlap")
    return [p / total for p in prod]
