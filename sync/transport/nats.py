"""NATS JetStream transport: streams and their limits, publishing with message ids, durable pull consumers.

Streams are the operator's: ``create_streams`` makes or updates them from a plan (``nodes.natsconf``),
always with the limits of ``sync.limits`` (``stream_limits``). A node only checks that they are there
(``NatsTransport.ensure_streams``); its account may not create or change a stream (docs/design.md §4.5).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import AuthorizationError
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DiscardPolicy,
    ExternalStream,
    PubAck,
    StorageType,
    StreamConfig,
    StreamSource,
)
from nats.js.client import JetStreamContext
from nats.js.errors import BadRequestError, FetchTimeoutError, NotFoundError, ServiceUnavailableError

from aggregator.errors import TransportFailure
from sync.limits import DEFAULT_LIMITS, Limits
from sync.retry import RetryPolicy

log = logging.getLogger(__name__)

TLS_EOF_NOISE = "returning true from eof_received() has no effect when using ssl"


class _TlsEofNoise(logging.Filter):
    """Drops asyncio's one warning about nats-py's TLS connections closing: nats-py opens a plain stream
    and upgrades it with ``start_tls``, so its stream protocol still answers end-of-file as over plain
    TCP, which asyncio's SSL layer ignores but logs each time a server closes the connection (a server
    stopped, a node's connection cut). Only that record: every other asyncio warning is still shown."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != TLS_EOF_NOISE


logging.getLogger("asyncio").addFilter(_TlsEofNoise())

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


DUPLICATE_WINDOW = 120.0  # seconds; the server wants it no longer than max_age
LIMIT_FIELDS = ("max_msgs", "max_bytes", "max_age", "max_msgs_per_subject", "max_msg_size", "discard",
                "discard_new_per_subject")


def servers(url: str) -> list[str]:
    """``url``: one server, or several comma separated (a hub cluster: the client fails over between them)."""
    return [u.strip() for u in url.split(",") if u.strip()]


def connect_options(seed_file: str | None = None, ca_file: str | None = None) -> dict[str, Any]:
    """nats-py options for a node's or an operator's connection: sign in with the nkey seed in
    ``seed_file`` (the seed stays in its file: nats-py reads it to sign the server's challenge, and it
    is never put in a URL, a log line or a status page), and speak TLS checking the server's certificate
    against the deployment CA ``ca_file`` (a server with another certificate is refused)."""
    opts: dict[str, Any] = {}
    if seed_file:
        opts["nkeys_seed"] = seed_file
    if ca_file:
        # The servers' certificates name the addresses they are reached by (issue_node_cert hosts).
        opts["tls"] = ssl.create_default_context(cafile=ca_file)
    return opts


def stream_limits(limits: Limits) -> dict[str, Any]:
    """The limits every stream is made with (StreamConfig fields; ``max_age`` in seconds).

    Discard new, per subject too: a full stream or subject refuses the publish, so the sender's outbox
    keeps the row pending (and says why) instead of the stream dropping an older message that a parent
    may not have consumed yet."""
    return {"max_msgs": limits.stream_max_msgs, "max_bytes": limits.stream_max_bytes,
            "max_age": float(limits.stream_max_age_seconds), "max_msgs_per_subject": limits.stream_max_msgs_per_subject,
            # a message larger than any a node may send (Limits.message_bytes) is refused by the stream
            # itself, below the server's max_payload
            "max_msg_size": limits.message_bytes,
            "discard": DiscardPolicy.NEW.value, "discard_new_per_subject": True}


def stream_config(spec: Mapping[str, Any], limits: Limits = DEFAULT_LIMITS) -> StreamConfig:
    """One stream of a plan (nodes.natsconf); a limit the plan does not state (a plan written by an
    older version states none) is taken from ``limits``."""
    bounds = {**stream_limits(limits), **{k: spec[k] for k in LIMIT_FIELDS if k in spec}}
    sources = [StreamSource(name=s["name"], filter_subject=s.get("filter_subject"),
                            external=ExternalStream(api=s["external"]["api"], deliver=s["external"].get("deliver"))
                            if "external" in s else None)
               for s in spec.get("sources", [])]
    max_age = float(bounds["max_age"])
    return StreamConfig(name=spec["name"], subjects=list(spec.get("subjects", [])), sources=sources or None,
                        storage=StorageType.FILE, duplicate_window=min(DUPLICATE_WINDOW, max_age or DUPLICATE_WINDOW),
                        max_msgs=int(bounds["max_msgs"]), max_bytes=int(bounds["max_bytes"]), max_age=max_age,
                        max_msgs_per_subject=int(bounds["max_msgs_per_subject"]),
                        max_msg_size=int(bounds["max_msg_size"]), num_replicas=int(spec.get("num_replicas", 1)),
                        discard=DiscardPolicy(bounds["discard"]),
                        discard_new_per_subject=bool(bounds["discard_new_per_subject"]))


def unbounded(cfg: StreamConfig) -> list[str]:
    """The limits a stream lacks (one made by an older version has none)."""
    lacking = [name for name in ("max_msgs", "max_bytes", "max_msgs_per_subject", "max_msg_size")
               if (getattr(cfg, name) or -1) <= 0]
    if not cfg.max_age:
        lacking.append("max_age")
    if cfg.discard != DiscardPolicy.NEW:
        lacking.append("discard")
    return lacking


async def create_streams(url: str, streams: list[dict[str, Any]], limits: Limits = DEFAULT_LIMITS, *,
                         seed_file: str | None = None, ca_file: str | None = None) -> None:
    """An operator creates the streams of one server (nodes.natsconf ``stream_plan``,
    ``single_stream_plan``), or updates existing ones to the plan and its limits without losing a message.
    ``seed_file``/``ca_file``: the operator's nkey and the deployment CA (``connect_options``)."""
    nc = await nats.connect(servers(url), connect_timeout=5, **connect_options(seed_file, ca_file))
    try:
        js = nc.jetstream()
        for spec in streams:
            cfg = stream_config(spec, limits)
            try:
                await js.add_stream(cfg)
            except BadRequestError:  # it exists with another configuration (e.g. without limits)
                await update_keeping_messages(js, cfg)
    finally:
        await nc.close()


async def update_keeping_messages(js: JetStreamContext, cfg: StreamConfig) -> StreamConfig:
    """Update an existing stream to ``cfg``, but never so that the update itself removes a stored message.

    nats-server enforces a lowered per-subject or age limit on update by deleting, whatever the discard
    policy (a lowered message or byte limit under discard new only refuses new messages). So a subject
    already holding more than ``max_msgs_per_subject`` keeps its count as its limit, and when the oldest
    message is older than ``max_age`` every stored message is given a full ``max_age`` more (the age limit
    is not raised again while it still covers them). Running the operator's command again once those
    are consumed and gone brings the limits down to the plan's. Returns what was set."""
    name = cfg.name or ""
    info = await js.stream_info(name, subjects_filter=">")
    state, current = info.state, info.config
    kept = cfg
    most = max((state.subjects or {}).values(), default=0)
    if cfg.max_msgs_per_subject and 0 < cfg.max_msgs_per_subject < most:
        kept = kept.evolve(max_msgs_per_subject=most)
    if cfg.max_age and state.messages:
        oldest = await js.get_msg(name, seq=state.first_seq)
        age = time.time() - oldest.time.timestamp() if oldest.time else 0.0
        if age >= cfg.max_age:
            have = current.max_age or 0.0
            kept = kept.evolve(max_age=have if have > age else age + cfg.max_age)
    await js.update_stream(kept)
    return kept


class NatsTransport:
    def __init__(self, nc: Client, name: str, retry: RetryPolicy | None = None, limits: Limits = DEFAULT_LIMITS) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.name = name
        self.retry = retry or RetryPolicy.from_limits(limits)
        self.limits = limits
        self._tasks: list[asyncio.Task[None]] = []
        self._fetching: set[str] = set()  # durable consumers whose last pull the server answered
        self.last_error = ""

    @classmethod
    async def connect(cls, url: str, name: str, inbox_prefix: str = "_INBOX", *, retry: RetryPolicy | None = None,
                      limits: Limits = DEFAULT_LIMITS, seed_file: str | None = None,
                      ca_file: str | None = None) -> NatsTransport:
        """``inbox_prefix``: where replies and pull deliveries come; the server lets a node subscribe
        only under its own (nodes.natsconf.inbox_prefix). ``url``: one server or several (``servers``).
        ``seed_file``, ``ca_file``: the node's nkey and the deployment CA (``connect_options``); without
        them, a password in the URL."""
        policy = retry or RetryPolicy.from_limits(limits)
        attempt = 0
        while True:
            try:
                nc = await nats.connect(servers(url), name=name, max_reconnect_attempts=-1, reconnect_time_wait=0.5,
                                        connect_timeout=5, allow_reconnect=True, inbox_prefix=inbox_prefix,
                                        **connect_options(seed_file, ca_file))
                break
            except (AuthorizationError, ssl.SSLCertVerificationError):
                raise  # wrong credentials, or a server the CA did not certify: no wait makes them right
            except (NatsError, OSError, TimeoutError):
                # The server is not up yet, or too busy to finish the handshake in time (a province's hosts
                # connecting thousands of nodes at once: "Authentication Timeout"): wait and try again.
                attempt += 1
                if attempt >= limits.catch_up_attempts:
                    raise
                await policy.pause(attempt)
        return cls(nc, name, retry, limits)

    @property
    def connected(self) -> bool:
        return bool(self.nc.is_connected)

    def consuming(self, durable: str) -> bool:
        """The durable consumer is subscribed and its last pull was answered (messages, or none yet):
        what it is owed is on its way."""
        return self.connected and durable in self._fetching

    async def ensure_streams(self) -> None:
        """Check that the two streams exist before publishing or consuming.

        A node's account may read their info but not create or change them (nodes.natsconf): the
        operator made them. Where a connection may (a bare server, as some tests use), a missing stream
        is created, with this node's limits. A stream without limits (made by an older version) is
        reported, not changed: the operator's ``appraise deploy nats-streams`` updates it."""
        for stream, subject in STREAMS.items():
            attempt = 0
            while True:
                try:
                    info = await self.js.stream_info(stream)
                    break
                except NotFoundError:
                    info = None
                    break
                except (NatsTimeoutError, TimeoutError) as exc:
                    # A server answering thousands of nodes starting at once (a province's hosts) may be
                    # slow to answer: wait and ask again rather than fail the node's start.
                    attempt += 1
                    if attempt >= self.limits.catch_up_attempts:
                        raise
                    self.last_error = f"stream info {stream}: {type(exc).__name__}"
                    await self.retry.pause(attempt)
            if info is None:
                await self._create(stream, subject)
                continue
            lacking = unbounded(info.config)
            if lacking:
                self.last_error = (f"流 {stream} 没有限额 {', '.join(lacking)}；请运维运行 appraise deploy nats-streams "
                                   f"(stream {stream} has no limit on {', '.join(lacking)}; the operator should update it)")
                log.warning("%s", self.last_error)

    async def _create(self, stream: str, subject: str) -> None:
        try:
            await self.js.add_stream(stream_config({"name": stream, "subjects": [subject]}, self.limits))
        except BadRequestError:
            await self.js.stream_info(stream)  # another connection created it first: that is the shared stream
        except (ServiceUnavailableError, NatsTimeoutError, TimeoutError):
            # A node's user may not send STREAM.CREATE (the server drops it: no answer), nor does its
            # account import it (no responder).
            raise TransportFailure(f"流 {stream} 不存在，本节点无权创建；请运维运行 appraise deploy nats-streams "
                                   f"(stream {stream} does not exist and this node may not create it; "
                                   "the operator creates the streams)", code="transport.no_stream") from None

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
        self._fetching.add(durable)
        while True:
            try:
                # Returns at once with what is there (up to ``batch``), or waits for the next one.
                msgs = await sub.fetch(batch=batch, timeout=5)
            except (TimeoutError, NatsTimeoutError, FetchTimeoutError):
                self._fetching.add(durable)
                continue
            except asyncio.CancelledError:
                self._fetching.discard(durable)
                raise
            except Exception as exc:
                self._fetching.discard(durable)
                failures += 1
                self.last_error = f"fetch {durable}: {exc}"
                await self.retry.pause(failures)
                continue
            self._fetching.add(durable)
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
