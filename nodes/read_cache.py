"""Answers of the read path, kept until what they were computed from changes.

Every committed write transaction raises the store's generation (``Store.generation``); an answer
computed under an older one is never served again, so a page never shows figures older than the
last thing this node took. What a node's answer also depends on below it (a child's drill-down
answer) changes here too, as the child's next bundle arrives; ``ttl`` bounds what does not (a value
a child holds but does not roll up), and a partial answer is kept only briefly.

Identical misses wait for one computation (single flight): a burst of the same request costs one
database read or one gRPC fan-out, never one per request, so anonymous traffic cannot spend this
node's children's query budget.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class Generational(Protocol):
    @property
    def generation(self) -> int: ...


class ReadCache:
    def __init__(self, source: Generational, max_entries: int = 1024,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.source = source
        self.max_entries = max_entries
        self.clock = clock
        self._entries: OrderedDict[Hashable, tuple[int, float, Any]] = OrderedDict()
        self._flights: dict[Hashable, asyncio.Future[Any]] = {}
        self.hits = self.misses = 0

    async def get(self, key: Hashable, compute: Callable[[], Awaitable[T]], ttl: float,
                  keep: Callable[[T], float] | None = None) -> T:
        """The answer for ``key``, computed by ``compute`` unless a valid one is held. ``keep(answer)``:
        how long to keep that answer instead of ``ttl`` (e.g. briefly for a partial one)."""
        held = self._entries.get(key)
        if held is not None and held[0] == self.source.generation and held[1] > self.clock():
            self.hits += 1
            self._entries.move_to_end(key)
            value: T = held[2]
            return value
        flight = self._flights.get(key)
        if flight is not None:
            self.hits += 1
            result: T = await asyncio.shield(flight)
            return result
        self.misses += 1
        generation = self.source.generation
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._flights[key] = future
        try:
            answer = await compute()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it; nobody is warned it went unseen
            raise
        else:
            future.set_result(answer)
            life = ttl if keep is None else keep(answer)
            if life > 0:
                self._entries[key] = (generation, self.clock() + life, answer)
                self._entries.move_to_end(key)
                while len(self._entries) > self.max_entries:
                    self._entries.popitem(last=False)
            return answer
        finally:
            del self._flights[key]
