"""Decimal parsing and the one rounding rule for published numbers."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

SCORE_QUANTUM = Decimal("0.01")
VALUE_QUANTUM = Decimal("0.0001")


class NumberError(ValueError):
    """A value that should be a decimal number is not one."""


def parse_decimal(text: str | int | float | Decimal, what: str) -> Decimal:
    """Parse a decimal from its text; floats go through ``repr`` so 0.1 stays 0.1."""
    if isinstance(text, bool):
        raise NumberError(f"{what}: 应为数字，实为布尔值 {text!r} (expected a number, got a boolean)")
    if isinstance(text, float):
        text = repr(text)
    try:
        value = Decimal(text)
    except (InvalidOperation, TypeError, ValueError):
        raise NumberError(f"{what}: 应为数字，实为 {text!r} (expected a number)") from None
    if not value.is_finite():
        raise NumberError(f"{what}: 应为有限数字，实为 {text!r} (expected a finite number)")
    return value


def round_score(value: Decimal) -> Decimal:
    """Published scores: two decimals, half up."""
    return value.quantize(SCORE_QUANTUM, rounding=ROUND_HALF_UP)


def round_value(value: Decimal) -> Decimal:
    """Rolled-up values: four decimals, half up (sums of exact inputs stay exact)."""
    return value.quantize(VALUE_QUANTUM, rounding=ROUND_HALF_UP)


def to_text(value: Decimal) -> str:
    """Canonical decimal text for signed payloads (no exponent, no trailing zeros)."""
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text
