"""Prometheus metrics of one node, in a registry of its own (several nodes may share a process, in
the tests and on a node host; the global default registry would mix them).

Two kinds of figures:

* **Read from the store at each scrape**: refusals (the audit counters, sync/refusals.py), result
  bundles per child (taken into its chain, rejected, last sequence number, when the last came, how
  many the child says it signed that this node does not hold), the outbox, the audit chain's head
  and verified checkpoint, and per descendant its cascade state, the framework versions it holds
  against those its parent issued to it, and the audit head its report anchored here. They are the
  same exact numbers as ``/api/v1/sync`` and the audit log, kept across restarts, never counting a
  batch whose transaction rolled back, so the protocol code in ``sync/`` needs no metrics handle.
* **Kept in memory by this process**: latencies (HTTP per route template, gRPC per method), which
  only the process sees. They start at zero on restart, as Prometheus expects of a counter.

Every label is bounded by the topology or by code: child and descendant codes (what this node's
configuration and the signed reports name), route templates (never the path a client sent), gRPC
methods that have a handler, status codes, cycles and classes of issued frameworks. No user id,
no URL path, no free text.

A node host renders many nodes in one exposition: :func:`collect_all` gives every sample of every
node a constant ``node`` label and merges the families of one name (the format allows each name
once).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from nodes.repositories.audit import CounterRecord
from nodes.services.context import NodeContext, framework_of
from sync.ports import FrameworkRecord
from sync.refusals import kind
from sync.reports import DescendantState, Ref, Report, cascade_states

PREFIX = "fedappraisal"
FLAGGED = f"{PREFIX}_flagged_messages"  # exposed as ..._total

# Seconds. HTTP: a page or an API call on a node (tens of ms) up to a slow export; gRPC: a
# submission or a report (ms) up to a forwarded drill-down over slow links (seconds).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class TransportState(Protocol):
    @property
    def connected(self) -> bool: ...


class SentReports(Protocol):
    """The node's report sender (nodes/services/reports.py): when the parent last took its report,
    i.e. last anchored this node's audit head."""

    @property
    def last_sent_at(self) -> int: ...


@dataclass
class Snapshot:
    """What one scrape read from the store (then rendered with no await in between, so two scrapes
    cannot interleave their snapshots)."""

    now: int = 0
    counters: list[CounterRecord] = field(default_factory=list)
    bundles: dict[str, dict[str, int]] = field(default_factory=dict)  # child → BundleRepository.summary
    reported_seq: dict[str, int] = field(default_factory=dict)  # child → the last bundle it says it signed
    outbox: dict[str, dict[str, int]] = field(default_factory=dict)  # subject → OutboxRepository.summary
    audit_head: int = 0
    audit_verified: int = 0
    descendants: list[DescendantState] = field(default_factory=list)


def stream_of(subject: str) -> str:
    """The outbox subject's kind: bounded, where the subject itself carries the node path."""
    head = subject.split(".", 1)[0]
    return {"res": "results", "casc": "cascade"}.get(head, "other")


class _FromStore(Collector):
    def __init__(self, metrics: NodeMetrics) -> None:
        self.m = metrics
        self.snap = Snapshot()

    def collect(self) -> Iterator[Metric]:
        s, m = self.snap, self.m
        ctx = m.ctx
        me = ctx.me
        info = GaugeMetricFamily(f"{PREFIX}_node_info", "本节点 (this node): 区划代码、层级、上级 (code, level, parent)",
                                 labels=["code", "level", "parent"])
        info.add_metric([me.code, me.level, me.parent or ""], 1)
        yield info
        yield from self._flagged(s.counters)
        yield from self._children(s)
        yield from self._outbox(s.outbox)
        head = GaugeMetricFamily(f"{PREFIX}_audit_head_seq", "本节点审计链最后一条的序号 (the last sequence number of this "
                                 "node's audit chain)")
        head.add_metric([], s.audit_head)
        yield head
        verified = GaugeMetricFamily(f"{PREFIX}_audit_verified_seq", "审计链已核验至的序号 (the audit chain is verified up "
                                     "to this sequence number)")
        verified.add_metric([], s.audit_verified)
        yield verified
        if m.reports is not None and me.parent is not None:
            sent = GaugeMetricFamily(f"{PREFIX}_report_last_sent_timestamp_seconds",
                                     "上级最近一次接收本节点状态报告（即锚定审计链头）的时间 (when the parent last took this "
                                     "node's report, anchoring its audit head; 0: not yet)")
            sent.add_metric([], m.reports.last_sent_at)
            yield sent
        if m.transport is not None:
            nats = GaugeMetricFamily(f"{PREFIX}_nats_connected", "NATS 已连接 (1: connected to NATS)")
            nats.add_metric([], 1 if m.transport.connected else 0)
            yield nats
        if me.children:
            yield from self._descendants(s.descendants)

    @staticmethod
    def _flagged(rows: list[CounterRecord]) -> Iterator[Metric]:
        family = CounterMetricFamily(
            FLAGGED, "被拒绝、重放、缺号或分叉的消息，按发送方与类别 "
                     "(messages rejected, replayed, out of sequence or forked, by sender and kind)",
            labels=["sender", "kind"])
        sums: dict[tuple[str, str], int] = {}
        for r in rows:
            key = (r.sender, kind(r.action, r.code))
            sums[key] = sums.get(key, 0) + r.total
        for (sender, k), total in sorted(sums.items()):
            family.add_metric([sender, k], total)
        yield family

    def _children(self, s: Snapshot) -> Iterator[Metric]:
        children = [c.code for c in self.m.ctx.cfg.children]
        if not children:
            return
        taken = CounterMetricFamily(f"{PREFIX}_child_bundles", "下级结果包：已接入其链的数量（其速率即接收速率） "
                                    "(result bundles taken into each child's chain; its rate is the ingest rate)",
                                    labels=["child"])
        rejected = CounterMetricFamily(f"{PREFIX}_child_bundles_rejected", "下级结果包：接入但内容被拒的数量 "
                                       "(result bundles taken into the chain whose content was rejected)",
                                       labels=["child"])
        seq = GaugeMetricFamily(f"{PREFIX}_child_last_bundle_seq", "下级最近一个结果包的序号 (the child's last bundle's "
                                "sequence number held here)", labels=["child"])
        at = GaugeMetricFamily(f"{PREFIX}_child_last_bundle_timestamp_seconds", "下级最近一个结果包到达的时间 (when the "
                               "child's last bundle arrived)", labels=["child"])
        age = GaugeMetricFamily(f"{PREFIX}_child_last_bundle_age_seconds", "距下级最近一个结果包到达的秒数 (seconds since "
                                "the child's last bundle arrived; absent before the first)", labels=["child"])
        missing = GaugeMetricFamily(f"{PREFIX}_child_bundles_missing", "下级报告已签发、本节点尚未持有的结果包数 "
                                    "(bundles the child's signed report says it sent that are not held here: the lag)",
                                    labels=["child"])
        for code in children:
            held = s.bundles.get(code, {"bundles": 0, "last_seq": 0, "last_at": 0, "rejected": 0})
            taken.add_metric([code], held["bundles"])
            rejected.add_metric([code], held["rejected"])
            seq.add_metric([code], held["last_seq"])
            if held["last_at"]:
                at.add_metric([code], held["last_at"])
                age.add_metric([code], max(0, s.now - held["last_at"]))
            missing.add_metric([code], max(0, s.reported_seq.get(code, 0) - held["last_seq"]))
        yield from (taken, rejected, seq, at, age, missing)

    @staticmethod
    def _outbox(rows: dict[str, dict[str, int]]) -> Iterator[Metric]:
        pending = GaugeMetricFamily(f"{PREFIX}_outbox_pending", "发件箱中尚未被 JetStream 确认的消息 (outbox messages not yet "
                                    "acknowledged by JetStream)", labels=["stream"])
        acked = CounterMetricFamily(f"{PREFIX}_outbox_acknowledged", "发件箱中已被 JetStream 确认的消息 (outbox messages "
                                    "acknowledged by JetStream)", labels=["stream"])
        last = GaugeMetricFamily(f"{PREFIX}_outbox_last_sent_timestamp_seconds", "最近一条消息被确认的时间 (when the last "
                                 "message was acknowledged)", labels=["stream"])
        sums: dict[str, list[int]] = {s: [0, 0, 0] for s in ("results", "cascade")}
        for subject, r in rows.items():
            row = sums.setdefault(stream_of(subject), [0, 0, 0])
            row[0] += r["pending"]
            row[1] += r["acknowledged"]
            row[2] = max(row[2], r["last_sent_at"])
        for stream, (p, a, t) in sorted(sums.items()):
            pending.add_metric([stream], p)
            acked.add_metric([stream], a)
            if t:
                last.add_metric([stream], t)
        yield from (pending, acked, last)

    @staticmethod
    def _descendants(states: list[DescendantState]) -> Iterator[Metric]:
        state = GaugeMetricFamily(f"{PREFIX}_descendant_cascade_state", "下级各节点的指标体系状态：current 最新、lagging 落后、"
                                  "refused 拒收、unreported 未报告，值为 1 (each descendant's cascade state, value 1)",
                                  labels=["descendant", "parent", "state"])
        version = GaugeMetricFamily(f"{PREFIX}_descendant_framework_version",
                                    "下级持有（已验证）的与其上级最新下发的指标体系版本 "
                                    "(framework version a descendant holds, verified, against the latest its parent "
                                    "issued to it; held 0: none)", labels=["descendant", "cycle", "class", "role"])
        anchor = GaugeMetricFamily(f"{PREFIX}_audit_anchor_seq", "本节点为下级锚定的审计链头序号（其最近一份签名报告） "
                                   "(the audit head a descendant's latest signed report anchored here)",
                                   labels=["descendant"])
        anchor_at = GaugeMetricFamily(f"{PREFIX}_audit_anchor_timestamp_seconds", "该报告的签署时间 (when that report was "
                                      "signed)", labels=["descendant"])
        for d in states:
            state.add_metric([d.node, d.parent, d.state], 1)
            held = {(r.issuer, r.cycle, r.unit_class): r.version for r in d.held}
            for e in d.expected:
                version.add_metric([d.node, e.cycle, e.unit_class, "expected"], e.version)
                version.add_metric([d.node, e.cycle, e.unit_class, "held"],
                                   held.get((e.issuer, e.cycle, e.unit_class), 0))
            if d.reported_at:
                anchor.add_metric([d.node], d.audit_seq)
                anchor_at.add_metric([d.node], d.reported_at)
        yield from (state, version, anchor, anchor_at)


def latest_refs(rows: Iterable[FrameworkRecord]) -> list[Ref]:
    """The latest issued framework per (issuer, cycle, class), with the units it addresses (as the
    node's own report states them, nodes/services/reports.py)."""
    out: dict[tuple[str, str, str], Ref] = {}
    for f in rows:
        key = (f.issuer, f.cycle, f.unit_class)
        if key not in out or f.version > out[key].version:
            out[key] = Ref(f.issuer, f.cycle, f.unit_class, f.version, f.digest,
                           tuple(u.code for u in framework_of(f).units))
    return list(out.values())


class NodeMetrics:
    """``reports``, ``transport``: the runtime's report sender and NATS link, when it has them (the
    metrics then say when the parent last anchored this node, and whether NATS is connected)."""

    def __init__(self, ctx: NodeContext, *, reports: SentReports | None = None,
                 transport: TransportState | None = None) -> None:
        self.ctx = ctx
        self.reports = reports
        self.transport = transport
        self.registry = CollectorRegistry(auto_describe=False)
        # A node alone in its process shows the process too (host_registry()); a host shows it once.
        self.process: CollectorRegistry | None = None
        self._store = _FromStore(self)
        self.registry.register(self._store)
        self.http = Histogram(f"{PREFIX}_http_request_duration_seconds",
                              "HTTP 请求耗时，按路由模板、方法与状态码 (HTTP request latency by route template, method and "
                              "status)", ["route", "method", "status"], registry=self.registry, buckets=LATENCY_BUCKETS)

    async def refresh(self) -> None:
        """Read what the store-backed families show (one read transaction)."""
        ctx = self.ctx
        children = {c.code for c in ctx.cfg.children}
        async with ctx.store.read() as r:
            counters = await r.audit.counters(limit=100_000)
            bundles = {k: v for k, v in (await r.bundles.summary()).items() if k in children}
            outbox = await r.outbox.summary()
            head, _ = await r.audit.head()
            checkpoint = await r.audit.checkpoint()
            issued = await r.frameworks.list(role="issued") if children else []
            reports: dict[str, Report] = await r.reports.all() if children else {}
        states = cascade_states(ctx.me.code, latest_refs(issued), [c.code for c in ctx.cfg.children], reports) \
            if children else []
        self._store.snap = Snapshot(
            now=ctx.clock(), counters=counters, bundles=bundles,
            reported_seq={code: rep.bundle_seq for code, rep in reports.items() if rep.via == "" and code in children},
            outbox=outbox, audit_head=head, audit_verified=checkpoint[0] if checkpoint else 0, descendants=states)

    async def families(self, node_label: bool = False) -> list[Metric]:
        """Every family of this node, read now; with ``node_label``, each sample labelled
        ``node=<code>`` (a host's exposition of many nodes)."""
        await self.refresh()
        got = list(self.registry.collect())  # no await since refresh: this scrape's snapshot
        return [with_label(m, "node", self.ctx.me.code) for m in got] if node_label else got

    async def exposition(self) -> bytes:
        """The text exposition format of this node alone, read now."""
        families = await self.families()
        if self.process is not None:
            families.extend(self.process.collect())
        return render(families)

    def observe_http(self, route: str, method: str, status: int, seconds: float) -> None:
        self.http.labels(route, method, str(status)).observe(seconds)


def with_label(m: Metric, name: str, value: str) -> Metric:
    out = Metric(m.name, m.documentation, m.type, m.unit)
    out.samples = [Sample(s.name, {name: value, **s.labels}, s.value, s.timestamp, s.exemplar) for s in m.samples]
    return out


class _Fixed(Collector):
    def __init__(self, families: Sequence[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families


def render(families: Sequence[Metric]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(families))
    return generate_latest(registry)


def merge(families: Iterable[Metric]) -> list[Metric]:
    """One family per name (the first one's help and type), the samples of all in order."""
    out: dict[str, Metric] = {}
    for m in families:
        held = out.get(m.name)
        if held is None:
            held = out[m.name] = Metric(m.name, m.documentation, m.type, m.unit)
        held.samples.extend(m.samples)
    return list(out.values())


async def collect_all(metrics: Sequence[NodeMetrics], host: CollectorRegistry | None = None) -> bytes:
    """One exposition for a host's nodes: every node's families with ``node=<code>``, merged by name,
    then the host's own registry as it is (process metrics, the shared gRPC listener's latencies,
    whose ``node`` label the interceptor sets itself: sync/transport/grpc_metrics.py).

    Nodes are read one after another: a scrape of a host is a background job, and reading 100
    stores at once would compete with the work the nodes are there for."""
    families: list[Metric] = []
    for m in metrics:
        families.extend(await m.families(node_label=True))
    if host is not None:
        families.extend(host.collect())
    return render(merge(families))


def host_registry() -> CollectorRegistry:
    """A host's (or a lone node's) own registry: the process's memory, CPU and file descriptors and
    the interpreter's garbage collection, once per process whatever the number of nodes in it."""
    from prometheus_client import GCCollector, PlatformCollector, ProcessCollector

    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry
