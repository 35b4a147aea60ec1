"""One retry policy for every retry loop (docs/design.md §8): exponential backoff with full
jitter and a cap, and a give-up that is never silent.

The outbox relay, catch-up from the parent, and NATS subscribe and fetch all pause with
:meth:`RetryPolicy.pause` (gap repair is asked again by the stream's redelivery); loops with a
bounded number of attempts run through :meth:`RetryPolicy.run`, which calls ``on_give_up`` (the
node audits it and shows it in ``/api/v1/sync`` and ``appraise status``) before raising
:class:`GaveUp`.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from aggregator.errors import TransportFailure
from sync.limits import DEFAULT_LIMITS, Limits

T = TypeVar("T")


class GaveUp(TransportFailure):
    default_code = "transport.gave_up"


@dataclass(frozen=True)
class RetryPolicy:
    initial: float = 0.5
    cap: float = 5.0
    factor: float = 2.0
    attempts: int | None = None  # None: retry for as long as the node runs
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    @classmethod
    def from_limits(cls, limits: Limits = DEFAULT_LIMITS, attempts: int | None = None) -> RetryPolicy:
        return cls(initial=limits.retry_initial_seconds, cap=limits.retry_cap_seconds, attempts=attempts)

    def delay(self, attempt: int) -> float:
        """Pause before attempt ``attempt + 1`` (``attempt`` counts from 1): full jitter under
        min(cap, initial × factor^(attempt-1)), never below a tenth of ``initial``."""
        ceiling = min(self.cap, self.initial * self.factor ** max(0, attempt - 1))
        return max(self.initial / 10, self.rng.uniform(0, ceiling))

    async def pause(self, attempt: int) -> None:
        await asyncio.sleep(self.delay(attempt))

    async def run(self, op: Callable[[], Awaitable[T]], *, what: str,
                  on_error: Callable[[int, Exception], None] | None = None,
                  on_give_up: Callable[[str], Awaitable[None]] | None = None) -> T:
        """Call ``op`` until it succeeds; after ``attempts`` failures report and raise GaveUp."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return await op()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if on_error is not None:
                    on_error(attempt, exc)
                if self.attempts is not None and attempt >= self.attempts:
                    reason = f"{what}: {attempt} 次尝试后放弃 (gave up after {attempt} attempts): {type(exc).__name__}: {exc}"
                    if on_give_up is not None:
                        await on_give_up(reason[:500])
                    raise GaveUp(reason[:500]) from exc
            await self.pause(attempt)
