"""NATS JetStream transport: streams, publishing with message ids, durable pull consumers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig, ExternalStream, PubAck, StorageType, StreamConfig, StreamSource
from nats.js.errors import BadRequestError, FetchTimeoutError

from aggregator.errors import TransportFailure
from sync.limits import DEFAULT_LIMITS, Limits
from sync.retry import RetryPolicy

log = logging.getLogger(__name__)

STREAM_CASCADE = "FA_CASCADE"
STREAM_RESULTS = "FA_RESULTS"
STREAMS = {STREAM_CASCADE: "casc.>", STREAM_RESULTS: "res.>"}

# A handler takes a fetched batch of (subject, data) and returns, per message, True when it is
# settled (accepted, duplicate or rejected) and False when it should come again later (e.g. a
# bundle that arrived before its predecessor). An exception means the batch's effects did not
# commit (a store outage): every message of it is redelivered after a pause.
Handler = Callable[[list[tuple[str, bytes]]], Awaitable[list[bool]]]
GiveUp = Callable[[str, bytes, str], Awaitable[None]]
BATCH = DEFAULT_LIMITS.fetch_batch


async def create_streams(url: str, streams: list[dict[str, Any]]) -> None:
    """An operator creates (or updates) the streams one server of a hierarchy needs (nodes.natsconf.stream_plan)."""
    nc = await nats.connect(url, connect_timeout=5)
    try:
        js = nc.jetstream()
        for spec in streams:
            sources = [StreamSource(name=s["name"], filter_subject=s.get("filter_subject"),
                                    external=ExternalStream(api=s["external"]["api"]) if "external" in s else None)
                       for s in spec.get("sources", [])]
            cfg = StreamConfig(name=spec["name"], subjects=list(spec.get("subjects", [])), sources=sources or None,
                               storage=StorageType.FILE, duplicate_window=120.0)
            try:
                await js.add_stream(cfg)
            except BadRequestError:
                await js.update_stream(cfg)
    finally:
        await nc.close()


class NatsTransport:
    def __init__(self, nc: Client, name: str, retry: RetryPolicy | None = None, limits: Limits = DEFAULT_LIMITS) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.name = name
        self.retry = retry or RetryPolicy.from_limits(limits)
        self.limits = limits
        self._tasks: list[asyncio.Task[None]] = []
        self.last_error = ""

    @classmethod
    async def connect(cls, url: str, name: str, inbox_prefix: str = "_INBOX", *, retry: RetryPolicy | None = None,
                      limits: Limits = DEFAULT_LIMITS) -> NatsTransport:
        """``inbox_prefix``: where replies and pull deliveries come; the server lets a node subscribe
        only under its own (nodes.natsconf.inbox_prefix)."""
        nc = await nats.connect(url, name=name, max_reconnect_attempts=-1, reconnect_time_wait=0.5,
                                connect_timeout=5, allow_reconnect=True, inbox_prefix=inbox_prefix)
        return cls(nc, name, retry, limits)

    @property
    def connected(self) -> bool:
        return bool(self.nc.is_connected)

    async def ensure_streams(self) -> None:
        for stream, subject in STREAMS.items():
            cfg = StreamConfig(name=stream, subjects=[subject], storage=StorageType.FILE, duplicate_window=120.0)
            try:
                await self.js.add_stream(cfg)
            except BadRequestError:
                # Another node created it first with the same subjects; that is the shared stream.
                await self.js.stream_info(stream)

    async def publish(self, subject: str, payload: bytes, msg_id: str) -> PubAck:
        """Publish and wait for JetStream's acknowledgement; raises if not acknowledged, or if the
        acknowledgement comes from a stream other than the one that owns the subject.

        ``msg_id`` is unknowable to other nodes (sync/message_ids.py), so a duplicate acknowledgement
        means JetStream already holds this very message: an earlier attempt whose acknowledgement was
        lost, not another node's message under a forged id."""
        ack: PubAck = await self.js.publish(subject, payload, timeout=5, headers={"Nats-Msg-Id": msg_id})
        expected = next((name for name, pattern in STREAMS.items() if subject.startswith(pattern.rstrip(">"))), "")
        if expected and ack.stream != expected:
            raise TransportFailure(f"{subject} 的确认来自流 {ack.stream}，应为 {expected} "
                                   f"(acknowledged by stream {ack.stream}, expected {expected})",
                                   code="transport.wrong_stream")
        return ack

    async def announce(self, subject: str, payload: bytes) -> None:
        """Core NATS, fire and forget: for heartbeats, which are worthless once expired.

        No ``flush(timeout)`` here: in nats-py (2.16) a flush that times out leaves its cancelled
        future queued, and the PONG that arrives later kills the client's read loop
        (InvalidStateError), after which every request times out on a connection that looks alive.
        A cut link made exactly that happen in tests/test_faults_netns.py."""
        await self.nc.publish(subject, payload)

    async def listen(self, subject: str, handler: Callable[[bytes], Awaitable[None]]) -> None:
        async def on_message(msg: Msg) -> None:
            try:
                await handler(msg.data)
            except Exception as exc:  # one bad announcement must not end the subscription
                self.last_error = f"handle {msg.subject}: {exc}"
                log.warning("handling %s: %s", msg.subject, exc)

        await self.nc.subscribe(subject, cb=on_message)

    def consume(self, stream: str, durable: str, filter_subject: str, handler: Handler, give_up: GiveUp,
                batch: int = 1) -> None:
        self._tasks.append(asyncio.create_task(self._consume(stream, durable, filter_subject, handler, give_up, batch),
                                               name=f"consume:{durable}"))

    async def _consume(self, stream: str, durable: str, filter_subject: str, handler: Handler,
                       give_up: GiveUp, batch: int) -> None:
        config = ConsumerConfig(durable_name=durable, ack_policy=AckPolicy.EXPLICIT, ack_wait=30,
                                filter_subject=filter_subject, max_deliver=-1)
        attempt = 0
        while True:
            try:
                sub = await self.js.pull_subscribe(filter_subject, durable=durable, stream=stream, config=config)
                break
            except Exception as exc:
                attempt += 1
                self.last_error = f"subscribe {durable}: {exc}"
                await self.retry.pause(attempt)
        failures = 0
        while True:
            try:
                # Returns at once with what is there (up to ``batch``), or waits for the next one.
                msgs = await sub.fetch(batch=batch, timeout=5)
            except (TimeoutError, NatsTimeoutError, FetchTimeoutError):
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                self.last_error = f"fetch {durable}: {exc}"
                await self.retry.pause(failures)
                continue
            failures = 0
            try:
                await self._settle(msgs, handler, give_up)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.last_error = f"ack {filter_subject}: {exc}"

    async def _settle(self, msgs: list[Msg], handler: Handler, give_up: GiveUp) -> None:
        try:
            results = await handler([(m.subject, m.data) for m in msgs])
            errors = ["" if done else "稍后重试仍未满足条件 (still waiting for an earlier message)" for done in results]
        except Exception as exc:
            self.last_error = f"handle {msgs[0].subject}: {exc}"
            log.exception("handling a batch of %d from %s failed", len(msgs), msgs[0].subject)
            results, errors = [False] * len(msgs), [f"{type(exc).__name__}: {exc}"] * len(msgs)
        for msg, done, error in zip(msgs, results, errors, strict=True):
            attempt = msg.metadata.num_delivered or 1
            if done:
                await msg.ack()
            elif attempt >= self.limits.max_deliveries:
                # A message that can never be settled must not be retried forever: record and drop it.
                await give_up(msg.subject, msg.data, f"{attempt} 次投递后放弃 (gave up after {attempt} attempts): {error}")
                await msg.term()
            else:
                await msg.nak(delay=self.limits.redelivery_seconds)

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        # close, not drain: unacknowledged messages are redelivered to the durable consumer
        # after a restart, and a drain waits on the pull requests still parked at the server.
        if not self.nc.is_closed:
            await self.nc.close()
