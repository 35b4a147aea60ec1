"""Issue 9 items 3 and 9: the drill-down believes only what signed frameworks say, and every read
shows one framework version at a time, labelled.

成都市 and 锦江区 are real node services (tests/support/drill.py) on real stores: the province's
signed framework cascades through the city's receiving path to the county, the county's signed
bundles reach the city through its results path, and the city asks the county over real gRPC with
mutual TLS, the county answering as itself or through a handler that doctors its answers. What the
city shows is read through its real Litestar gateway."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from aggregator.framework import Unit
from gateway.app import templates
from nodes.runtime import FederationHandlers
from proto.appraisal.v1 import appraisal_pb2 as pb
from sync import keys
from sync.codec import encode_framework, framework_from_envelope
from sync.drilldown import REASONS, check_answer, proof_of
from sync.envelope import PAYLOAD_FRAMEWORK, sign
from sync.trust import TrustState, decode_revocations, sign_revocations, verify_chain
from tests.support.drill import CYCLE, PERIOD, TOWNS, Rig, framework_digest, make_rig
from tests.support.pages import assert_no_inline_script
from tests.support.pg import PgDatabases

SCRIPT = "<script>alert(1)</script>"


class Dishonest:
    """锦江区's own handlers, but its drill-down answers are doctored on the way out: fake units,
    units of other counties and cities, script in name, level and unit, a bad figure, a second
    figure for a real township, and script in its partial and dropped lists."""

    def __init__(self, honest: FederationHandlers) -> None:
        self.honest = honest

    async def fetch_frameworks(self, requester: str, cycle: str) -> tuple[list[bytes], bytes]:
        return await self.honest.fetch_frameworks(requester, cycle)

    async def submit_results(self, message: bytes, caller: str) -> tuple[bool, str]:
        return await self.honest.submit_results(message, caller)

    async def fetch_bundles(self, requester: str, after_seq: int) -> list[bytes]:
        return await self.honest.fetch_bundles(requester, after_seq)

    async def report(self, message: bytes, caller: str | None) -> tuple[bool, str]:
        return await self.honest.report(message, caller)

    async def anchor(self, requester: str) -> bytes:
        return await self.honest.anchor(requester)

    async def query(self, request: pb.QueryRequest) -> pb.QueryReply:
        reply = await self.honest.query(request)
        for row in reply.rows:
            if row.unit == "510104017":
                row.name, row.level, row.parent = "<img src=x onerror=alert('name')>", SCRIPT, "5107"
            if row.unit == "510104018":
                row.value = "<img src=x onerror=alert('value')>"
        fake = {"indicator": request.indicator, "source": "reported", "level": SCRIPT, "name": SCRIPT}
        reply.rows.add(unit="510104999", value="999", parent="510104", **fake)  # no such township
        reply.rows.add(unit="510105002", value="5", **fake)  # 青羊区's township
        reply.rows.add(unit="5107", value="6", **fake)  # another city
        reply.rows.add(unit=SCRIPT, value="7", **fake)
        reply.rows.add(unit="510104017", value="1", **fake)  # the real township again, another figure
        reply.partial.append(SCRIPT)
        reply.dropped.add(unit="<script>alert('dropped')</script>", code="<b>x</b>", reason=SCRIPT, by=SCRIPT,
                          via=SCRIPT)
        reply.dropped_total = 1
        return reply


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    r = await make_rig(tmp_path)
    yield r
    await r.close()


async def test_a_dishonest_child_cannot_add_units_names_or_script_to_the_drill_down(rig: Rig) -> None:
    await rig.publish(1)
    await rig.report({"510104017": "100", "510104018": "200"})
    await rig.serve_county(Dishonest(FederationHandlers(rig.county)))  # 青羊区 is not served: unreachable
    async with rig.gateway() as client:
        r = await client.get("/api/v1/drilldown", params={"cycle": CYCLE, "period": PERIOD, "indicator": "A1"})
        page = await client.get("/dashboard", params={"cycle": CYCLE, "period": PERIOD, "indicator": "A1"})
    assert r.status_code == 206, r.text  # partial (青羊区 unreachable), in the status as in the body
    body = r.json()
    rows = {row["unit"]: row for row in body["rows"]}
    # Only real descendants: the county (from the city's own store) and the township its signed framework
    # names, with the name from that framework, the level from the code and the parent from the prefix.
    assert set(rows) == {"510104", "510104017"}
    assert rows["510104017"] == {"unit": "510104017", "name": "锦官驿街道", "parent": "510104", "level": "township",
                                 "value": "100", "source": "reported"}
    dropped = {(d["unit"], d["code"]) for d in body["dropped"]}
    assert dropped == {("510104999", "drilldown.not_a_unit"), ("510105002", "drilldown.outside"),
                       ("5107", "drilldown.outside"), (SCRIPT, "drilldown.bad_code"),
                       ("510104018", "drilldown.bad_value"), ("510104017", "drilldown.duplicate"),
                       ("<script>alert('dropped')</script>", "drilldown.other")}
    assert body["dropped_total"] == 7
    assert {d["reason"] for d in body["dropped"]} <= set(REASONS.values())  # the city's own words only
    assert {(d["by"], d["via"]) for d in body["dropped"]} == {("5101", "510104"), ("510104", "")}
    # 青羊区 did not answer; the townships did not answer 锦江区; the script is no node.
    assert sorted(body["partial"]) == ["510104017", "510104018", "510105"] and not body["complete"]
    assert body["framework"]["issuer"] == "5101" and body["framework"]["version"] == 1
    # The page shows the same, escaped: what was dropped is listed, nothing of the answer's text runs.
    assert page.status_code == 200
    html = page.text
    assert_no_inline_script(html)
    assert "<img" not in html
    assert "锦官驿街道（510104017）" in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "已剔除 7 行" in html and "510104999" in html and "不是其上级所签发指标体系的被考评单位" in html


async def test_only_a_verified_framework_vouches_for_the_units_below_a_child(rig: Rig) -> None:
    """sync/drilldown.check_answer on real signed frameworks: a proof must be signed by the node it
    speaks for, pin the framework asked about, and come from a node not revoked; every field checked."""
    await rig.publish(1)
    await rig.publish(2)
    city = rig.city.context.me
    async with rig.city.context.store.read() as r:
        _, c2 = sorted(await r.frameworks.list(role="issued"), key=lambda f: f.version)
    async with rig.county.context.store.read() as r:
        k1, k2 = sorted(await r.frameworks.list(role="issued"), key=lambda f: f.version)
    county_chain = rig.county.context.me.chain
    now = int(time.time())

    def rows(*specs: tuple[str, str, str, str]) -> list[pb.QueryRow]:
        return [pb.QueryRow(unit=u, indicator=i, value=v, source=s) for u, i, v, s in specs]

    asked = (framework_from_envelope(c2.envelope), c2.digest)

    def check(answer: pb.QueryReply, depth: int = 1, trust: TrustState | None = None) -> Any:
        return check_answer(answer, child="510104", asked=asked, cycle=CYCLE, indicator="A1", depth=depth,
                            root=city.root, trust=trust, now=now, by="5101")

    good = proof_of("510104", k2.envelope, county_chain)
    answer = pb.QueryReply(rows=rows(("510104017", "A1", "１２.50", "reported"), ("510104018", "B1", "3", "reported")),
                           proofs=[good])
    answer.rows.add(unit="510104018", indicator="A1", value="4", source="<b>forwarded</b>")
    kept = check(answer)
    assert [(r.unit, r.name, r.value) for r in kept.rows] == [("510104017", "锦官驿街道", "12.5")]  # canonical figure
    assert [d.code for d in kept.dropped] == ["drilldown.wrong_indicator", "drilldown.bad_source"]
    assert [p.node for p in kept.proofs] == ["510104"] and kept.partial == []
    # Asked for the county alone (depth 0), its townships are deeper than asked.
    assert [d.code for d in check(answer, depth=0).dropped] == ["drilldown.too_deep"] * 3

    def refused(proof: pb.FrameworkProof, trust: TrustState | None = None) -> str:
        out = check(pb.QueryReply(rows=rows(("510104017", "A1", "1", "reported")), proofs=[proof]), trust=trust)
        assert out.rows == [] and out.partial == ["510104"] and out.proofs == []
        assert [d.code for d in out.dropped] == ["drilldown.bad_proof", "drilldown.unverified"]
        return out.dropped[0].reason

    # The county's framework of version 1 pins the city's version 1, not the version asked about.
    assert "does not pin the one asked about" in refused(proof_of("510104", k1.envelope, county_chain))
    # 青羊区 signs a framework naming 锦江区 as its issuer: a valid chain, but not the node it speaks for.
    forged = framework_from_envelope(k2.envelope)
    other = sign(PAYLOAD_FRAMEWORK, encode_framework(forged), keys.load_private(rig.fed.node_dir("510105") / "key.pem"))
    other_chain = (rig.fed.node_dir("510105") / "chain.pb").read_bytes()
    assert "not signed by the node it speaks for" in refused(
        proof_of("510104", other, list(pb.CertificateChain.FromString(other_chain).certificates)))
    # The county signs, with its own key, a framework naming a township of 青羊区 as its unit.
    county_key = keys.load_private(rig.fed.node_dir("510104") / "key.pem")
    wider = replace(forged, units=(*forged.units, Unit("510105002", "草市街街道", forged.units[0].unit_class)))
    assert "outside the issuer's scope" in refused(
        proof_of("510104", sign(PAYLOAD_FRAMEWORK, encode_framework(wider), county_key), county_chain))
    # One byte of the county's own framework changed.
    env = pb.Envelope.FromString(k2.envelope)
    env.payload = env.payload.replace("锦官驿街道".encode(), "假冒的街道".encode())
    refused(proof_of("510104", env.SerializeToString(), county_chain))
    # The city has revoked the county's certificate: it vouches for nobody any more.
    crl = sign_revocations(rig.city.context.cfg.key, "5101", 1, now, {("510104", 1): (now - 5, "测试 (test)")})
    trust = TrustState()
    trust.offer(decode_revocations(crl, verify_chain(list(city.chain), city.root, now), now))
    assert "revoked" in refused(good, trust)
    assert framework_digest(k2.envelope) == k2.digest


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_every_read_shows_one_framework_version_labelled(tmp_path: Path, backend: str,
                                                               request: pytest.FixtureRequest) -> None:
    dbs = PgDatabases(request.getfixturevalue("pg_admin_dsn")) if backend == "postgresql" else None
    rig = await make_rig(tmp_path, city_store=await dbs.create() if dbs else None, city_children=("510104",))
    try:
        await rig.publish(1)
        await rig.report({"510104017": "111", "510104018": "222"})
        await rig.publish(2, "地区生产总值（新口径）")
        await rig.report({"510104017": "444", "510104018": "555"})
        await rig.serve_county()
        async with rig.city.context.store.read() as r:
            c1, c2 = sorted(await r.frameworks.list(role="issued"), key=lambda f: f.version)
            p1, p2 = sorted(await r.frameworks.list(role="received"), key=lambda f: f.version)
        async with rig.gateway() as client:
            await _check_every_read(client, c1.digest, c2.digest, p1.digest, p2.digest)
            # Version 3 reaches the city but not yet the county: the county cannot answer under it, and
            # says nothing of the older versions in its place.
            await rig.publish(3, county=False)
            r = await client.get("/api/v1/drilldown", params={"cycle": CYCLE, "period": PERIOD, "indicator": "A1"})
            body = r.json()
            assert body["framework"]["version"] == 3 and body["rows"] == [] and body["partial"] == ["510104"]
            assert r.status_code == 206 and body["complete"] is False  # partial, in its status and its body
    finally:
        await rig.close()
        if dbs is not None:
            await dbs.drop_all()


async def _check_every_read(client: httpx.AsyncClient, c1: str, c2: str, p1: str, p2: str) -> None:
    async def get(path: str, **params: Any) -> Any:
        r = await client.get(path, params={"cycle": CYCLE, **params})
        body = r.json()
        partial = isinstance(body, dict) and bool(body.get("partial"))  # the townships here are no nodes
        assert r.status_code == (206 if partial else 200), r.text
        return body

    def version_of(row: dict[str, Any]) -> tuple[str, int, str]:
        f = row["framework"]
        return f["issuer"], f["version"], f["digest"]

    for asked, (mine, theirs, a1, towns) in {(): (c2, p2, "999", ("444", "555")),
                                             (("version", 1),): (c1, p1, "333", ("111", "222")),
                                             (("framework", c1[:12]),): (c1, p1, "333", ("111", "222"))}.items():
        params = dict(asked)
        n = 1 if mine == c1 else 2
        ranks = await get("/api/v1/rankings", period=PERIOD, **params)
        assert [r["unit"] for r in ranks] == ["510104"] and {version_of(r) for r in ranks} == {("5101", n, mine)}
        own = await get("/api/v1/values", **params)
        assert {version_of(v) for v in own} == {("51", n, theirs)}  # the city's own values answer the province's
        assert {v["value"] for v in own if v["indicator"] == "A1"} == {a1}
        county = await get("/api/v1/values", node_code="510104", **params)
        assert {version_of(v) for v in county} == {("5101", n, mine)}
        assert [v["value"] for v in county if v["indicator"] == "A1"] == [a1]
        warnings = await get("/api/v1/warnings", period=PERIOD, **params)
        assert warnings and {version_of(w) for w in warnings} == {("5101", n, mine)}
        assert len({(w["unit"], w["indicator"]) for w in warnings}) == len(warnings)
        drill = await get("/api/v1/drilldown", period=PERIOD, indicator="A1", **params)
        assert version_of(drill) == ("5101", n, mine)
        assert {r["unit"]: r["value"] for r in drill["rows"]} == {"5101": a1, "510104": a1, TOWNS[0]: towns[0],
                                                                   TOWNS[1]: towns[1]}
        assert len(drill["rows"]) == 4  # each unit once
        page = (await client.get("/dashboard", params={"cycle": CYCLE, "period": PERIOD, "indicator": "A1", **params})).text
        assert f"第 {n} 版 · {mine[:12]}" in page and page.count("锦江区（510104）") == 2  # ranked once, drilled once
        assert (">999<" in page) == (n == 2) and (">333<" in page) == (n == 1)
        assert ("地区生产总值（新口径）" in page) == (n == 2)  # the name of the version whose figure is shown
        assert "其他版本" in page and (c1 if n == 2 else c2)[:12] in page
    r = await client.get("/api/v1/rankings", params={"cycle": CYCLE, "version": 9})
    assert r.status_code == 404 and r.json()["code"] == "framework.not_held"
    r = await client.get("/api/v1/values", params={"cycle": CYCLE, "framework": "zz"})
    assert r.status_code == 400 and r.json()["code"] == "request.malformed"


def test_every_template_autoescapes_and_nothing_marks_text_safe() -> None:
    env = templates().instance.engine
    root = Path(__file__).resolve().parents[1] / "gateway"
    names = sorted(p.name for p in (root / "templates").glob("*"))
    assert names and all(env.autoescape(name) for name in names)
    for path in [*root.rglob("*.py"), *(root / "templates").glob("*")]:
        text = path.read_text(encoding="utf-8")
        assert "|safe" not in text.replace(" ", "") and "Markup" not in text and "autoescape false" not in text, path
