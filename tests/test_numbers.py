"""The canonical-text fast paths of aggregator/numbers.py give exactly what the general path gives."""

from __future__ import annotations

from decimal import Decimal, localcontext

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aggregator.numbers import WORK, NumberError, parse_decimal, to_text

bounded = st.decimals(min_value=Decimal(-(10**18)) + 1, max_value=Decimal(10**18) - 1, places=10,
                      allow_nan=False, allow_infinity=False)


def reference_text(value: Decimal) -> str:
    with localcontext(WORK):
        text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text


@given(bounded)
def test_to_text_is_the_canonical_form(value: Decimal) -> None:
    assert to_text(value) == reference_text(value)
    assert parse_decimal(to_text(value), "x") == value


@given(st.text(alphabet="-0123456789.eE+", max_size=30))
def test_parse_agrees_with_the_general_path_on_any_text(text: str) -> None:
    """Whatever the fast path takes, the general checks would have taken, as the same number."""
    try:
        fast = parse_decimal(text, "x")
    except NumberError:
        return
    assert fast == Decimal(text) and to_text(fast) == reference_text(fast)


@pytest.mark.parametrize("text", ["1E+3", "1.50", "-0", "0.0", "00", "999999999999999999.9", "0.1234567891"])
def test_non_canonical_text_takes_the_general_path(text: str) -> None:
    value = parse_decimal(text, "x")
    assert value == Decimal(text)
    assert to_text(value) == reference_text(value)


@pytest.mark.parametrize(("text", "code"), [("1E1000", "number.out_of_range"), ("-1e999999999", "number.out_of_range"),
                                            ("1e-999999999", "number.too_many_places"),
                                            ("0.00000000001", "number.too_many_places")])
def test_extreme_exponents_are_refused_without_arithmetic(text: str, code: str) -> None:
    """(Found by the property above.) Neither overflows nor underflows the working context."""
    with pytest.raises(NumberError) as exc:
        parse_decimal(text, "x")
    assert exc.value.code == code
