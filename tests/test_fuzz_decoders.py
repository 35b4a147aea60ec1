"""Every decoder of bytes from the wire, fuzzed: random and mutated input is refused with a clear
EnvelopeError — never another exception, never a partial write."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nodes.store import Store
from sync.cascade_receiver import receive_cascade, verify_framework_chain
from sync.codec import decode_bundle, decode_framework
from sync.envelope import PAYLOAD_FRAMEWORK, EnvelopeError, open_envelope
from sync.results_receiver import receive_results, verify_result_message
from tests.support.hierarchy import NOW, Hierarchy

H = Hierarchy.build()
GOOD_CASCADE = H.cascade_to_county()
GOOD_FRAMEWORK = open_envelope(H.signed("51", H.province_framework())[0], PAYLOAD_FRAMEWORK).payload


@st.composite
def mutated(draw: st.DrawFn, seed: bytes) -> bytes:
    """A valid message with a few bytes flipped, cut or inserted."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert"]))
        i = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[i] ^= draw(st.integers(1, 255))
        elif op == "cut":
            del data[i: i + draw(st.integers(1, 16))]
        else:
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
    return bytes(data)


wire = st.one_of(st.binary(max_size=2048), mutated(GOOD_CASCADE))


def only_envelope_errors(fn: object, data: bytes) -> None:
    with contextlib.suppress(EnvelopeError):  # the one acceptable failure; anything else fails the test
        fn(data)  # type: ignore[operator]


@settings(max_examples=300, deadline=None)
@given(wire)
def test_pure_decoders_refuse_cleanly(data: bytes) -> None:
    only_envelope_errors(lambda d: open_envelope(d, PAYLOAD_FRAMEWORK), data)
    only_envelope_errors(lambda d: verify_framework_chain(d, H.root, NOW), data)
    only_envelope_errors(lambda d: verify_result_message(H.me("510104"), d, NOW, None), data)
    only_envelope_errors(decode_bundle, data)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.binary(max_size=1024), mutated(GOOD_FRAMEWORK)))
def test_framework_payload_decoder_refuses_cleanly(data: bytes) -> None:
    only_envelope_errors(decode_framework, data)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(wire, min_size=1, max_size=5))
def test_receivers_write_nothing_but_audit(tmp_path: Path, batch: list[bytes]) -> None:
    async def run() -> None:
        store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'fuzz.db'}")
        try:
            async with store.read() as r:
                before = await r.counts()

            async def nothing(*_: object) -> None:
                return None

            accepted = False
            for data in batch:
                # A mutation that leaves every signed byte intact (e.g. an unknown field added to the
                # unsigned wrapper) may rightly be accepted; anything else must be refused.
                county = await receive_cascade(store, H.me("510104"), data, NOW, nothing)
                results = await receive_results(store, H.me("510104"), data, NOW, nothing)
                accepted |= county.accepted or results.accepted
            async with store.read() as r:
                after = await r.counts()
                assert await r.audit.verify() is None
            if not accepted:
                assert {k: v for k, v in after.items() if k not in ("audit", "rejected")} == \
                    {k: v for k, v in before.items() if k not in ("audit", "rejected")}
        finally:
            await store.close()

    asyncio.run(run())
