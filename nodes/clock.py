"""The node's one clock, handed to every service (tests pass a fixed or stepping one)."""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], int]  # whole seconds since the epoch


def system_clock() -> int:
    return int(time.time())


class FixedClock:
    """A clock a test sets by hand."""

    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: int) -> None:
        self.now += seconds
