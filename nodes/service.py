"""The node process: store + keys + NATS + gRPC + HTTP gateway in one asyncio loop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import uvicorn

from aggregator.framework import (
    Framework,
    Unit,
    check_links,
    derive_child_framework,
    reportable_keys,
    valid_cycle,
    valid_period,
)
from aggregator.grading import repeated_grade_flags
from aggregator.numbers import parse_decimal, to_text
from aggregator.progress import warn
from aggregator.rollup import RollupIncompleteError, roll_up
from aggregator.scoring import appraise
from nodes.assessments import AssessmentError, merge, normalise, to_inputs
from nodes.config import NodeConfig
from nodes.framework_file import load_framework, pin_to_parent
from nodes.natsconf import inbox_prefix
from nodes.store import Store, Tx
from proto.appraisal.v1 import appraisal_pb2 as pb
from sync.approvals import Source
from sync.cascade_receiver import receive_cascade
from sync.cascade_sender import issue_framework
from sync.codec import Bundle, bundle_from_message, cascade_envelopes, framework_from_envelope
from sync.identity import Me, Outcome
from sync.results_receiver import pull_missing, receive_results, receive_results_batch
from sync.results_sender import bundles_for_parent, send_bundle
from sync.transport.grpc import FederationClient, FederationServicer, start_server
from sync.transport.nats import BATCH, STREAM_CASCADE, STREAM_RESULTS, NatsTransport
from sync.trust import TrustError
from sync.trust_updates import Pulse, heartbeat_update, receive_trust_update, revoke

log = logging.getLogger("fedappraisal.node")


class _QuietServer(uvicorn.Server):
    """uvicorn inside the node: the node, not uvicorn, owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class NodeError(ValueError):
    """A request the node refuses; the message is for the person who made it."""


def framework_of(row: Any) -> Framework:
    return framework_from_envelope(row.envelope)


def bundle_of(message: bytes) -> Bundle:
    """Our own stored bundle (already trusted) back to its fields."""
    return bundle_from_message(message)


class Node:
    def __init__(self, cfg: NodeConfig, store: Store) -> None:
        self.cfg = cfg
        self.store = store
        self.me = Me(
            code=cfg.code, name=cfg.name, level=cfg.level, path=cfg.node_path, key=cfg.key, chain=cfg.chain,
            root=cfg.root, parent=cfg.parent.code if cfg.parent else None,
            children={c.code: c.name for c in cfg.children},
        )
        self.nats: NatsTransport | None = None
        self.grpc_server: Any = None
        self.grpc_port = 0
        self.http: uvicorn.Server | None = None
        self._outbox_wakeup = asyncio.Event()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.started_at = time.time()
        self.last_error = ""
        self.send_errors: dict[str, tuple[int, str]] = {}  # subject → (when, error) until a send succeeds
        self._pulling: set[str] = set()  # children whose missing bundles are being pulled
        self.pulse: Pulse | None = None  # the parent's last good heartbeat
        self.pulse_error = ""
        self._heartbeat_wakeup = asyncio.Event()
        self._catching_up = False
        self._asked: set[str] = set()  # frameworks a heartbeat named that we asked the parent for

    @staticmethod
    def now() -> int:
        return int(time.time())

    def client(self, target: str, peer: str) -> FederationClient:
        """A gRPC client to node ``peer``; with TLS, its certificate must name that node."""
        return FederationClient(target, self.cfg.tls, peer)

    # ----------------------------------------------------------- lifecycle
    async def start(self) -> None:
        from gateway.app import create_app

        async with self.store.read() as r:
            self.me.trust.load([row.envelope for row in await r.revocation_lists()],
                               [(row.code, row.serial, row.keyid) for row in await r.known_keys()])
        self.nats = await NatsTransport.connect(self.cfg.nats_url, f"fedappraisal-{self.me.code}",
                                                inbox_prefix(self.me.code))
        await self.nats.ensure_streams()
        servicer = FederationServicer(self.frameworks_for_child, self.submit_results, self.query, self.own_bundles,
                                      authenticated=self.cfg.tls is not None, me=self.me.code)
        self.grpc_server, self.grpc_port = await start_server(self.cfg.grpc_listen, servicer, self.cfg.tls)
        if self.me.parent is not None:
            self.nats.consume(STREAM_CASCADE, f"casc-{self.me.code}", self.me.parent_cascade_subject(),
                              self.on_cascade_batch, self.gave_up)
        if self.me.children:
            self.nats.consume(STREAM_RESULTS, f"res-{self.me.code}", self.me.children_results_filter(),
                              self.on_results_batch, self.gave_up, batch=BATCH)
        self._tasks.append(asyncio.create_task(self._relay(), name="outbox-relay"))
        if self.me.parent is not None:
            await self.nats.listen("hb." + ".".join(self.me.path[:-1]), self.on_heartbeat)
            self._tasks.append(asyncio.create_task(self._catch_up(), name="catch-up"))
        if self.me.children:
            self._tasks.append(asyncio.create_task(self._heartbeats(), name="heartbeat"))
        host, _, port = self.cfg.http_listen.rpartition(":")
        config = uvicorn.Config(create_app(self), host=host, port=int(port), log_level="warning",
                                lifespan="on", access_log=False)
        self.http = _QuietServer(config)
        self._tasks.append(asyncio.create_task(self.http.serve(), name="http"))
        self._outbox_wakeup.set()

    async def run_until_stopped(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._stop.set)
        await self._stop.wait()
        await self.stop()

    async def stop(self) -> None:
        if self.http is not None:
            self.http.should_exit = True
        for t in self._tasks:
            if t.get_name() != "http":
                t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.nats is not None:
            await self.nats.close()
        if self.grpc_server is not None:
            await self.grpc_server.stop(grace=1)
        await self.store.close()

    # ------------------------------------------------------------- outbox
    async def _relay(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._outbox_wakeup.wait(), timeout=1.0)
            self._outbox_wakeup.clear()
            try:
                async with self.store.read() as r:
                    rows = await r.pending_outbox()
            except Exception as exc:  # store briefly unavailable: try again on the next tick
                self.last_error = f"outbox: {exc}"
                continue
            stalled: set[str] = set()  # keep per-subject order: after a failure, that subject waits
            for row in rows:
                if row.subject in stalled:
                    continue
                try:
                    assert self.nats is not None
                    await self.nats.publish(row.subject, row.payload, row.msg_id)
                    async with self.store.tx() as tx:
                        await tx.mark_sent(row.id, self.now())
                    self.send_errors.pop(row.subject, None)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the row stays pending and is retried
                    stalled.add(row.subject)
                    self.send_errors[row.subject] = (self.now(), f"{type(exc).__name__}: {exc}"[:300])
                    self.last_error = f"outbox {row.subject}: {exc}"
                    log.warning("outbox relay: %s: %s", row.subject, exc)
            if stalled:
                await asyncio.sleep(0.5)

    async def _catch_up(self) -> None:
        """Ask the parent over gRPC for frameworks we may have missed, and for its trust update."""
        if self._catching_up:
            return
        self._catching_up = True
        client = self.client(self.cfg.parent_grpc, self.me.parent or "")
        try:
            for attempt in range(20):
                try:
                    messages, trust = await client.fetch_frameworks(self.me.code, timeout=3)
                    break
                except Exception as exc:
                    self.last_error = f"catch-up from {self.cfg.parent_grpc}: {exc}"
                    await asyncio.sleep(min(0.5 * (attempt + 1), 5))
            else:
                return
            if trust:
                await self.on_heartbeat(trust, catch_up=False)
            for data in messages:
                await self.on_cascade(None, data)
        finally:
            self._catching_up = False
            await client.close()

    # ---------------------------------------------------------- heartbeat
    async def _issued_refs(self) -> list[tuple[str, str, int, str]]:
        async with self.store.read() as r:
            rows = await r.frameworks(role="issued")
        latest: dict[tuple[str, str], Any] = {}
        for row in rows:
            key = (row.cycle, row.unit_class)
            if key not in latest or row.version > latest[key].version:
                latest[key] = row
        return [(row.cycle, row.unit_class, row.version, row.digest) for row in latest.values()]

    def trust_update(self, refs: list[tuple[str, str, int, str]],
                     returned: list[tuple[str, str, int, str, int]] | None = None) -> bytes:
        return heartbeat_update(self.me, refs, self.now(), ttl=3 * self.cfg.heartbeat_seconds, returned=returned or [])

    async def returned_notices(self) -> list[tuple[str, str, int, str, int]]:
        async with self.store.read() as r:
            rows = await r.bundles_by_status("returned", limit=500)
        return [(row.node, row.id, row.seq, row.reason, row.reviewed_at) for row in rows]

    async def _heartbeats(self) -> None:
        while True:
            try:
                assert self.nats is not None
                await self.nats.announce("hb." + ".".join(self.me.path),
                                         self.trust_update(await self._issued_refs(), await self.returned_notices()))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # children notice the silence; say why here
                self.last_error = f"heartbeat: {exc}"
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._heartbeat_wakeup.wait(), timeout=self.cfg.heartbeat_seconds)
            self._heartbeat_wakeup.clear()

    async def on_heartbeat(self, data: bytes, catch_up: bool = True) -> None:
        """``catch_up`` False: the update came with a gRPC catch-up reply and may be older than
        the last one from NATS; that is not a replay, so keep whichever is newer."""
        try:
            pulse, installed = await receive_trust_update(self.store, self.me, data, self.now(),
                                                          self.pulse if catch_up else None)
        except ValueError as exc:
            self.pulse_error = str(exc)[:300]
            log.warning("rejected heartbeat: %s", exc)
            return
        if self.pulse is None or pulse.issued_at >= self.pulse.issued_at:
            self.pulse = pulse
        self.pulse_error = ""
        if installed:
            self._heartbeat_wakeup.set()  # pass newer revocation lists on to our children at once
        missing = set(await self.missing_frameworks()) - self._asked
        if catch_up and missing:
            # Ask once per framework: one issued to a sibling class is named but never addressed to us.
            self._asked |= missing
            task = asyncio.create_task(self._catch_up(), name="catch-up")
            self._tasks.append(task)
            task.add_done_callback(self._tasks.remove)

    async def missing_frameworks(self) -> list[str]:
        """Frameworks the parent's last heartbeat names that this node does not hold."""
        if self.pulse is None:
            return []
        async with self.store.read() as r:
            return [d for *_, d in self.pulse.frameworks if await r.framework(d) is None]

    async def revoke(self, code: str, serial: int, reason: str, actor: str) -> int:
        """Revoke a child's certificate; the new list goes out with the next heartbeat, at once."""
        try:
            crl = await revoke(self.store, self.me, code, serial, reason, self.now(), actor)
        except TrustError as exc:
            raise NodeError(str(exc)) from None
        self._heartbeat_wakeup.set()
        return crl.version

    async def gave_up(self, subject: str, data: bytes, reason: str) -> None:
        async with self.store.tx() as tx:
            await tx.audit(self.me.code, "reject.undeliverable", subject, {"reason": reason, "bytes": len(data)},
                           self.now())

    # ------------------------------------------------------------ cascade
    async def on_cascade_batch(self, msgs: list[tuple[str, bytes]]) -> list[bool]:
        return [await self.on_cascade(subject, data) for subject, data in msgs]

    async def on_cascade(self, subject: str | None, data: bytes) -> bool:
        outcome = await receive_cascade(self.store, self.me, data, self.now(), self._after_framework, subject)
        self._log_outcome("framework", outcome)
        return not outcome.retry

    def _log_outcome(self, what: str, outcome: Outcome) -> None:
        if outcome.accepted and not outcome.duplicate:
            self._outbox_wakeup.set()  # after the commit, so the relay sees the new outbox rows
        if outcome.retry:
            log.info("%s not yet: %s", what, outcome.reason)
        elif not outcome.accepted:
            log.warning("rejected %s: %s", what, outcome.reason)
        elif not outcome.duplicate:
            log.info("accepted %s %s from %s", what, outcome.msg_id[:12], outcome.origin)

    async def _after_framework(self, tx: Tx, fw: Framework, fw_digest: str, upstream: list[bytes]) -> None:
        if not self.me.children:
            return
        units = tuple(Unit(c.code, c.name, self.cfg.child_class) for c in self.cfg.children)
        latest = await tx.latest_framework(self.me.code, fw.cycle, self.cfg.child_class or fw.unit_class)
        now = self.now()
        if latest is not None and latest.authored:
            # The office decomposed the parent's framework itself: never overwrite that automatically.
            # Say whether it still fits the new parent; the office publishes a new version when ready.
            problems = check_links(fw, fw_digest, pin_to_parent(framework_of(latest), fw, fw_digest), self.me.code)
            await tx.audit(self.me.code, "needs.redecomposition", latest.digest,
                           {"parent": fw_digest, "parent_version": fw.version, "still_fits": not problems,
                            "problems": [str(p) for p in problems[:20]]}, now)
            return
        try:
            child = derive_child_framework(
                fw, fw_digest, self.me.name, self.me.code, units, unit_class=self.cfg.child_class or fw.unit_class,
                issued_at=now, expires_at=fw.expires_at, version=(latest.version + 1) if latest is not None else 1,
            )
        except (ValueError, ArithmeticError, LookupError) as exc:
            # The parent's framework stands (it verified); the office decomposes it by hand.
            await tx.audit(self.me.code, "derive.failed", fw_digest, {"reason": str(exc)[:500]}, now)
            return
        await issue_framework(tx, self.me, child, upstream, now)

    async def publish_framework_text(self, path: Path) -> str:
        """Publish a framework file for this node's children: the province's starting move, or an
        office's own decomposition of its parent's framework (pinned to the one in force, links checked)."""
        units = tuple(Unit(c.code, c.name, self.cfg.child_class) for c in self.cfg.children)
        fw = load_framework(path, units=units, now=self.now())
        if fw.issuer != self.me.code:
            raise NodeError(f"{path}: issuer 为 {fw.issuer}，本节点是 {self.me.code} (a node publishes only its own frameworks)")
        unknown = [u.code for u in fw.units if u.code not in self.me.children]
        if unknown:
            raise NodeError(f"{path}: 单位 {', '.join(unknown)} 不是本节点的下级 (units outside this node's children)")
        async with self.store.tx() as tx:
            latest = await tx.latest_framework(fw.issuer, fw.cycle, fw.unit_class)
            if latest is not None and latest.version >= fw.version:
                raise NodeError(f"{path}: 版本 {fw.version} 不高于已发布的 v{latest.version}；请提高 version "
                                "(versions only go forward)")
            upstream: list[bytes] = []
            if self.me.parent is not None:
                received = list(await tx.frameworks(role="received", cycle=fw.cycle))
                if not received:
                    raise NodeError(f"{path}: 尚未收到上级 {fw.cycle} 年度指标体系，无法衔接 (no parent framework yet)")
                parent_row = received[-1]
                parent_fw = framework_of(parent_row)
                fw = pin_to_parent(fw, parent_fw, parent_row.digest)
                problems = check_links(parent_fw, parent_row.digest, fw, self.me.code)
                if problems:
                    raise NodeError("\n".join(f"{path}: {p}" for p in problems))
                upstream = cascade_envelopes(parent_row.cascade)
            digest = await issue_framework(tx, self.me, fw, upstream, self.now(), authored=True)
        self._outbox_wakeup.set()
        return digest

    async def frameworks_for_child(self, requester: str, cycle: str) -> tuple[list[bytes], bytes]:
        if requester not in self.me.children:
            return [], b""
        async with self.store.read() as r:
            rows = await r.frameworks(role="issued", cycle=cycle or None)
        messages = [row.cascade for row in rows if requester in {u.code for u in framework_of(row).units}]
        return messages, self.trust_update(await self._issued_refs(), await self.returned_notices())

    # ------------------------------------------------------------ results
    async def on_results_batch(self, msgs: list[tuple[str, bytes]]) -> list[bool]:
        """A fetched batch of children's bundles, taken in one transaction."""
        outcomes = await receive_results_batch(self.store, self.me, [(d, s) for s, d in msgs], self.now(),
                                               self._after_results, hold=self.hold)
        for outcome in outcomes:
            self._log_outcome("results", outcome)
            if outcome.retry and outcome.origin in self.me.children and outcome.origin not in self._pulling:
                # A gap: pull what is missing from the child directly, while the live stream goes on.
                self._pulling.add(outcome.origin)
                task = asyncio.create_task(self._pull_gap(outcome.origin), name=f"gap:{outcome.origin}")
                self._tasks.append(task)
                task.add_done_callback(self._tasks.remove)
        return [not o.retry for o in outcomes]

    async def _pull_gap(self, child: str) -> None:
        peer = next((c for c in self.cfg.children if c.code == child), None)
        client = self.client(peer.grpc, peer.code) if peer is not None and peer.grpc else None
        try:
            if client is None:
                return
            async def fetch(after_seq: int) -> list[bytes]:
                assert client is not None
                return await client.fetch_bundles(self.me.code, after_seq)

            outcomes = await pull_missing(self.store, self.me, child, fetch, self.now, self._after_results, BATCH,
                                          hold=self.hold)
            for outcome in outcomes:
                self._log_outcome("results (pulled)", outcome)
        except Exception as exc:  # the live stream's redelivery will ask again
            self.last_error = f"gap pull from {child}: {exc}"
            log.warning("pulling missing bundles from %s: %s", child, exc)
        finally:
            self._pulling.discard(child)
            if client is not None:
                await client.close()

    async def own_bundles(self, requester: str, after_seq: int) -> list[bytes]:
        return await bundles_for_parent(self.store, self.me, requester, after_seq)

    async def submit_results(self, data: bytes) -> tuple[bool, str]:
        outcome = await receive_results(self.store, self.me, data, self.now(), self._after_results, None, hold=self.hold)
        self._log_outcome("results", outcome)
        return outcome.accepted, outcome.reason

    @property
    def hold(self) -> bool:
        """review: manual — children's bundles wait for a person to approve them."""
        return self.cfg.review == "manual"

    async def review(self, child: str, bundle_id: str, decision: str, note: str, actor: str) -> str:
        """审核: approve a child's pending bundle (its values count, and this node's approval of it,
        signed with the reviewer's name, goes up with the roll-up) or return it for correction
        (the child learns it from the next heartbeat). Returns the bundle's new status."""
        if decision not in ("approve", "return"):
            raise NodeError("decision 应为 approve（通过）或 return（退回） (decision must be approve or return)")
        if decision == "return" and not note.strip():
            raise NodeError("退回须说明理由 (a return needs a reason)")
        now = self.now()
        async with self.store.tx() as tx:
            row = await tx.bundle(bundle_id[:64])
            if row is None or row.node != child or child not in self.me.children:
                raise NodeError(f"没有 {child[:12]} 的结果包 {bundle_id[:12]}… (no such bundle of that child)")
            if row.status != "pending":
                raise NodeError(f"该结果包的状态是 {row.status}，不在待审核中 (bundle is not pending review)")
            if decision == "return":
                await tx.review_bundle(row.id, "returned", actor[:64], note[:500], now)
                await tx.audit(actor, "review.return", row.id, {"node": child, "seq": row.seq, "reason": note[:500]}, now)
                status = "returned"
            else:
                later = [b for b in await tx.later_bundles(child, row.seq, row.cycle, row.period, row.framework_digest)
                         if b.status in ("accepted", "pending")]
                if later:
                    raise NodeError(f"{child} 已有更新的结果包（序号 {later[0].seq}），请审核最新的 "
                                    "(a later bundle supersedes this one)")
                bundle = bundle_of(row.message)
                await tx.put_values(node=child, cycle=bundle.cycle, period=bundle.period,
                                    framework_digest=bundle.framework_digest,
                                    values={k: to_text(v) for k, v in bundle.values.items()}, source="reported",
                                    bundle_id=row.id, now=now)
                await tx.review_bundle(row.id, "accepted", actor[:64], "", now)
                await tx.audit(actor, "review.approve", row.id, {"node": child, "seq": row.seq, "note": note[:500]}, now)
                await self.recompute(tx, bundle.cycle, bundle.period, bundle.framework_digest,
                                     cause=f"{actor} 审核通过 {child}#{row.seq} (approved)", actor=actor)
                status = "accepted"
        self._outbox_wakeup.set()
        self._heartbeat_wakeup.set()
        return status

    async def _after_results(self, tx: Tx, accepted: list[Bundle]) -> None:
        keys = dict.fromkeys((b.cycle, b.period, b.framework_digest) for b in accepted)
        for cycle, period, fw_digest in keys:
            cause = ", ".join(f"{b.node}#{b.seq}" for b in accepted
                              if (b.cycle, b.period, b.framework_digest) == (cycle, period, fw_digest))
            await self.recompute(tx, cycle, period, fw_digest, cause=f"结果包 (bundles) {cause}"[:500])

    async def recompute(self, tx: Tx, cycle: str, period: str, fw_digest: str, *, cause: str,
                        actor: str = "") -> None:
        """Score and rank the units of one issued framework, roll up, and report upwards if complete.
        Every change of a score, rank or grade is audited with ``cause`` (what triggered it)."""
        row = await tx.framework(fw_digest)
        if row is None:
            return
        fw = framework_of(row)
        now = self.now()
        raw = await tx.values(cycle, period, fw_digest, nodes=[u.code for u in fw.units])
        values = {unit: {k: parse_decimal(v, k) for k, v in vals.items()} for unit, vals in raw.items()}
        recorded = await tx.assessments(cycle, period)
        inputs = {u.code: to_inputs(values.get(u.code, {}), recorded.get(u.code)) for u in fw.units}
        try:
            scored = appraise(fw, inputs, datetime.fromtimestamp(now, UTC))
            rolled = roll_up(fw, values)
        except RollupIncompleteError:
            rolled = None
        except (ValueError, ArithmeticError, LookupError) as exc:
            # Nothing written yet: the values that came in stay taken, ingest goes on, and the office
            # sees why this framework cannot be scored.
            await tx.audit(actor or self.me.code, "recompute.failed", fw_digest,
                           {"cycle": cycle, "period": period, "cause": cause, "reason": str(exc)[:500]}, now)
            log.warning("cannot score %s %s: %s", fw_digest[:12], period, exc)
            return
        before = {r.unit: (r.score, r.rank, str(json.loads(r.explanation).get("grade", "")))
                  for r in await tx.scores(cycle, period) if r.framework_digest == fw_digest}
        changes = {}
        for s in scored:
            new = (to_text(s.score), s.rank, str(s.explain().get("grade", "")))
            old = before.get(s.unit)
            if old != new:
                changes[s.unit] = {k: [o, n] for k, o, n in zip(("score", "rank", "grade"), old or ("", 0, ""), new,
                                                                strict=True) if o != n}
        if changes:
            await tx.audit(actor or self.me.code, "score.change", fw_digest,
                           {"cycle": cycle, "period": period, "cause": cause, "changes": changes}, now)
        await tx.put_scores([
            {"unit": s.unit, "cycle": cycle, "period": period, "framework_digest": fw_digest,
             "score": to_text(s.score), "rank": s.rank,
             "explanation": json.dumps(s.explain(), ensure_ascii=False)} for s in scored])
        if rolled is None:
            return
        own: dict[str, Decimal] = {}
        for r in rolled:
            own[r.parent_indicator] = r.value
            own.update(r.extra)
        target_digest = fw.parent.digest if fw.parent is not None else fw_digest
        await tx.put_values(node=self.me.code, cycle=cycle, period=period, framework_digest=target_digest,
                            values={k: to_text(v) for k, v in own.items()}, source="rolled_up", bundle_id="", now=now)
        await tx.audit(self.me.code, "rollup", target_digest, {"cycle": cycle, "period": period,
                                                                 "values": {k: to_text(v) for k, v in own.items()}}, now)
        if self.me.parent is None:
            return
        last = await tx.last_bundle(self.me.code)
        if last is not None:
            prev = bundle_of(last.message)
            if (prev.cycle, prev.period, prev.framework_digest, prev.values) == (cycle, period, target_digest, own):
                return
        sources = [Source(r.node, r.id, r.seq, r.message, r.reviewer)
                   for r in await tx.source_bundles(cycle, period, fw_digest, [u.code for u in fw.units])]
        await send_bundle(tx, self.me, cycle=cycle, period=period, framework_digest=target_digest, values=own,
                          child_scores=tuple((s.unit, s.score, s.rank) for s in scored), now=now, sources=sources)

    async def enter_values(self, cycle: str, period: str, raw: dict[str, object], actor: str) -> str:
        """Values entered (and approved) at this node for the framework it received; signed and sent up."""
        if not valid_cycle(cycle) or not valid_period(period, cycle):
            raise NodeError(f"年度 {cycle[:16]!r} 或报告期 {period[:16]!r} 无效；报告期如 {cycle[:4]}-Y、-Q1、-M03 "
                            "(invalid cycle or period)")
        async with self.store.tx() as tx:
            received = await tx.frameworks(role="received", cycle=cycle)
            if not received:
                raise NodeError(f"尚未收到 {cycle} 年度的指标体系，无法报送 (no framework received for this cycle)")
            row = received[-1]
            fw = framework_of(row)
            leaves = reportable_keys(fw)
            values: dict[str, Decimal] = {}
            for code, v in raw.items():
                if code not in leaves:
                    raise NodeError(f"指标 {code} 不在 {fw.issuer} v{fw.version} 指标体系的末级指标中 (unknown indicator)")
                try:
                    values[code] = parse_decimal(v, f"指标 {code}")  # type: ignore[arg-type]
                except ValueError as exc:
                    raise NodeError(str(exc)) from None
            now = self.now()
            await tx.put_values(node=self.me.code, cycle=cycle, period=period, framework_digest=row.digest,
                                values={k: to_text(v) for k, v in values.items()}, source="entered", bundle_id="",
                                now=now)
            await tx.audit(actor, "enter.values", row.digest,
                           {"cycle": cycle, "period": period, "values": {k: to_text(v) for k, v in values.items()}},
                           now)
            bundle_id = await send_bundle(tx, self.me, cycle=cycle, period=period, framework_digest=row.digest,
                                          values=values, child_scores=(), now=now)
        self._outbox_wakeup.set()
        return bundle_id

    async def enter_assessment(self, cycle: str, period: str, unit: str, body: dict[str, Any], actor: str) -> None:
        """Record ratings, surveys, milestones, events or last year's values for one of this node's units,
        then re-score that cycle and period."""
        if not valid_cycle(cycle) or not valid_period(period, cycle):
            raise NodeError(f"年度 {cycle[:16]!r} 或报告期 {period[:16]!r} 无效 (invalid cycle or period)")
        if unit not in self.me.children:
            raise NodeError(f"{unit[:12]} 不是本节点的被考评单位 (not a unit of this node)")
        try:
            entered = normalise(body)
        except AssessmentError as exc:
            raise NodeError(str(exc)) from None
        now = self.now()
        async with self.store.tx() as tx:
            issued = list(await tx.frameworks(role="issued", cycle=cycle))
            if not issued:
                raise NodeError(f"本节点尚未发布 {cycle} 年度指标体系 (no framework issued for this cycle)")
            await tx.put_assessment(unit, cycle, period, merge(await tx.assessment(unit, cycle, period), entered), now)
            await tx.audit(actor, "enter.assessment", unit, {"cycle": cycle, "period": period, **entered}, now)
            await self.recompute(tx, cycle, period, issued[-1].digest,
                                 cause=f"{actor} 录入 {unit} 的评价 (assessment entered)", actor=actor)
        self._outbox_wakeup.set()

    async def sync_status(self) -> dict[str, Any]:
        """What was sent, what JetStream acknowledged, what waits, and the last error — per direction.

        "acknowledged" means the stream stored it (durable), not that the receiver accepted it; the
        receiver's verdict is in its own audit log and in its status, per child."""
        async with self.store.read() as r:
            out_rows = await r.outbox_summary()
            children = await r.bundle_summary()

        def direction(subject: str) -> dict[str, Any]:
            counts = out_rows.get(subject, {"acknowledged": 0, "pending": 0, "last_sent_at": 0})
            when, error = self.send_errors.get(subject, (0, ""))
            return {"subject": subject, **counts, "last_error": error, "last_error_at": when}

        up = None if self.me.parent is None else {"parent": self.me.parent, **direction(self.me.results_subject())}
        down = None if not self.me.children else direction(self.me.cascade_subject())
        kids = [{"code": c.code, "name": c.name,
                 **children.get(c.code, {"bundles": 0, "last_seq": 0, "last_at": 0, "rejected": 0})}
                for c in self.cfg.children]
        transport = self.nats.last_error if self.nats is not None else ""
        connected = bool(self.nats is not None and self.nats.nc.is_connected)
        return {"results_to_parent": up, "cascade_to_children": down, "from_children": kids,
                "nats_connected": connected, "transport_last_error": transport, "grpc_tls": self.cfg.tls is not None,
                "parent_heartbeat": await self.heartbeat_status(),
                "revocation_lists": {code: crl.version for code, crl in sorted(self.me.trust.lists.items())}}

    async def heartbeat_status(self) -> dict[str, Any] | None:
        """Whether the parent's signed heartbeat is current: if not, this node may be frozen on old data."""
        if self.me.parent is None:
            return None
        p = self.pulse
        return {"parent": self.me.parent, "issued_at": p.issued_at if p else 0, "expires_at": p.expires_at if p else 0,
                "fresh": bool(p and p.fresh(self.now())), "missing_frameworks": await self.missing_frameworks(),
                "last_error": self.pulse_error,
                "returned": [{"bundle_id": b, "seq": seq, "reason": reason, "returned_at": at}
                             for b, seq, reason, at in (p.returned if p else ())]}

    async def warnings(self, cycle: str, period: str) -> list[dict[str, str]]:
        """预警: each unit's reported (cumulative) value for ``period`` against target × elapsed share."""
        if not valid_cycle(cycle) or not valid_period(period, cycle):
            raise NodeError(f"年度 {cycle[:16]!r} 或报告期 {period[:16]!r} 无效 (invalid cycle or period)")
        async with self.store.read() as r:
            issued = await r.frameworks(role="issued", cycle=cycle)
            if not issued:
                return []
            fw = framework_of(issued[-1])
            raw = await r.values(cycle, period, issued[-1].digest)
        out = []
        for unit in fw.units:
            for ind in fw.leaves():
                value = raw.get(unit.code, {}).get(ind.code)
                if value is None or ind.target_for(unit.code, unit.unit_class) is None:
                    continue
                w = warn(ind, unit.code, parse_decimal(value, ind.code), period)
                out.append({**w.explain(), "name": self.me.children.get(unit.code, unit.code)})
        return out

    async def repeated_grades(self, grade: str, years: int) -> list[str]:
        async with self.store.read() as r:
            rows = await r.annual_scores()
        history: dict[str, list[str]] = {}
        for row in rows:
            history.setdefault(row.unit, []).append(str(json.loads(row.explanation).get("grade", "")))
        return repeated_grade_flags(history, grade, years)

    # -------------------------------------------------------------- query
    async def query(self, req: pb.QueryRequest) -> pb.QueryReply:
        reply = pb.QueryReply()
        async with self.store.read() as r:
            rows = await r.values_for_indicator(req.cycle, req.period, req.indicator)
        latest: dict[str, Any] = {}
        for row in rows:
            if (row.node == self.me.code or row.node in self.me.children) and (
                    row.node not in latest or row.updated_at >= latest[row.node].updated_at):
                latest[row.node] = row
        child_level = {"province": "city", "city": "county", "county": "township"}.get(self.me.level, "")
        for code, row in sorted(latest.items()):
            own = code == self.me.code
            reply.rows.add(unit=code, name=self.me.name if own else self.me.children[code],
                           parent=(self.me.parent or "") if own else self.me.code,
                           level=self.me.level if own else child_level, indicator=req.indicator, value=row.value,
                           source=row.source)
        if req.depth > 0:
            sub = pb.QueryRequest(cycle=req.cycle, period=req.period, indicator=req.indicator, depth=req.depth - 1)

            async def ask(peer_code: str, target: str) -> tuple[str, pb.QueryReply | None]:
                client = self.client(target, peer_code)
                try:
                    return peer_code, await client.query(sub, timeout=3)
                except Exception:
                    return peer_code, None
                finally:
                    await client.close()

            answers = await asyncio.gather(*(ask(c.code, c.grpc) for c in self.cfg.children if c.grpc))
            for code, answer in answers:
                if answer is None:
                    reply.partial.append(code)
                    continue
                # A child answers only for its own subtree; anything else it sends is dropped.
                reply.rows.extend(row for row in answer.rows if row.unit != code and row.unit.startswith(code))
                reply.partial.extend(p for p in answer.partial if p.startswith(code))
                continue
            reply.partial.extend(c.code for c in self.cfg.children if not c.grpc)
        return reply


async def run_node(cfg: NodeConfig) -> None:
    store = await Store.open(cfg.store_url)
    node = Node(cfg, store)
    await node.start()
    log.info("node %s (%s) up: grpc %s http %s", cfg.code, cfg.name, cfg.grpc_listen, cfg.http_listen)
    await node.run_until_stopped()
