"""Issue 9 items 6 and 8: signed status reports travel up, each descendant's inside its parent's, so
every ancestor sees which framework each node below holds and what it refused, and keeps each
child's audit chain head as an anchor outside it. Real signatures; real node services and store for
the sending side."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from proto.appraisal.v1 import appraisal_pb2 as pb
from sync.envelope import PAYLOAD_REPORT, EnvelopeError, open_envelope, sign
from sync.reports import (
    Anchor,
    Ref,
    Refusal,
    anchor_of,
    cascade_states,
    check_anchor,
    make_report,
    parse_stored,
    verify_report,
)
from tests.support.hierarchy import NOW, Hierarchy
from tests.support.nodes import city_cascade, county_node

V1 = Ref("5101", "2026", "县市区", 1, "a" * 64, ("510104",))
V2 = Ref("5101", "2026", "县市区", 2, "b" * 64, ("510104",))
TOWN_FW = Ref("510104", "2026", "乡镇街道", 1, "c" * 64, ("510104017", "510104018"))


@pytest.fixture(scope="module")
def h() -> Hierarchy:
    return Hierarchy.build()


def town_report(h: Hierarchy, code: str, held: tuple[Ref, ...] = (TOWN_FW,), at: int = NOW) -> bytes:
    return make_report(h.me(code), received=held, issued=(), refusals=(), audit_head=(7, "d" * 64), descendants=(),
                       now=at)


def county_report(h: Hierarchy, *, held: tuple[Ref, ...] = (V2,), refusals: tuple[Refusal, ...] = (),
                  descendants: tuple[bytes, ...] = ()) -> bytes:
    return make_report(h.me("510104"), received=held, issued=(TOWN_FW,), refusals=refusals, audit_head=(42, "e" * 64),
                       descendants=descendants, now=NOW)


def test_a_parent_takes_its_childs_report_and_the_grandchildren_inside(h: Hierarchy) -> None:
    towns = tuple(town_report(h, t) for t in ("510104017", "510104018"))
    reports, dropped = verify_report(h.me("5101"), county_report(h, descendants=towns), NOW, caller="510104")
    assert dropped == []
    assert [(r.node, r.via) for r in reports] == [("510104", ""), ("510104017", "510104"), ("510104018", "510104")]
    assert (reports[0].audit_seq, reports[0].audit_hash) == (42, "e" * 64)
    states = {s.node: s.state for s in cascade_states("5101", [V2], ["510104"], {r.node: r for r in reports})}
    assert states == {"510104": "current", "510104017": "current", "510104018": "current"}


def test_forwarded_reports_already_held_byte_for_byte_are_not_taken_again(h: Hierarchy) -> None:
    """A parent passes the digests of the reports it holds: a forwarded report with exactly those bytes
    is left out (it was verified when taken); a new one, or a forged one, is judged as ever, and the
    child's own report is always verified."""
    from hashlib import sha256

    old, new = town_report(h, "510104017"), town_report(h, "510104018", at=NOW - 5)
    msg = pb.ReportMessage.FromString(town_report(h, "510104017", at=NOW - 1))
    payload = pb.NodeReport.FromString(open_envelope(msg.report, PAYLOAD_REPORT).payload)
    forged = pb.ReportMessage(report=sign(PAYLOAD_REPORT, payload.SerializeToString(), h.keys["510104"]),
                              certificate_chain=list(h.chains["510104"])).SerializeToString()
    county = county_report(h, descendants=(old, new, forged))
    held = {sha256(old).digest(), sha256(county).digest()}
    reports, dropped = verify_report(h.me("5101"), county, NOW, held=held)
    assert [r.node for r in reports] == ["510104", "510104018"]
    assert len(dropped) == 1 and "510104" in dropped[0]
    with pytest.raises(EnvelopeError):
        verify_report(h.me("5107"), county, NOW, held=held)  # the sender's own report: never skipped


def test_a_report_from_anyone_but_a_child_or_the_caller_is_refused(h: Hierarchy) -> None:
    with pytest.raises(EnvelopeError) as exc:
        verify_report(h.me("5107"), county_report(h), NOW)  # 绵阳市 is not 锦江区's parent
    assert exc.value.code == "report.not_child"
    with pytest.raises(EnvelopeError) as exc:
        verify_report(h.me("5101"), county_report(h), NOW, caller="510105")  # another node's TLS certificate
    assert exc.value.code == "report.not_caller"
    with pytest.raises(EnvelopeError) as exc:
        verify_report(h.me("5101"), make_report(h.me("510104"), received=(), issued=(), refusals=(),
                                                audit_head=(0, ""), descendants=(), now=NOW + 3600), NOW)
    assert exc.value.code == "report.bad_time"


def test_a_forged_descendant_report_is_dropped_and_named(h: Hierarchy) -> None:
    """The county cannot speak for a township: a report it signed in the township's name, or one
    signed by a township of another county, is dropped; the county's own report stands."""
    msg = pb.ReportMessage.FromString(town_report(h, "510104017"))
    payload = pb.NodeReport.FromString(open_envelope(msg.report, PAYLOAD_REPORT).payload)
    payload.received[0].version = 9
    as_county = pb.ReportMessage(report=sign(PAYLOAD_REPORT, payload.SerializeToString(), h.keys["510104"]),
                                 certificate_chain=list(h.chains["510104"])).SerializeToString()
    reports, dropped = verify_report(h.me("5101"), county_report(h, descendants=(as_county,)), NOW)
    assert [r.node for r in reports] == ["510104"]
    assert len(dropped) == 1 and "510104" in dropped[0]


def test_states_say_lagging_refused_and_unreported(h: Hierarchy) -> None:
    refusal = Refusal(V2.digest, "5101", 2, "cascade.linkage", "上级指标 A2 没有目标值", NOW)
    cases = {
        "current": county_report(h),
        "lagging": county_report(h, held=(V1,)),
        "refused": county_report(h, held=(V1,), refusals=(refusal,)),
    }
    for want, data in cases.items():
        reports, _ = verify_report(h.me("5101"), data, NOW)
        [state, *below] = cascade_states("5101", [V2], ["510104"], {r.node: r for r in reports})
        assert state.state == want
        assert {s.node: s.state for s in below} == {"510104017": "unreported", "510104018": "unreported"}
    [refused] = cascade_states("5101", [V2], ["510104"], {"510104": parse_stored(cases["refused"])})[:1]
    assert refused.refusals[0].code == "cascade.linkage" and refused.refusals[0].reason.startswith("上级指标")
    assert cascade_states("5101", [V2], ["510104"], {})[0].state == "unreported"


def test_the_anchor_is_the_nodes_own_and_catches_rewrites_and_truncation(h: Hierarchy) -> None:
    held = anchor_of(county_report(h), "510104", h.root)
    assert held == Anchor(42, "e" * 64, NOW)
    with pytest.raises(EnvelopeError) as exc:
        anchor_of(town_report(h, "510104017"), "510104", h.root)  # the parent handed back someone else's
    assert exc.value.code == "anchor.not_own"
    chain = {seq: f"{seq:064x}" for seq in range(1, 50)}
    assert check_anchor(Anchor(42, f"{42:064x}", NOW), chain, 49) is None
    assert "rewritten" in (check_anchor(held, chain, 49) or "")
    assert "truncated" in (check_anchor(Anchor(42, f"{42:064x}", NOW), {k: v for k, v in chain.items() if k < 40}, 39)
                           or "")


async def test_a_county_reports_the_framework_it_refused(tmp_path: Path) -> None:
    """A county whose limits refuse its city's framework (two units, it takes one) says so in the report
    it signs, naming that framework, with the code and the reason; the city then counts it refused."""
    node, fed = await county_node(tmp_path, limits={"units": 1})
    message, city_digest = city_cascade(fed, tmp_path)
    await node.cascade.take(None, message)
    report = parse_stored(await node.reports.build())
    assert report.node == "510104" and report.received == ()
    [refusal] = report.refusals
    assert refusal.framework_digest == city_digest
    assert refusal.code == "cascade.too_many_units" and "too many units" in refusal.reason
    async with node.context.store.read() as r:
        head = await r.audit.head()
    assert (report.audit_seq, report.audit_hash) == head and head[0] > 0
    [state] = cascade_states("5101", [replace(V2, digest=city_digest)], ["510104"], {"510104": report})[:1]
    assert state.state == "refused" and [r.code for r in state.refusals] == ["cascade.too_many_units"]
    await node.context.store.close()


async def test_reports_made_within_one_second_are_told_apart(tmp_path: Path) -> None:
    """(Found by the demo under load.) A township reports, takes its framework and reports again within
    the same second: the parent keeps only newer reports, so the second must be newer, not as old."""
    node, fed = await county_node(tmp_path)
    first = parse_stored(await node.reports.build())
    message, _ = city_cascade(fed, tmp_path)
    await node.cascade.take(None, message)
    second = parse_stored(await node.reports.build())
    assert second.received and not first.received
    assert second.reported_at > first.reported_at
    await node.context.store.close()


async def test_an_idle_node_builds_no_report_until_something_is_written(tmp_path: Path) -> None:
    """The report loop wakes every heartbeat; with nothing written since the last report it builds
    none (thousands of idle nodes on one host), and the first write is reported at once."""
    import asyncio

    node, fed = await county_node(tmp_path, heartbeat_seconds=1)
    builds: list[bytes] = []
    sent: list[bytes] = []
    real_build = node.reports.build

    async def build() -> bytes:
        builds.append(data := await real_build())
        return data

    async def send(data: bytes) -> tuple[bool, str]:
        sent.append(data)
        return True, ""

    node.reports.build = build  # type: ignore[method-assign]
    node.reports._send = send  # type: ignore[method-assign]
    loop = asyncio.create_task(node.reports.run())
    try:
        await asyncio.sleep(3.5)  # three heartbeats, nothing written
        assert (len(builds), len(sent)) == (1, 1)
        message, _ = city_cascade(fed, tmp_path)
        await node.cascade.take(None, message)
        node.context.wakeups.report.set()
        for _ in range(40):
            if len(sent) == 2:
                break
            await asyncio.sleep(0.1)
        assert len(builds) == 2 and parse_stored(sent[-1]).received
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
        await node.context.store.close()
