"""Readiness (``/ready``): can this node do its work now? Liveness (``/health``) only says the
process answers; an orchestrator restarts a node that is not live, and sends no traffic to (and
holds a rolling update at) one that is not ready.

A node is ready when its store answers, its NATS connection is up, its gRPC listener is serving,
and, for a node with a parent, it has loaded the trust it checks its parent's messages against
(revocation lists and the keys seen per serial). The parent being unreachable does not make a node
unready: it still serves its own users, and ``/api/v1/sync`` says it may be frozen on old data.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from nodes.services.context import NodeContext

STORE_TIMEOUT = 2.0  # seconds: a probe must answer well within the orchestrator's own timeout


class TransportState(Protocol):
    @property
    def connected(self) -> bool: ...


@dataclass(frozen=True)
class Check:
    name: str  # store | nats | grpc | trust
    ok: bool
    detail: str = ""

    @property
    def code(self) -> str:
        return f"ready.{self.name}"


async def check(ctx: NodeContext, transport: TransportState | None) -> list[Check]:
    """Every check, each with what is wrong when it fails (zh-CN first, English in parentheses)."""
    out = [await _store(ctx)]
    connected = transport is not None and transport.connected
    out.append(Check("nats", connected, "" if connected else
                     f"未连接 NATS {ctx.cfg.nats_url.split('@')[-1]} (not connected to NATS)"))
    serving = ctx.readiness.grpc_serving
    out.append(Check("grpc", serving, "" if serving else "gRPC 监听尚未启动 (the gRPC listener is not serving yet)"))
    if ctx.me.parent is not None:
        loaded = ctx.readiness.trust_loaded
        out.append(Check("trust", loaded, "" if loaded else
                         "尚未从存储加载吊销列表与已知密钥 (revocation lists and known keys not loaded yet)"))
    return out


async def _store(ctx: NodeContext) -> Check:
    try:
        async with asyncio.timeout(STORE_TIMEOUT):
            async with ctx.store.read() as r:
                await r.audit.tip()
    except TimeoutError:
        return Check("store", False, f"存储 {STORE_TIMEOUT:g} 秒内未应答 (the store did not answer in time)")
    except Exception as exc:  # any driver's error: the probe reports it, never raises it
        return Check("store", False, f"存储不可用 (store unavailable): {type(exc).__name__}")
    return Check("store", True)


def not_ready(checks: Sequence[Check]) -> list[Check]:
    return [c for c in checks if not c.ok]
