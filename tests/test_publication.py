"""Publication (公示 → 终审, issue 11): the office publishes a framework's results for a window, then
finalises them; every version is signed and kept; the proof of a publication checks offline against
the province key alone, and a dishonest publisher's edits are caught (tampered value, dropped unit,
changed score, unapproved bundle, foreign signature)."""

from __future__ import annotations

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

    # finalising waits for the window to close
    with pytest.raises(AppraisalError) as early:
        async with node.context.store.tx() as tx:
            await node.publication.finalise(tx, OFFICE, cycle="2026", period="2026-Y", unit_class=klass)
    assert early.value.code == "publication.window_open"
    node.context.clock = lambda: int(time.time()) + 8 * DAY  # type: ignore[method-assign]
    async with node.context.store.tx() as tx:
        final = await node.publication.finalise(tx, OFFICE, cycle="2026", period="2026-Y", unit_class=klass)
    doc2 = pubs.read(final.envelope)
    assert (doc2.state, doc2.version, doc2.previous) == ("final", 2, first.digest)
    checked = pubs.verify_proof(final.proof, root_of(fed))
    assert checked.previous == 1
    async with node.context.store.read() as r:
        assert [p.digest for p in await node.publication.visible(r, None)] == [final.digest]
        with pytest.raises(AppraisalError):  # superseded: auditors only
            await node.publication.get_visible(r, None, first.digest)
        audit = [e.action for e in await r.audit.entries() if e.action.startswith("publication.")]
    assert audit == ["publication.publicity", "publication.final"]
    with pytest.raises(AppraisalError) as again:
        await publicise(node, unit_class=klass, reason="x", opens_at=node.context.clock(),
                        closes_at=node.context.clock() + DAY)
    assert again.value.code == "publication.already_final"
    with pytest.raises(AppraisalError) as no_reason:
        async with node.context.store.tx() as tx:
            await node.publication.revise(tx, OFFICE, cycle="2026", period="2026-Y", unit_class=klass, reason=" ")
    assert no_reason.value.code == "publication.reason"


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
