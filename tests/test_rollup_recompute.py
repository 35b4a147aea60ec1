"""Issue 9 item 2 (防止弄虚作假): a parent recomputes a child's roll-up from the signed source bundles it
carries, by every rule, with the engine's own code, and refuses a roll-up that disagrees; the province
checks two levels (the city's arithmetic and every county's) from the city's message alone.

Real signatures, real stores (SQLite and PostgreSQL), the real results receiver."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from decimal import Decimal

import pytest

from aggregator.framework import Framework, Unit, derive_child_framework
from aggregator.rollup import roll_up
from nodes.store import Store
from proto.appraisal.v1 import appraisal_pb2 as pb
from sync.approvals import Source, verify_attestations
from sync.cascade_sender import issue_framework
from sync.codec import bundle_from_message
from sync.envelope import PAYLOAD_RESULTS, EnvelopeError, digest, open_envelope
from sync.identity import Me
from sync.results_receiver import receive_results
from sync.results_sender import send_bundle
from sync.rollup_check import RollupMismatch
from sync.trust import verify_chain
from tests.support.hierarchy import NOW, Hierarchy
from tests.support.receivers import Memory, no_follow_up

TOWNS = ("510104017", "510104018")


@pytest.fixture(scope="module")
def h() -> Hierarchy:
    return Hierarchy.build()


class Chain:
    """四川省 → 成都市 → 锦江区 → two townships: each level's framework, signed by its issuer.
    ``rules``: leaf → roll-up rule, set in the province's framework and carried down by derivation."""

    def __init__(self, h: Hierarchy, rules: Mapping[str, str] | None = None, share: Decimal | None = None) -> None:
        self.h = h
        pfw = h.province_framework()
        self.pfw = replace(pfw, indicators=tuple(replace(i, rollup=(rules or {}).get(i.code, i.rollup))
                                                 for i in pfw.indicators))
        self.penv, self.pd = h.signed("51", self.pfw)
        self.cfw = derive_child_framework(self.pfw, self.pd, "成都市", "5101", [Unit("510104", "锦江区")],
                                          unit_class="县市区", issued_at=NOW, expires_at=NOW + 86400)
        self.cenv, self.cd = h.signed("5101", self.cfw)
        tfw = derive_child_framework(self.cfw, self.cd, "锦江区", "510104", [Unit(t, t) for t in TOWNS],
                                     unit_class="乡镇街道", issued_at=NOW, expires_at=NOW + 86400)
        if share is not None:  # the county bends its own decomposition: A1 counts ``share`` times
            tfw = replace(tfw, indicators=tuple(
                replace(i, links=tuple(replace(k, share=share) for k in i.links)) if i.code == "A1" else i
                for i in tfw.indicators))
        self.tfw = tfw
        self.tenv, self.td = h.signed("510104", self.tfw)

    def town_values(self, n: int) -> dict[str, Decimal]:
        vals = {i.code: (i.target or Decimal(1)) * Decimal(100 + n) / 100 for i in self.tfw.leaves()}
        for i in self.tfw.leaves():
            if any(k.rule == "ratio_of_sums" for k in i.links):
                vals[i.code + ".num"], vals[i.code + ".den"] = Decimal(30 + n), Decimal(60 + 7 * n)
        return vals


async def sent(me: Me, fw_digest: str, values: Mapping[str, Decimal], sources: Sequence[Source] = (),
               framework: bytes = b"") -> tuple[bytes, Source]:
    mem = Memory()
    await send_bundle(mem, me, cycle="2026", period="2026-Y", framework_digest=fw_digest, values=dict(values),
                      child_scores=(), now=NOW, sources=sources, framework=framework)
    message = mem.queued[0]
    payload = open_envelope(pb.ResultMessage.FromString(message).bundle, PAYLOAD_RESULTS).payload
    return message, Source(me.code, digest(payload), 1, message)


def own(fw: Framework, values: Mapping[str, Mapping[str, Decimal]]) -> dict[str, Decimal]:
    out: dict[str, Decimal] = {}
    for r in roll_up(fw, values):
        out[r.parent_indicator] = r.value
        out.update(r.extra)
    return out


async def county_message(c: Chain, *, edit: Mapping[str, Decimal] | None = None) -> bytes:
    """The townships report; the county rolls them up, with ``edit`` (indicator → amount) added to the
    second township's value in its own database first, as an operator who edits the store would."""
    towns = [await sent(c.h.me(t), c.td, c.town_values(n)) for n, t in enumerate(TOWNS)]
    held = {t: c.town_values(n) for n, t in enumerate(TOWNS)}
    for key, extra in (edit or {}).items():
        held[TOWNS[1]][key] += extra
    msg, _ = await sent(c.h.me("510104"), c.cd, own(c.tfw, held), [s for _, s in towns], c.tenv)
    return msg


async def issued_at(store: Store, me: Me, fw: Framework, upstream: list[bytes]) -> None:
    async with store.tx() as tx:
        await issue_framework(tx, me, fw, upstream, NOW)


async def rejections(store: Store) -> list[dict[str, object]]:
    async with store.read() as r:
        return [json.loads(e.detail) if isinstance(e.detail, str) else dict(e.detail)
                for e in await r.audit.entries(action="reject.results")]


async def test_an_honest_roll_up_is_recomputed_and_taken(h: Hierarchy, store: Store) -> None:
    c = Chain(h)
    await issued_at(store, h.me("5101"), c.cfw, [c.penv])
    outcome = await receive_results(store, h.me("5101"), await county_message(c), NOW, no_follow_up)
    assert outcome.accepted, outcome.reason


async def test_a_county_whose_database_was_edited_is_refused_with_both_values(h: Hierarchy, store: Store) -> None:
    """One township's A1 raised by 1,000 in the county's store: the county signs a roll-up that its
    sources do not give. The city refuses it and audits the indicator, both values and the sources."""
    c = Chain(h)
    await issued_at(store, h.me("5101"), c.cfw, [c.penv])
    outcome = await receive_results(store, h.me("5101"), await county_message(c, edit={"A1": Decimal(1000)}), NOW,
                                    no_follow_up)
    assert not outcome.accepted and outcome.code == "rollup.mismatch"
    assert "A1" in outcome.reason
    [entry] = await rejections(store)
    honest = sum((c.town_values(n)["A1"] for n in range(len(TOWNS))), Decimal(0))
    assert entry["code"] == "rollup.mismatch" and entry["indicator"] == "A1" and entry["node"] == "510104"
    assert Decimal(str(entry["claimed"])) == honest + 1000 and Decimal(str(entry["recomputed"])) == honest
    assert {s.split("#")[0] for s in entry["sources"]} == set(TOWNS)  # type: ignore[attr-defined]
    async with store.read() as r:
        assert await r.results.values("2026", "2026-Y", c.cd) == {}  # none of its values count
        assert (await r.bundles.last("510104")).status == "rejected"  # type: ignore[union-attr]


async def test_the_province_checks_the_counties_below_a_city_that_let_a_forgery_through(
        h: Hierarchy, store: Store) -> None:
    """成都市 takes 锦江区's forged roll-up without checking and rolls it up honestly: its own arithmetic
    holds, but the province recomputes the county's from the townships' bundles inside the city's message."""
    c = Chain(h)
    await issued_at(store, h.me("51"), c.pfw, [])
    city_msg = await city_message(c, await county_message(c, edit={"B1": Decimal(1000)}))
    outcome = await receive_results(store, h.me("51"), city_msg, NOW, no_follow_up)
    assert not outcome.accepted and outcome.code == "rollup.mismatch"
    [entry] = await rejections(store)
    assert entry["node"] == "510104" and entry["indicator"] == "B1"  # the county, two levels down


async def city_message(c: Chain, county_msg: bytes) -> bytes:
    bundle = bundle_from_message(county_msg)
    payload = open_envelope(pb.ResultMessage.FromString(county_msg).bundle, PAYLOAD_RESULTS).payload
    msg, _ = await sent(c.h.me("5101"), c.pd, own(c.cfw, {"510104": bundle.values}),
                        [Source("510104", digest(payload), 1, county_msg)], c.cenv)
    return msg


RULES = {"A1": "sum", "A2": "mean", "A3": "min", "B1": "max", "B2": "weighted_mean:B1", "C1": "ratio_of_sums",
         "C2": "latest", "D1": "all"}


async def test_every_rule_is_recomputed_exactly_at_both_levels(h: Hierarchy, store: Store) -> None:
    """sum, mean, min, max, weighted_mean, ratio_of_sums, latest and all: an honest two-level roll-up by
    each is taken by the province; the county's roll-up with any one value nudged by 0.01 is refused,
    naming that value."""
    c = Chain(h, RULES)
    assert {k.rule for i in c.tfw.leaves() for k in i.links} == set(RULES.values())
    await issued_at(store, h.me("51"), c.pfw, [])
    honest = await county_message(c)
    outcome = await receive_results(store, h.me("51"), await city_message(c, honest), NOW, no_follow_up)
    assert outcome.accepted, outcome.reason
    county = verify_chain(h.chains["510104"], h.root, NOW)
    values = bundle_from_message(honest).values
    assert {"C1.num", "C1.den", "B1"} <= set(values)
    for key in sorted(values):
        nudged = dict(values)
        nudged[key] += Decimal("0.01")
        msg = pb.ResultMessage.FromString(honest)
        bad, _ = await sent(h.me("510104"), c.cd, nudged,
                            [Source(t, b, 1, m) for t, b, m in _sources(msg)], c.tenv)
        with pytest.raises(RollupMismatch) as exc:
            verify_attestations(pb.ResultMessage.FromString(bad), county, bundle_from_message(bad), h.root, NOW,
                                issued=(c.cfw, c.cd))
        assert exc.value.detail["indicator"] == key


def _sources(msg: pb.ResultMessage) -> list[tuple[str, str, bytes]]:
    out = []
    for data in msg.evidence:
        payload = open_envelope(pb.ResultMessage.FromString(data).bundle, PAYLOAD_RESULTS).payload
        out.append((pb.ResultBundle.FromString(payload).node, digest(payload), data))
    return out


async def test_a_framework_the_children_would_refuse_is_not_a_basis_for_a_roll_up(h: Hierarchy, store: Store) -> None:
    """The county rolls up by a framework of its own making whose A1 links at share 1,000: the city runs
    the townships' own checks on it and refuses the roll-up. A roll-up without its framework is refused."""
    await issued_at(store, h.me("5101"), Chain(h).cfw, [Chain(h).penv])
    c = Chain(h, share=Decimal(1000))
    outcome = await receive_results(store, h.me("5101"), await county_message(c), NOW, no_follow_up)
    assert not outcome.accepted and outcome.code == "rollup.bad_framework", outcome
    bare = pb.ResultMessage.FromString(await county_message(Chain(h)))
    bare.ClearField("framework")
    with pytest.raises(EnvelopeError) as exc:
        verify_attestations(bare, verify_chain(h.chains["510104"], h.root, NOW),
                            bundle_from_message(bare.SerializeToString()), h.root, NOW, issued=(c.cfw, c.cd))
    assert exc.value.code == "rollup.no_framework"
