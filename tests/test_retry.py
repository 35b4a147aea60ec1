"""One retry policy (sync/retry.py): backoff with full jitter under a cap, and a give-up that is never
silent — audited, in /api/v1/sync and for `appraise status`."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync.retry import GaveUp, RetryPolicy
from tests.support.nodes import make_county


@given(attempt=st.integers(1, 60), initial=st.floats(0.01, 2), cap=st.floats(0.05, 30), seed=st.integers(0, 2**32))
def test_every_pause_is_jittered_under_its_cap(attempt: int, initial: float, cap: float, seed: int) -> None:
    policy = RetryPolicy(initial=initial, cap=cap, rng=random.Random(seed))
    delay = policy.delay(attempt)
    ceiling = min(cap, initial * 2 ** (attempt - 1))
    assert initial / 10 <= delay <= max(ceiling, initial / 10)


def test_pauses_grow_then_stop_growing() -> None:
    policy = RetryPolicy(initial=0.5, cap=5.0, rng=random.Random(1))
    means = [sum(policy.delay(a) for _ in range(2000)) / 2000 for a in (1, 2, 3, 4, 8, 20)]
    assert means[0] < means[1] < means[2] < means[3]
    assert abs(means[4] - 2.5) < 0.2 and abs(means[5] - 2.5) < 0.2  # full jitter under the 5 s cap


async def test_a_bounded_loop_reports_its_give_up_then_raises() -> None:
    calls: list[int] = []
    reported: list[str] = []

    async def fails() -> None:
        calls.append(1)
        raise ConnectionError("refused")

    async def report(reason: str) -> None:
        reported.append(reason)

    policy = RetryPolicy(initial=0.001, cap=0.002, attempts=3)
    with pytest.raises(GaveUp) as gave_up:
        await policy.run(fails, what="test", on_give_up=report)
    assert len(calls) == 3 and len(reported) == 1 and "3" in reported[0] and "refused" in reported[0]
    assert gave_up.value.code == "transport.gave_up"


async def test_catch_up_that_gives_up_says_so_everywhere(tmp_path: Path) -> None:
    # 锦江区's parent (成都市) is not running: every catch-up attempt fails.
    node, _fed = await make_county(tmp_path, limits={"catch_up_attempts": 2, "retry_initial_seconds": 0.01,
                                                      "retry_cap_seconds": 0.02, "rpc_timeout_seconds": 0.5})
    try:
        await node.watch.catch_up()
        async with node.context.store.read() as r:
            audited = await r.audit.entries(action="gave_up.catch_up")
        assert len(audited) == 1 and "2" in audited[0].detail and "transport.gave_up" in audited[0].detail
        status = await node.read.sync_status()
        assert [g["what"] for g in status["gave_up"]] == ["catch-up"]
        assert "catch-up" in node.context.health.last_error
    finally:
        await node.context.store.close()


async def test_appraise_status_exits_1_after_a_give_up(tmp_path: Path) -> None:
    import asyncio
    import subprocess
    import sys

    import uvicorn

    from gateway.app import create_app
    from nodes.launcher import free_port
    from nodes.runtime import gateway_services

    node, _fed = await make_county(tmp_path, limits={"catch_up_attempts": 1, "retry_initial_seconds": 0.01,
                                                      "rpc_timeout_seconds": 0.5})
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(gateway_services(node)), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.02)
        await node.watch.catch_up()
        appraise = Path(sys.executable).parent / "appraise"
        done = await asyncio.to_thread(subprocess.run, [str(appraise), "status", "--gateway", f"http://127.0.0.1:{port}"],
                                       capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 1, done.stdout + done.stderr
        assert "已放弃 (gave up) catch-up" in done.stdout
    finally:
        server.should_exit = True
        await serving
        await node.context.store.close()
