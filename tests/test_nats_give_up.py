"""A stream message that can never be settled is given up after ``limits.max_deliveries`` deliveries,
handed to the give-up callback (the node audits it and lists it in /api/v1/sync) and terminated: a real
nats-server with JetStream, started for this test."""

from __future__ import annotations

import asyncio

from sync.limits import Limits
from sync.transport.nats import STREAM_RESULTS, NatsTransport


async def test_an_unsettled_message_is_given_up_once_after_max_deliveries(nats_url: str) -> None:
    limits = Limits(max_deliveries=3, redelivery_seconds=0.1)
    transport = await NatsTransport.connect(nats_url, "test", limits=limits)
    deliveries: list[str] = []
    gave_up: list[tuple[str, bytes, str]] = []

    async def never(msgs: list[tuple[str, bytes]]) -> list[bool]:
        deliveries.extend(s for s, _ in msgs)
        return [False] * len(msgs)  # e.g. waiting for an earlier bundle that never comes

    async def give_up(subject: str, data: bytes, reason: str) -> None:
        gave_up.append((subject, data, reason))

    try:
        await transport.ensure_streams()
        await transport.publish("res.51.5101", b"stuck", "m1")
        transport.consume(STREAM_RESULTS, "res-51", "res.51.*", never, give_up, batch=4)
        for _ in range(200):
            if gave_up:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # a terminated message is never delivered again
    finally:
        await transport.close()
    assert deliveries == ["res.51.5101"] * 3
    assert len(gave_up) == 1 and gave_up[0][:2] == ("res.51.5101", b"stuck") and "3" in gave_up[0][2]
