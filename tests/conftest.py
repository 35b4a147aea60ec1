"""Shared fixtures: a real PostgreSQL (from FEDAPPRAISAL_TEST_PG, 127.0.0.1:5432, or a throwaway
pgserver), a store on each backend, a county holding its townships' framework on that store, and a
federation of real processes kept up for a module. Also the Hypothesis profiles (dev and ci).

The helpers behind these live in tests/support/, which test modules import from (never from each other)."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from aggregator.framework import Framework
from nodes.launcher import Federation
from nodes.store import Store
from sync.identity import Me
from tests.support.federation import Client, serving
from tests.support.hierarchy import Hierarchy
from tests.support.pg import PgDatabases
from tests.support.receivers import _county_with_framework


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


# dev: Hypothesis's own defaults. ci: the same number of examples, but no test fails on timing alone on a
# loaded runner (no deadline, no too-slow health check), a failure prints the blob that reproduces it, and
# every run explores afresh. HYPOTHESIS_PROFILE names the profile; without it CI=true (as CI runs) means ci.
# (pytest --hypothesis-profile NAME still overrides both.)
settings.register_profile("dev", settings.get_profile("default"))
settings.register_profile("ci", settings.get_profile("default"), max_examples=100, deadline=None, print_blob=True,
                          derandomize=False, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if _in_ci() else "dev"))


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def pg_admin_dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A libpq DSN of a PostgreSQL server we may create databases in."""
    env = os.environ.get("FEDAPPRAISAL_TEST_PG")
    if env:
        yield env
        return
    if _reachable("127.0.0.1", 5432):
        yield "postgresql://postgres@127.0.0.1:5432/postgres"
        return
    import pgserver

    server = pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="stop")
    yield server.get_uri()


@pytest.fixture
async def pg_databases(pg_admin_dsn: str) -> AsyncIterator[PgDatabases]:
    dbs = PgDatabases(pg_admin_dsn)
    yield dbs
    await dbs.drop_all()


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """The same store interface on every backend."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'node.db'}"
        dbs = None
    else:
        dbs = PgDatabases(request.getfixturevalue("pg_admin_dsn"))
        url = await dbs.create()
    s = await Store.open(url)
    yield s
    await s.close()
    if dbs is not None:
        await dbs.drop_all()


@pytest.fixture
async def county_with_framework(store: Store, h: Hierarchy) -> tuple[Me, Framework, str]:
    """锦江区 on ``store``, holding 成都市's framework and having issued its own to its two townships:
    (the county, that framework, its digest). ``h`` is the test module's own ``Hierarchy`` fixture."""
    return await _county_with_framework(store, h)


@pytest.fixture(scope="module")
def serve_federation() -> Iterator[Callable[[Federation], Client]]:
    """``serve_federation(fed)`` starts NATS and every node of ``fed``, waits until each answers and returns a
    client; everything it started is stopped once the module's tests are done (the last started, first)."""
    with contextlib.ExitStack() as stack:
        yield lambda fed: stack.enter_context(serving(fed))


@pytest.fixture
def nats_url(tmp_path: Path) -> Iterator[str]:
    """A nats-server of its own with JetStream, on a free port, for one test."""
    import subprocess
    import time

    from nodes.launcher import free_port, nats_server_binary

    port = free_port()
    proc = subprocess.Popen([nats_server_binary(), "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(tmp_path / "js")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not _reachable("127.0.0.1", port):
        time.sleep(0.05)
    yield f"nats://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)
