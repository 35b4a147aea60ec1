"""AHP and entropy weights: textbook examples, invariants, and the CLI's refusals."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.weights import WeightsError, ahp, combine, entropy_weights
from tests.support.properties import generous_deadline


def test_ahp_textbook_three_criteria() -> None:
    r = ahp(["经济", "民生", "生态"], [[1, 3, 5], ["1/3", 1, 3], ["1/5", "1/3", 1]])
    assert [round(w, 3) for w in r.weights] == [0.637, 0.258, 0.105]
    assert round(r.lambda_max, 3) == 3.039
    assert round(r.cr, 3) == 0.033 and r.consistent


def test_ahp_perfectly_consistent_matrix() -> None:
    # Built from weights 4:2:1, so the eigenvector is exactly that and CI is zero.
    r = ahp(["a", "b", "c"], [[1, 2, 4], ["1/2", 1, 2], ["1/4", "1/2", 1]])
    assert [round(w, 9) for w in r.weights] == [round(4 / 7, 9), round(2 / 7, 9), round(1 / 7, 9)]
    assert abs(r.lambda_max - 3) < 1e-12 and r.cr < 1e-9


def test_ahp_inconsistent_matrix_is_reported() -> None:
    # a > b (9), b > c (9), but c > a (9): circular preferences.
    r = ahp(["a", "b", "c"], [[1, 9, "1/9"], ["1/9", 1, 9], [9, "1/9", 1]])
    assert r.cr >= 0.10 and not r.as_dict()["consistent"]


@pytest.mark.parametrize(("matrix", "code", "message"), [
    ([[1, 2], [2, 1]], "weights.not_reciprocal", "matrix[1][0]"),
    ([[1, 2, 3], [0.5, 1, 2]], "weights.not_square", "matrix"),
    ([[1, -2], ["-1/2", 1]], "weights.not_positive", "matrix[0][1]"),
    ([[2, 2], ["1/2", 1]], "weights.bad_diagonal", "matrix[0][0]"),
    ([[1, "x"], ["1/2", 1]], "weights.not_a_fraction", "matrix[0][1]"),
])
def test_ahp_refuses_bad_matrices(matrix: list[list[object]], code: str, message: str) -> None:
    with pytest.raises(WeightsError, match=message.replace("[", r"\[").replace("]", r"\]")) as exc:
        ahp(["a", "b"] if len(matrix[0]) == 2 else ["a", "b", "c"], matrix)
    assert exc.value.code == code


@st.composite
def consistent_matrices(draw: st.DrawFn) -> tuple[list[float], list[list[float]]]:
    w = draw(st.lists(st.floats(min_value=0.1, max_value=10), min_size=2, max_size=8))
    return w, [[wi / wj for wj in w] for wi in w]


@settings(deadline=generous_deadline())
@given(consistent_matrices())
def test_ahp_recovers_weights_of_consistent_matrices(case: tuple[list[float], list[list[float]]]) -> None:
    w, matrix = case
    r = ahp([f"c{i}" for i in range(len(w))], matrix)
    total = math.fsum(w)
    assert all(abs(a - b / total) < 1e-9 for a, b in zip(r.weights, w, strict=True))
    assert abs(math.fsum(r.weights) - 1) < 1e-12


def test_entropy_hand_computed() -> None:
    r = entropy_weights(["a", "b"], [[1, 5], [2, 5], [3, 5]])
    e = -(1 / 3 * math.log(1 / 3) + 2 / 3 * math.log(2 / 3)) / math.log(3)
    assert abs(r.entropy[0] - e) < 1e-12 and r.entropy[1] == 1.0
    assert r.weights == (1.0, 0.0)


def test_entropy_lower_is_better_and_no_spread() -> None:
    up = entropy_weights(["a", "b"], [[1, 3], [2, 2], [3, 1]], ["higher", "lower"])
    assert abs(up.weights[0] - up.weights[1]) < 1e-12
    flat = entropy_weights(["a", "b"], [[1, 1], [1, 1]])
    assert flat.weights == (0.5, 0.5)
    with pytest.raises(WeightsError, match="values\\[1\\]"):
        entropy_weights(["a", "b"], [[1, 2], [3]])


@settings(deadline=generous_deadline())
@given(st.lists(st.lists(st.floats(min_value=-1e6, max_value=1e6), min_size=3, max_size=3), min_size=2, max_size=12))
def test_entropy_weights_are_a_distribution(rows: list[list[float]]) -> None:
    r = entropy_weights(["a", "b", "c"], rows)
    assert all(w >= 0 for w in r.weights) and abs(math.fsum(r.weights) - 1) < 1e-9


def test_combine() -> None:
    assert combine([0.5, 0.5], [0.9, 0.1], alpha=0.5) == [0.7, 0.3]
    m = combine([0.5, 0.5], [0.9, 0.1])
    assert [round(x, 9) for x in m] == [0.9, 0.1]


def appraise(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nodes.cli", *args], capture_output=True, text=True, timeout=60,
                          check=False)


def test_cli_ahp_and_entropy(tmp_path: Path) -> None:
    f = tmp_path / "ahp.json"
    f.write_text(json.dumps({"criteria": ["经济", "民生", "生态"],
                             "matrix": [[1, 3, 5], ["1/3", 1, 3], ["1/5", "1/3", 1]]}, ensure_ascii=False))
    r = appraise("weights", "ahp", str(f))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert set(out) == {"criteria", "weights", "lambda_max", "ci", "cr", "consistent"}
    assert out["consistent"] is True and out["criteria"] == ["经济", "民生", "生态"]
    f.write_text(json.dumps({"criteria": ["a", "b"], "matrix": [[1, 2], [2, 1]]}))
    bad = appraise("weights", "ahp", str(f))
    assert bad.returncode != 0 and str(f) in bad.stderr and "reciprocal" in bad.stderr
    e = tmp_path / "entropy.json"
    e.write_text(json.dumps({"criteria": ["a", "b"], "values": [[1, 5], [2, 5], [3, 5]]}))
    r = appraise("weights", "entropy", str(e))
    assert r.returncode == 0 and json.loads(r.stdout)["weights"] == [1.0, 0.0]
    e.write_text("{not json")
    bad = appraise("weights", "entropy", str(e))
    assert bad.returncode != 0 and "malformed JSON" in bad.stderr
