"""Decimal parsing, bounds, and the one rounding rule for published numbers.

Inputs are bounded (fewer than 18 integer digits, at most 10 decimal places) so that every
computation in the core fits the working context below exactly or rounds predictably, and no
input can make the arithmetic overflow.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Context, Decimal, InvalidOperation, localcontext

from aggregator.errors import BadInput

SCORE_QUANTUM = Decimal("0.01")
LEAF_QUANTUM = Decimal("0.000001")
VALUE_QUANTUM = Decimal("0.0001")
MAX_DIGITS = 18  # integer digits: |x| < 10**18
MAX_PLACES = 10
# The working context of the core: 40 significant digits is exact for sums of millions of
# bounded inputs; division results are rounded half-even at the 40th digit before publication
# rounding applies.
WORK = Context(prec=40, rounding=ROUND_HALF_EVEN, Emin=-999, Emax=999)


# Canonical text (what ``to_text`` writes) within the bounds: every value a node signs has this form,
# so receivers take it without the general parse (tests/test_numbers.py checks both paths agree).
_CANONICAL = re.compile(r"(?:0|-?(?:[1-9][0-9]{0,17}(?:\.[0-9]{0,9}[1-9])?|0\.[0-9]{0,9}[1-9]))\Z")


class NumberError(BadInput):
    """A value that should be a decimal number is not one (or is out of range): ``number.*``."""

    default_code = "input.number"


def parse_decimal(text: str | int | float | Decimal, what: str) -> Decimal:
    """Parse a bounded decimal from its text; floats go through ``repr`` so 0.1 stays 0.1."""
    if type(text) is str and _CANONICAL.match(text):
        return Decimal(text)
    if isinstance(text, bool):
        raise NumberError(f"{what}: 应为数字，实为布尔值 {text!r} (expected a number, got a boolean)", code="number.boolean")
    if isinstance(text, float):
        text = repr(text)
    if isinstance(text, str) and len(text) > 64:
        raise NumberError(f"{what}: 数字过长 (number too long)", code="number.too_long")
    try:
        value = Decimal(text)
    except (InvalidOperation, TypeError, ValueError):
        raise NumberError(f"{what}: 应为数字，实为 {text!r} (expected a number)", code="number.not_a_number") from None
    if not value.is_finite():
        raise NumberError(f"{what}: 应为有限数字，实为 {text!r} (expected a finite number)", code="number.not_finite")
    # adjusted(): the exponent of the leading digit, no arithmetic, so 1E1000 cannot overflow the context
    if value and value.adjusted() >= MAX_DIGITS:
        raise NumberError(f"{what}: 数值超出范围（绝对值应小于 10^18），实为 {text!r} (number out of range)",
                          code="number.out_of_range")
    _, digits, exponent = value.as_tuple()  # again no arithmetic: 1E-999999999 cannot underflow either
    text_digits = "".join(map(str, digits))
    places = -(exponent + len(text_digits) - len(text_digits.rstrip("0"))) if isinstance(exponent, int) else 0
    if value and places > MAX_PLACES:
        raise NumberError(f"{what}: 小数位过多（至多 {MAX_PLACES} 位），实为 {text!r} (too many decimal places)",
                          code="number.too_many_places")
    return value


def round_score(value: Decimal) -> Decimal:
    """Published scores: two decimals, half up."""
    with localcontext(WORK):
        return value.quantize(SCORE_QUANTUM, rounding=ROUND_HALF_UP)


def round_leaf(value: Decimal) -> Decimal:
    """A leaf's points (weight × share earned): six decimals, half up, before they are added."""
    with localcontext(WORK):
        return value.quantize(LEAF_QUANTUM, rounding=ROUND_HALF_UP)


def round_value(value: Decimal) -> Decimal:
    """Rolled-up values: four decimals, half up (sums of exact inputs stay exact)."""
    with localcontext(WORK):
        return value.quantize(VALUE_QUANTUM, rounding=ROUND_HALF_UP)


def to_text(value: Decimal) -> str:
    """Canonical decimal text for signed payloads (no exponent, no trailing zeros, no rounding)."""
    text = str(value)
    if _CANONICAL.match(text):
        return text
    with localcontext(WORK):
        text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text
