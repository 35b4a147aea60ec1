"""Whole responses of the public read routes, kept until the node's data changes.

The cache key carries the store's generation (``Store.generation``, raised by every committed write),
so an answer is never served after anything it was computed from changed: no invalidation to forget.
Each route says how long an answer may live at most (``cache=`` seconds on the handler). The store is
bounded: a flood of distinct query strings evicts the oldest answers instead of growing memory.
Security headers are added on the way out (``before_send``), cached or not.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from litestar.config.response_cache import ResponseCacheConfig, default_cache_key_builder
from litestar.connection import Request
from litestar.stores.memory import MemoryStore

from gateway.deps import node_state
from gateway.i18n import language

STORE = "response_cache"
ANSWER_SECONDS = 10  # what this node holds: valid until its next write in any case
FEDERATED_SECONDS = 1  # what also comes from below (drill-down, the dashboard): asked again every second at most
MAX_ENTRIES = 2048


class BoundedMemoryStore(MemoryStore):
    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        super().__init__()
        self.max_entries = max_entries

    async def set(self, key: str, value: str | bytes, expires_in: int | timedelta | None = None) -> None:
        await super().set(key, value, expires_in)
        async with self._lock:
            while len(self._store) > self.max_entries:
                del self._store[next(iter(self._store))]  # the oldest first: dicts keep insertion order


def config() -> ResponseCacheConfig:
    def key(request: Request[Any, Any, Any]) -> str:
        # Per node (a host's application serves many), per store generation, per language.
        node = node_state(request)
        return (f"{node['node_code']}:{node['node'].store.generation}:{language(request)}:"
                f"{default_cache_key_builder(request)}")

    return ResponseCacheConfig(default_expiration=10, key_builder=key, store=STORE)
