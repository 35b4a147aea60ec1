"""What every service shares, handed in by the composition root."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from aggregator.errors import BadInput
from aggregator.framework import Framework, valid_cycle, valid_period
from nodes.clock import Clock
from nodes.config import NodeConfig
from nodes.read_cache import ReadCache
from nodes.store import Store
from sync.codec import framework_from_envelope
from sync.identity import Me, Outcome
from sync.limits import Limits
from sync.ports import FrameworkRecord
from sync.transport.grpc import FederationClient

log = logging.getLogger("fedappraisal.node")


_DECODED: dict[str, Framework] = {}  # digest → framework: immutable under its digest, decoded once


def framework_of(row: FrameworkRecord) -> Framework:
    fw = _DECODED.get(row.digest)
    if fw is None:
        if len(_DECODED) >= 512:
            _DECODED.clear()
        fw = _DECODED[row.digest] = framework_from_envelope(row.envelope)
    return fw


def check_period(cycle: str, period: str, hint: bool = False) -> None:
    if not valid_cycle(cycle) or not valid_period(period, cycle):
        extra = f"；报告期如 {cycle[:4]}-Y、-Q1、-M03" if hint else ""
        raise BadInput(f"年度 {cycle[:16]!r} 或报告期 {period[:16]!r} 无效{extra} (invalid cycle or period)",
                       code="input.period")


@dataclass
class Wakeups:
    """Events that let one service nudge a loop of another without knowing it."""

    outbox: asyncio.Event = field(default_factory=asyncio.Event)
    heartbeat: asyncio.Event = field(default_factory=asyncio.Event)
    report: asyncio.Event = field(default_factory=asyncio.Event)  # this node's state changed: report it up


@dataclass
class Health:
    """What went wrong lately, for /api/v1/sync and appraise status (never silent)."""

    last_error: str = ""
    send_errors: dict[str, tuple[int, str]] = field(default_factory=dict)  # subject → (when, error)
    gave_up: list[dict[str, Any]] = field(default_factory=list)  # the latest give-ups, newest last

    def give_up(self, what: str, reason: str, at: int) -> None:
        self.last_error = f"{what}: {reason}"[:500]
        self.gave_up.append({"what": what, "reason": reason[:500], "at": at})
        del self.gave_up[:-20]

    def recovered(self, what: str) -> None:
        """The loop that gave up has since succeeded: it no longer waits on anybody.
        (A stream message given up for good stays listed: it was dropped, and only the audit log
        and the sender's own resend can bring it back.)"""
        self.gave_up = [g for g in self.gave_up if g["what"] != what]


@dataclass
class Readiness:
    """What the runtime has brought up, for ``/ready`` (nodes/services/readiness.py): set by the
    runtime (or a host) as each part starts, never by a request."""

    trust_loaded: bool = False  # revocation lists and known keys loaded from the store
    grpc_serving: bool = False  # the gRPC listener (the node's own, or its host's) is started


class Tasks:
    """Background tasks the runtime cancels on stop."""

    def __init__(self) -> None:
        self.running: list[asyncio.Task[None]] = []

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=name)
        self.running.append(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[None]) -> None:
        if task in self.running:
            self.running.remove(task)


class Channels:
    """One long-lived gRPC channel per peer node: a mutual-TLS handshake costs milliseconds of CPU, so
    it is paid once per peer, not once per call. gRPC reconnects a channel by itself; one that failed
    a call is dropped anyway, so the next call starts clean."""

    def __init__(self, make: Callable[[str, str], FederationClient]) -> None:
        self._make = make
        self._open: dict[tuple[str, str], FederationClient] = {}

    def get(self, target: str, peer: str) -> FederationClient:
        client = self._open.get((target, peer))
        if client is None:
            client = self._open[(target, peer)] = self._make(target, peer)
        return client

    async def drop(self, target: str, peer: str) -> None:
        client = self._open.pop((target, peer), None)
        if client is not None:
            await client.close()

    async def close(self) -> None:
        for key in list(self._open):
            await self.drop(*key)


@dataclass
class NodeContext:
    cfg: NodeConfig
    me: Me
    store: Store
    clock: Clock
    limits: Limits
    wakeups: Wakeups
    health: Health
    tasks: Tasks
    readiness: Readiness = field(default_factory=Readiness)
    cache: ReadCache = field(init=False)
    channels: Channels = field(init=False)

    def __post_init__(self) -> None:
        self.cache = ReadCache(self.store)
        self.channels = Channels(self.client)

    def client(self, target: str, peer: str) -> FederationClient:
        """A new gRPC client to node ``peer``; with TLS, its certificate must name that node. (For
        repeated calls, ``channels`` keeps one open per peer.)"""
        return FederationClient(target, self.cfg.tls, peer, max_message=self.limits.grpc_message_bytes)

    @property
    def child_names(self) -> dict[str, str]:
        return {c.code: c.name for c in self.cfg.children}

    @property
    def unit_names(self) -> dict[str, str]:
        """Everything this node appraises: its children and its departments."""
        return {**self.child_names, **{d.code: d.name for d in self.cfg.departments}}

    def log_outcome(self, what: str, outcome: Outcome) -> None:
        if outcome.accepted and not outcome.duplicate:
            self.wakeups.outbox.set()  # after the commit, so the relay sees the new outbox rows
            self.wakeups.report.set()  # and the parent hears at once what this node now holds
        if outcome.retry:
            log.info("%s not yet: %s", what, outcome.reason)
        elif not outcome.accepted:
            log.warning("rejected %s: %s", what, outcome.reason)
        elif not outcome.duplicate:
            log.info("accepted %s %s from %s", what, outcome.msg_id[:12], outcome.origin)
