"""Publication (公示 → 终审, issue 11): the office publishes a framework's results for a window, then
finalises them; every version is signed and kept; the proof of a publication checks offline against
the province key alone, and a dishonest publisher's edits are caught (tampered value, dropped unit,
changed score, unapproved bundle, foreign signature)."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aggregator.errors import AppraisalError
from nodes.launcher import Federation
from nodes.runtime import NodeServices as Node
from proto.appraisal.v1 import appraisal_pb2 as pb
from sync import keys
from sync import publication as pubs
from sync.envelope import PAYLOAD_PUBLICATION, EnvelopeError, open_envelope, sign
from sync.trust import Identity
from tests.support.closing import DAY, OFFICE, county_with_results, publicise, root_of


@pytest.fixture
async def county(tmp_path: Path) -> AsyncIterator[tuple[Node, Federation]]:
    node, fed = await county_with_results(tmp_path)
    yield node, fed
    await node.context.store.close()


async def test_publicity_then_final_each_version_signed_and_the_proof_verifies(county: tuple[Node, Federation]) -> None:
    node, fed = county
    async with node.context.store.read() as r:
        klass = (await node.publication.frameworks(r, "2026"))[0].unit_class
    first = await publicise(node)
    doc = pubs.read(first.envelope)
    assert (doc.state, doc.version, doc.previous) == ("publicity", 1, "")
    assert [u.unit for u in sorted(doc.units, key=lambda u: u.rank)] == ["510104018", "510104017"]
    assert all(v.source == "reported" and v.bundle_id for u in doc.units for v in u.values)
    checked = pubs.verify_proof(first.proof, root_of(fed))
    assert (checked.units, checked.bundles, checked.reported) == (2, 2, 4)

    # the public does not see publicity unless the office says so; signed-in people do
    async with node.context.store.read() as r:
        assert await node.publication.visible(r, None) == []
        assert [p.digest for p in await node.publication.visible(r, OFFICE)] == [first.digest]

    # a publicity made public, then corrected by a version kept internal: the public no longer sees the old one
    shown = await publicise(node, public=True, reason="公开")
    async with node.context.store.read() as r:
        assert [p.digest for p in await node.publication.visible(r, None)] == [shown.digest]
    first = await publicise(node, public=False, reason="更正后仅向被考评单位公示")
    async with node.context.store.read() as r:
        assert await node.publication.visible(r, None) == []
    assert pubs.verify_proof(first.proof, root_of(fed)).previous == 2

    # finalising waits for the window to close
    with pytest.raises(AppraisalError) as early:
        async with node.context.store.tx() as tx:
            await node.publication.finalise(tx, OFFICE, cycle="2026", period="2026-Y", unit_class=klass)
    assert early.value.code == "publication.window_open"
    node.context.clock = lambda: int(time.time()) + 8 * DAY  # type: ignore[method-assign]
    async with node.context.store.tx() as tx:
        final = await node.publication.finalise(tx, OFFICE, cycle="2026", period="2026-Y", unit_class=klass)
    doc2 = pubs.read(final.envelope)
    assert (doc2.state, doc2.version, doc2.previous) == ("final", 4, first.digest)
    checked = pubs.verify_proof(final.proof, root_of(fed))
    assert checked.previous == 3
    async with node.context.store.read() as r:
        assert [p.digest for p in await node.publication.visible(r, None)] == [final.digest]
        with pytest.raises(AppraisalError):  # superseded: auditors only
            await node.publication.get_visible(r, None, first.digest)
        audit = [e.action for e in await r.audit.entries() if e.action.startswith("publication.")]
    assert audit == ["publication.publicity"] * 3 + ["publication.final"]
    with pytest.raises(AppraisalError) as again:
        await publicise(node, unit_class=klass, reason="x", opens_at=node.context.clock(),
                        closes_at=node.context.clock() + DAY)
    assert again.value.code == "publication.already_final"
    with pytest.raises(AppraisalError) as no_reason:
        async with node.context.store.tx() as tx:
            await node.publication.revise(tx, OFFICE, cycle="2026", period="2026-Y", unit_class=klass, reason=" ")
    assert no_reason.value.code == "publication.revision_reason"


def resign(proof: bytes, fed: Federation, edit: object) -> bytes:
    """The publisher (its own key: a certified insider) signs an edited publication into the proof."""
    msg = pb.PublicationProof.FromString(proof)
    pub = pb.Publication.FromString(open_envelope(msg.publication, PAYLOAD_PUBLICATION).payload)
    edit(pub)  # type: ignore[operator]
    key = keys.load_private(fed.node_dir("510104") / "key.pem")
    msg.publication = sign(PAYLOAD_PUBLICATION, pub.SerializeToString(deterministic=True), key)
    return msg.SerializeToString()


async def test_a_dishonest_publisher_is_caught_offline(county: tuple[Node, Federation]) -> None:
    node, fed = county
    proof = (await publicise(node)).proof
    root = root_of(fed)

    def caught(data: bytes) -> str:
        with pytest.raises(EnvelopeError) as exc:
            pubs.verify_proof(data, root)
        return exc.value.code

    def bump_value(p: pb.Publication) -> None:
        p.units[0].values[0].value = "5000"

    def drop_unit(p: pb.Publication) -> None:
        del p.units[1]

    def better_score(p: pb.Publication) -> None:
        p.units[0].score = "99.99"

    def swap_ranks(p: pb.Publication) -> None:
        p.units[0].rank, p.units[1].rank = p.units[1].rank, p.units[0].rank

    def hide_value(p: pb.Publication) -> None:
        del p.units[0].values[0]

    def other_units_bundle(p: pb.Publication) -> None:  # 510104017 shown with 510104018's signed figures
        a, b = p.units[0], p.units[1]
        for va, vb in zip(a.values, b.values, strict=True):
            va.value, va.bundle_id = vb.value, vb.bundle_id

    def renamed(p: pb.Publication) -> None:
        p.units[0].name = "别的街道"

    def skipped_history(p: pb.Publication) -> None:
        p.version = 5

    def bad_number(p: pb.Publication) -> None:
        p.units[0].score = "abc"

    assert caught(resign(proof, fed, other_units_bundle)) == "publication.evidence_unit"
    assert caught(resign(proof, fed, renamed)) == "publication.score_mismatch"
    assert caught(resign(proof, fed, skipped_history)) == "publication.version_previous"
    assert caught(resign(proof, fed, bad_number)) == "publication.bad_number"
    assert caught(resign(proof, fed, bump_value)) == "publication.value_mismatch"
    assert caught(resign(proof, fed, drop_unit)) == "publication.unit_missing"
    assert caught(resign(proof, fed, better_score)) == "publication.score_mismatch"
    assert caught(resign(proof, fed, swap_ranks)) == "publication.score_mismatch"
    assert caught(resign(proof, fed, hide_value)) in ("publication.value_left_out", "publication.score_mismatch")

    # bytes changed without the key: the signature fails
    msg = pb.PublicationProof.FromString(proof)
    env = pb.Envelope.FromString(msg.publication)
    env.payload = env.payload.replace(b"510104017", b"510104019")
    msg.publication = env.SerializeToString()
    assert caught(msg.SerializeToString()) == "publication.bad_signature"

    # a bundle the publisher never approved
    msg = pb.PublicationProof.FromString(proof)
    del msg.approvals[0]
    assert caught(msg.SerializeToString()) == "publication.not_approved"

    # another root key: the chain does not lead to it
    other = Identity("51", "四川省", "province", keys.generate().public_key(), ("51",), 2**62)
    with pytest.raises(EnvelopeError):
        pubs.verify_proof(proof, other)


async def test_the_office_publishes_through_the_page_and_others_see_only_what_they_may(tmp_path: Path) -> None:
    """As a browser posts it: the office opens 公示 from /publication; a unit account sees the ranking
    marked 公示中 and its window; a provider without publication.manage cannot publish (403); the API
    answers the same; the proof downloads and verifies; the public sees nothing yet."""
    from litestar.testing import AsyncTestClient

    from gateway.app import create_app
    from nodes.accounts import SYSTEM
    from nodes.runtime import gateway_services
    from tests.test_accounts import no_redirects, sign_in
    from tests.test_intake_pages import csrf_of

    node, fed = await county_with_results(tmp_path)

    def day(offset: int) -> str:
        return time.strftime("%Y-%m-%d", time.gmtime(node.context.clock() + 8 * 3600 + offset * DAY))

    try:
        for login, roles, kw in (("wang", ["office"], {}), ("t17", ["unit"], {"units": ["510104017"]}),
                                 ("tjj", ["provider"], {"org": "区统计局"})):
            await node.accounts.add(login, login, roles, SYSTEM, password=f"{login}-password-1", **kw)
        async with no_redirects(AsyncTestClient(app=create_app(gateway_services(node)))) as client:
            assert (await client.get("/publication")).status_code in (302, 303)  # sign in first
            csrf = await sign_in(client, "wang", "wang-password-1")
            page = await client.get("/publication?cycle=2026")
            assert page.status_code == 200 and "未公示" in page.text
            klass = re.search(r'name="class" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
            bad = await client.post("/publication", data={"_csrf": csrf, "action": "publicise", "cycle": "2026",
                                                          "class": klass, "opens": "2026-13-01", "closes": "x"})
            assert bad.status_code == 422 and "form.date" in bad.text
            r = await client.post("/publication", data={"_csrf": csrf_of(page.text), "action": "publicise",
                                                        "cycle": "2026", "class": klass, "period": "2026-Y",
                                                        "opens": day(0), "closes": day(7)})
            assert r.status_code == 303, r.text
            page = await client.get("/publication?cycle=2026")
            assert "公示中" in page.text and "下载证明文件" in page.text
            digest = re.search(r'href="/publication/proof/([0-9a-f]{64})"', page.text).group(1)  # type: ignore[union-attr]
            proof = await client.get(f"/publication/proof/{digest}")
            assert proof.status_code == 200
            assert pubs.verify_proof(proof.content, root_of(fed)).units == 2
            await client.post("/logout", data={"_csrf": csrf})

            csrf = await sign_in(client, "t17", "t17-password-1")
            page = await client.get("/publication?cycle=2026")
            assert page.status_code == 200 and "公示中" in page.text and 'class="mine"' in page.text
            assert "开始公示" not in page.text and "全部版本" not in page.text
            api = (await client.get("/api/v1/publications", params={"cycle": "2026"})).json()
            assert [(p["state"], p["version"], len(p["units"])) for p in api] == [("publicity", 1, 2)]
            r = await client.post("/api/v1/publications/final", json={"cycle": "2026", "period": "2026-Y", "class": klass},
                                  headers={"x-csrf-token": csrf})
            assert r.status_code == 403
            await client.post("/logout", data={"_csrf": csrf})

            # the bearer token (SYSTEM) finalising too early: a conflict, named
            auth = {"Authorization": f"Bearer {node.context.cfg.admin_token}"}
            r = await client.post("/api/v1/publications/final", headers=auth,
                                  json={"cycle": "2026", "period": "2026-Y", "class": klass})
            assert r.status_code == 409 and r.json()["code"] == "publication.window_open"
            r = await client.post("/api/v1/publications/publicity", headers=auth, json={"cycle": "2026", "period": "2026-Y",
                                                                              "class": klass, "opens_at": 1, "closes_at": 2})
            assert r.status_code == 422 and r.json()["code"] == "publication.window"
            # not signed in: the internal API refuses, and there is nothing public yet
            assert (await client.get("/api/v1/publications")).status_code == 401
            async with node.context.store.read() as rd:
                assert await node.publication.visible(rd, None) == []
    finally:
        await node.context.store.close()


async def test_a_citizen_verifies_a_downloaded_proof_with_the_province_key_alone(county: tuple[Node, Federation],
                                                                                 tmp_path: Path) -> None:
    """`appraise public verify FILE --root-key HEX`, as a separate process: exit 0 and the ranking for
    the proof as published, exit 1 naming the fault for one a publisher edited, 2 for a bad key."""
    import json
    import subprocess
    import sys

    node, fed = county
    proof = (await publicise(node)).proof
    good, bad = tmp_path / "good.pb", tmp_path / "bad.pb"
    good.write_bytes(proof)

    def cheat(p: pb.Publication) -> None:
        p.units[0].score = "88"

    bad.write_bytes(resign(proof, fed, cheat))
    hex_key = keys.public_hex(root_of(fed).public_key)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "nodes.cli", "public", "verify", *args], capture_output=True,
                              text=True, timeout=120, check=False)

    ok = run(str(good), "--root-key", hex_key)
    assert ok.returncode == 0 and "核验通过" in ok.stdout and "510104018" in ok.stdout, ok.stdout + ok.stderr
    as_json = json.loads(run(str(good), "--root-key", hex_key, "--json").stdout)
    assert as_json["ok"] and as_json["units"] == 2 and as_json["values_checked"] == 4
    caught = run(str(bad), "--root-key", hex_key)
    assert caught.returncode == 1 and "publication.score_mismatch" in caught.stderr, caught.stderr
    other = run(str(good), "--root-key", keys.public_hex(keys.generate().public_key()))
    assert other.returncode == 1, other.stdout
    assert run(str(good), "--root-key", "zz").returncode == 2


async def test_final_results_ride_up_in_the_report_and_only_the_reporters_own_final_ones(
        county: tuple[Node, Federation]) -> None:
    """终审结果上报: the county's report carries its final publication as signed; the city checks that the
    county signed it and that it is final — a publicity version, or another node's results, is refused."""
    from dataclasses import replace

    from sync.reports import make_report, verify_report
    from tests.support.closing import finalise, me_of

    node, fed = county
    publicity = await publicise(node)
    final = await finalise(node)
    report = await node.reports.build()
    city = replace(me_of(fed, "5101"), children={"510104": "锦江区", "510105": "青羊区"})
    (own, *_), _dropped = verify_report(city, report, node.context.clock())
    assert own.publications == (final.envelope,)

    county_me = me_of(fed, "510104")
    head = (0, "0" * 64)
    forged = make_report(county_me, received=(), issued=(), refusals=(), audit_head=head, descendants=(),
                         now=node.context.clock(), publications=[publicity.envelope])
    with pytest.raises(EnvelopeError) as refused:
        verify_report(city, forged, node.context.clock())
    assert refused.value.code == "report.not_final"
    # bytes the county did not sign (a signature that does not verify)
    msg = pb.Envelope.FromString(final.envelope)
    msg.signatures[0].sig = bytes(64)
    forged = make_report(county_me, received=(), issued=(), refusals=(), audit_head=head, descendants=(),
                         now=node.context.clock(), publications=[msg.SerializeToString()])
    with pytest.raises(EnvelopeError) as refused:
        verify_report(city, forged, node.context.clock())
    assert refused.value.code == "report.bad_publication"


async def test_the_parent_keeps_a_childs_final_results_and_keeps_equivocation_as_evidence(
        county: tuple[Node, Federation], tmp_path: Path) -> None:
    """成都市 takes 锦江区's report: the final publication it carries is kept (role received, audited).
    The county then signs a second, different "version 2" and sends it: the report is taken, the
    second final is not, and the audit log names both digests (publication.equivocation)."""
    from nodes.config import load_config
    from nodes.runtime import build_services
    from nodes.store import Store
    from sync.reports import make_report
    from tests.support.closing import finalise, me_of

    node, fed = county
    await publicise(node)
    final = await finalise(node)
    city = build_services(load_config(fed.node_dir("5101") / "node.yaml"),
                          await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'city.db'}"),
                          node.context.clock)  # the county's clock is past the window (finalise moved it)
    try:
        ok, why = await city.reports.take(await node.reports.build(), "510104")
        assert ok, why
        async with city.context.store.read() as r:
            held = await r.publications.list(node="510104")
        assert [(p.digest, p.role, p.state) for p in held] == [(final.digest, "received", "final")]

        other = pb.Publication.FromString(open_envelope(final.envelope, PAYLOAD_PUBLICATION).payload)
        other.reason = "另一份同版本号的终审结果"
        key = keys.load_private(fed.node_dir("510104") / "key.pem")
        forged = sign(PAYLOAD_PUBLICATION, other.SerializeToString(deterministic=True), key)
        report = make_report(me_of(fed, "510104"), received=(), issued=(), refusals=(), audit_head=(0, "0" * 64),
                             descendants=(), now=node.context.clock() + 5, publications=[forged])
        ok, why = await city.reports.take(report, "510104")
        assert ok, why
        async with city.context.store.read() as r:
            assert [p.digest for p in await r.publications.list(node="510104")] == [final.digest]
            refused = [e for e in await r.audit.entries() if e.action == "reject.publication"]
        assert len(refused) == 1 and '"publication.equivocation"' in refused[0].detail
        assert final.digest in refused[0].detail
    finally:
        await city.context.store.close()
