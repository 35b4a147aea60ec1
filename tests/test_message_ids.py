"""Issue 9 item 1: a node cannot suppress another node's report by publishing first under the message
id the report will carry. JetStream de-duplicates Nats-Msg-Id across the whole stream; ids were content
hashes, which other nodes can compute. A real nats-server with JetStream."""

from __future__ import annotations

from decimal import Decimal

from sync.message_ids import message_id
from sync.results_sender import send_bundle
from sync.transport.nats import STREAM_RESULTS, NatsTransport
from tests.support.hierarchy import NOW, Hierarchy
from tests.support.receivers import Memory

COUNTY, TOWN = "res.51.5101.510104", "res.51.5101.510104.510104017"


async def test_a_forged_id_on_another_subject_no_longer_suppresses_a_report(nats_url: str) -> None:
    nats = await NatsTransport.connect(nats_url, "test")
    try:
        await nats.ensure_streams()
        content = "ab" * 32  # the county's next bundle id, which the township could compute
        await nats.publish(TOWN, b"junk from the township", content)  # first, on its own subject
        # The old scheme: the county's genuine report under the content id is dropped as a duplicate.
        lost = await nats.publish(COUNTY, b"the county's report", content)
        assert lost.duplicate
        # Now: the id carries 96 random bits the township cannot know, so JetStream stores the report.
        kept = await nats.publish(COUNTY, b"the county's report", message_id(content))
        assert not kept.duplicate and kept.stream == STREAM_RESULTS
        info = await nats.js.stream_info(STREAM_RESULTS)
        assert info.state.messages == 2
        stored = await nats.js.get_msg(STREAM_RESULTS, kept.seq)
        assert stored.subject == COUNTY and stored.data == b"the county's report"
        # Its own resend of the same outbox row is still de-duplicated (same id, same message).
        again = await nats.publish(COUNTY, b"the county's report", kept_id := message_id(content))
        assert not again.duplicate
        assert (await nats.publish(COUNTY, b"the county's report", kept_id)).duplicate
    finally:
        await nats.close()


async def test_every_outbox_row_gets_an_id_nobody_can_compute() -> None:
    h = Hierarchy.build()
    town = h.me("510104017")
    ids: list[str] = []
    for _ in range(2):  # the same content twice, from two stores: different ids
        mem = Memory()
        recorded: list[str] = []

        async def enqueue(subject: str, msg_id: str, payload: bytes, now: int, sink: list[str] = recorded) -> None:
            sink.append(msg_id)

        mem.outbox.enqueue = enqueue  # type: ignore[method-assign]
        bundle_id = await send_bundle(mem, town, cycle="2026", period="2026-Y", framework_digest="f" * 64,
                                      values={"A1": Decimal(1)}, child_scores=(), now=NOW)
        (msg_id,) = recorded
        content, _, nonce = msg_id.partition(".")
        assert content == bundle_id and len(nonce) == 24
        ids.append(msg_id)
    assert ids[0].split(".")[0] == ids[1].split(".")[0] and ids[0] != ids[1]
