"""The node's composition root: it builds one service per role, hands each its dependencies
(the store's repositories, the one clock, the transports, the limits, the retry policy), wires
the transports' handlers to them, and owns the lifecycle (start, tasks, signals, stop).

Nothing below this module knows how the node is assembled; nothing imports it but the entry
points (``nodes/__main__.py``, ``appraise node run``) and tests (docs/design.md §2).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn
from litestar import Litestar

from gateway.app import create_app, node_scope
from gateway.deps import Services
from nodes.clock import Clock, system_clock
from nodes.config import NodeConfig
from nodes.natsconf import inbox_prefix
from nodes.services.accounts import AccountService
from nodes.services.appeals import AppealService
from nodes.services.audit_log import AuditService
from nodes.services.baseline import GrowthBaseline
from nodes.services.cascade import CascadeService
from nodes.services.context import Health, NodeContext, Tasks, Wakeups
from nodes.services.divisions import BaseSource, DivisionChangeService, table_base
from nodes.services.entry import EntryService
from nodes.services.feedback import FeedbackService
from nodes.services.intake import IntakeService
from nodes.services.metrics import NodeMetrics, host_registry
from nodes.services.outbox import OutboxRelay
from nodes.services.public_site import PublicSite
from nodes.services.publication import PublicationService
from nodes.services.query import QueryService
from nodes.services.read_models import ReadModels
from nodes.services.rectification import RectificationService
from nodes.services.reports import ReportService
from nodes.services.results import ResultsService
from nodes.services.results_use import ResultsUseService
from nodes.services.review import ReviewService
from nodes.services.scoring import ScoringService
from nodes.services.trust import HeartbeatService, ParentWatch
from nodes.store import Store
from proto.appraisal.v1 import appraisal_pb2 as pb
from sync.identity import Me
from sync.ports import Occurrence
from sync.refusals import from_nats, record_alone
from sync.retry import RetryPolicy
from sync.transport.grpc import FederationServicer, RateLimit, start_server
from sync.transport.grpc_metrics import interceptor
from sync.transport.nats import STREAM_CASCADE, STREAM_RESULTS, NatsTransport

log = logging.getLogger("fedappraisal.node")


class QuietServer(uvicorn.Server):
    """uvicorn inside a node or a host: the node (or host), not uvicorn, owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class NatsLink:
    """The NATS transport exists only after start(); services that publish hold this instead."""

    def __init__(self) -> None:
        self.nats: NatsTransport | None = None

    def _get(self) -> NatsTransport:
        if self.nats is None:
            raise RuntimeError("NATS is not connected yet")
        return self.nats

    async def publish(self, subject: str, payload: bytes, msg_id: str) -> None:
        await self._get().publish(subject, payload, msg_id)

    async def announce(self, subject: str, payload: bytes) -> None:
        await self._get().announce(subject, payload)

    @property
    def last_error(self) -> str:
        return self.nats.last_error if self.nats is not None else ""

    @property
    def connected(self) -> bool:
        return self.nats is not None and self.nats.connected

    def consuming(self, durable: str) -> bool:
        return self.nats is not None and self.nats.consuming(durable)


@dataclass
class NodeServices:
    context: NodeContext
    outbox: OutboxRelay
    heartbeat: HeartbeatService
    watch: ParentWatch
    cascade: CascadeService
    divisions: DivisionChangeService
    scoring: ScoringService
    results: ResultsService
    entry: EntryService
    review: ReviewService
    query: QueryService
    read: ReadModels
    reports: ReportService
    audit: AuditService
    metrics: NodeMetrics
    accounts: AccountService
    intake: IntakeService
    publication: PublicationService
    feedback: FeedbackService
    results_use: ResultsUseService
    appeals: AppealService
    rectification: RectificationService
    public_site: PublicSite


@dataclass
class FederationHandlers:
    """The gRPC Federation service's methods, each answered by the service of its role."""

    services: NodeServices

    async def fetch_frameworks(self, requester: str, cycle: str) -> tuple[list[bytes], bytes]:
        return await self.services.cascade.for_child(requester, cycle)

    async def submit_results(self, message: bytes, caller: str) -> tuple[bool, str]:
        return await self.services.results.submit(message, caller)

    async def query(self, request: pb.QueryRequest) -> pb.QueryReply:
        return await self.services.query.query(request)

    async def fetch_bundles(self, requester: str, after_seq: int) -> list[bytes]:
        return await self.services.results.own_bundles(requester, after_seq)

    async def report(self, message: bytes, caller: str | None) -> tuple[bool, str]:
        return await self.services.reports.take(message, caller)

    async def anchor(self, requester: str) -> bytes:
        return await self.services.reports.anchor(requester)


def build_services(cfg: NodeConfig, store: Store, clock: Clock = system_clock,
                   transport: NatsLink | None = None, divisions_base: BaseSource | None = None) -> NodeServices:
    """Every service of one node, wired; no I/O happens here. ``divisions_base``: the tree the node's
    division lineage starts from (default: the newest division table on hand, nodes/divisions.py)."""
    me = Me(code=cfg.code, name=cfg.name, level=cfg.level, path=cfg.node_path, key=cfg.key, chain=cfg.chain,
            root=cfg.root, parent=cfg.parent.code if cfg.parent else None,
            children={c.code: c.name for c in cfg.children}, limits=cfg.limits)
    ctx = NodeContext(cfg=cfg, me=me, store=store, clock=clock, limits=cfg.limits, wakeups=Wakeups(),
                      health=Health(), tasks=Tasks())
    late = transport or NatsLink()
    store.on_commit.append(ctx.wakeups.outbox.set)
    retry = RetryPolicy.from_limits(cfg.limits)
    heartbeat = HeartbeatService(ctx, late.announce)
    known = [(cfg.code, cfg.name), *((p.code, p.name) for p in (cfg.parent,) if p is not None),
             *((c.code, c.name) for c in cfg.children)]
    divisions = DivisionChangeService(store, me, clock, divisions_base or table_base(me, known))
    cascade = CascadeService(ctx, heartbeat.trust_update, divisions)
    divisions.on_change.append(cascade.follow_tree)
    watch = ParentWatch(ctx, cascade.take, RetryPolicy.from_limits(cfg.limits, attempts=cfg.limits.catch_up_attempts),
                        stream_live=lambda: late.consuming(f"casc-{me.code}"))
    scoring = ScoringService(ctx, GrowthBaseline(me.code, divisions))
    results = ResultsService(ctx, scoring)
    reports = ReportService(ctx, behind=results.pull)
    entry = EntryService(ctx, scoring)
    appeals = AppealService(ctx)
    publication = PublicationService(ctx, on_publish=[appeals.on_published, divisions.on_published])
    return NodeServices(
        context=ctx, outbox=OutboxRelay(ctx, late.publish, retry), heartbeat=heartbeat, watch=watch, cascade=cascade,
        divisions=divisions,
        scoring=scoring, results=results, entry=entry,
        review=ReviewService(ctx, scoring), query=QueryService(ctx), read=ReadModels(ctx, watch, late, reports),
        reports=reports, audit=AuditService(ctx), metrics=NodeMetrics(ctx, reports=reports, transport=late),
        accounts=AccountService(ctx, cfg.web),
        intake=IntakeService(ctx, scoring, sign_own=entry.enter_values),
        publication=publication, appeals=appeals,
        results_use=ResultsUseService(ctx),
        rectification=RectificationService(ctx),
        public_site=PublicSite(ctx, publication),
        feedback=FeedbackService(ctx),
    )


def gateway_services(s: NodeServices) -> Services:
    return Services(node=s.context, read=s.read, cascade=s.cascade, entry=s.entry, review=s.review,
                    heartbeat=s.heartbeat, query=s.query, audit=s.audit, metrics=s.metrics,
                    accounts=s.accounts, intake=s.intake, publication=s.publication,
                    results_use=s.results_use, appeals=s.appeals, rectification=s.rectification,
                    public_site=s.public_site, feedback=s.feedback, divisions=s.divisions)


class NodeRuntime:
    """One node process: store, keys, NATS, gRPC and the HTTP gateway in one asyncio loop."""

    def __init__(self, cfg: NodeConfig, store: Store, clock: Clock = system_clock) -> None:
        self.cfg = cfg
        self.store = store
        self._transport = NatsLink()
        self.services = build_services(cfg, store, clock, self._transport)
        self.nats: NatsTransport | None = None
        self.grpc_server: object = None
        self.grpc_port = 0
        self.http: uvicorn.Server | None = None
        self._http_task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    @property
    def transport(self) -> NatsLink:
        """The node's NATS link (connected after start)."""
        return self._transport

    @property
    def ctx(self) -> NodeContext:
        return self.services.context

    async def start(self) -> None:
        """The node alone in its process: its own gRPC and HTTP listeners."""
        await self.start_core()
        metrics = self.services.metrics
        metrics.process = host_registry()
        self.grpc_server, self.grpc_port = await start_server(self.cfg.grpc_listen, self.servicer(), self.cfg.tls,
                                                              max_message=self.cfg.limits.grpc_message_bytes,
                                                              interceptors=[interceptor(metrics.registry)])
        self.ctx.readiness.grpc_serving = True
        host, _, port = self.cfg.http_listen.rpartition(":")
        config = uvicorn.Config(self.app(), host=host, port=int(port), log_level="warning",
                                lifespan="on", access_log=False)
        self.http = QuietServer(config)
        self._http_task = asyncio.create_task(self.http.serve(), name="http")
        # Everything loaded so far lives as long as the node: out of the collector's way, so that its
        # full collections under load scan only what requests allocate (fewer long pauses at p99).
        gc.freeze()

    def servicer(self) -> FederationServicer:
        """What answers this node's gRPC calls, whichever listener they arrive on (alone, or a host's)."""
        me, limits = self.ctx.me, self.cfg.limits
        return FederationServicer(FederationHandlers(self.services), authenticated=self.cfg.tls is not None,
                                  me=me.code, query_limit=RateLimit(limits.query_rate, limits.query_burst))

    def app(self) -> Litestar:
        """This node's gateway (pages and API) when it runs alone."""
        return create_app(gateway_services(self.services))

    def gateway_scope(self) -> dict[str, Any]:
        """This node's entry in a host's shared gateway application (gateway.deps.NODE_SCOPE)."""
        return node_scope(gateway_services(self.services))

    async def start_core(self) -> None:
        """Trust, NATS and the node's own tasks: everything but listeners (a host brings its own)."""
        s, ctx, me, limits = self.services, self.ctx, self.ctx.me, self.cfg.limits
        async with self.store.read() as r:
            me.trust.load([row.envelope for row in await r.trust.revocation_lists()],
                          [(row.code, row.serial, row.keyid) for row in await r.trust.known_keys()])
        ctx.readiness.trust_loaded = True
        retry = RetryPolicy.from_limits(limits)
        self.nats = await NatsTransport.connect(self.cfg.nats_url, f"fedappraisal-{me.code}", inbox_prefix(me.code),
                                                retry=retry, limits=limits, seed_file=self.cfg.nats_seed_file or None,
                                                ca_file=self.cfg.nats_ca_file or None)
        self._transport.nats = self.nats
        await self.nats.ensure_streams()
        if me.parent is not None:
            self.nats.consume(STREAM_CASCADE, f"casc-{me.code}", me.parent_cascade_subject(), s.cascade.on_batch,
                              self.gave_up)
        if me.children:
            self.nats.consume(STREAM_RESULTS, f"res-{me.code}", me.children_results_filter(), s.results.on_batch,
                              self.gave_up, batch=limits.fetch_batch)
        ctx.tasks.spawn(s.outbox.run(), name="outbox-relay")
        ctx.tasks.spawn(s.audit.run(), name="audit")
        if me.parent is not None:
            await self.nats.listen("hb." + ".".join(me.path[:-1]), s.watch.on_heartbeat)
            ctx.tasks.spawn(s.watch.catch_up(), name="catch-up")
            ctx.tasks.spawn(s.reports.run(), name="report-up")
        if me.children:
            ctx.tasks.spawn(s.heartbeat.run(), name="heartbeat")
        ctx.wakeups.outbox.set()

    async def gave_up(self, subject: str, data: bytes, reason: str) -> None:
        """A stream message that could never be settled: audited and shown in the sync status."""
        ctx = self.ctx
        ctx.health.give_up(f"deliver {subject}", reason, ctx.clock())
        await record_alone(self.store, ctx.me, [Occurrence(
            ctx.me.code, "reject.undeliverable", subject, from_nats(subject), "transport.undeliverable",
            {"reason": reason, "bytes": len(data), "code": "transport.undeliverable"})], ctx.clock())

    async def run_until_stopped(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._stop.set)
        await self._stop.wait()
        await self.stop()

    async def stop(self) -> None:
        if self.http is not None:
            self.http.should_exit = True
        tasks = list(self.ctx.tasks.running)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.services.reports.stop()
        await self.ctx.channels.close()
        if self._http_task is not None:
            await asyncio.gather(self._http_task, return_exceptions=True)
        if self.nats is not None:
            await self.nats.close()
        if self.grpc_server is not None:
            await self.grpc_server.stop(grace=1)  # type: ignore[attr-defined]
        await self.store.close()


async def run_node(cfg: NodeConfig) -> None:
    store = await Store.open(cfg.store_url, cfg.limits.store_connections)
    node = NodeRuntime(cfg, store)
    await node.start()
    log.info("node %s (%s) up: grpc %s http %s", cfg.code, cfg.name, cfg.grpc_listen, cfg.http_listen)
    await node.run_until_stopped()
