"""Benchmark: verified-and-stored result values per second into one node, through its real receive path.

    .venv/bin/python bench/ingest.py [--bundles N] [--pg postgresql://…]

A county node receives signed result bundles (120 values each) from its townships, a fetched batch
at a time (``--batch``, the NATS consumer's default): envelope and certificate-chain verification,
chain and content checks, then inbox rows, bundles, values and audit entries of the whole batch in
one transaction. Measured on SQLite and on PostgreSQL, side by side with the
raw ceilings in the same run: Ed25519 verifications per second, and asyncpg ``copy_records_to_table``
of the same rows. ``catchup_1000_bundles_s``: a county that missed 1,000 bundles of one township
pulls them from the township's store over real gRPC (FetchBundles, as many rounds as the reply cap
needs) and takes them through the same path. The last line is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aggregator.framework import Framework, Indicator, Unit
from nodes.store import Store
from sync import keys
from sync.cascade_sender import issue_framework
from sync.envelope import PAYLOAD_RESULTS, sign
from sync.identity import Me
from sync.results_receiver import receive_results_batch
from sync.results_sender import send_bundle
from sync.transport.nats import BATCH
from sync.trust import issue_certificate, root_identity

LEAVES = 120
NOW = int(time.time())


class _Chain:
    """The township's own chain, as send_bundle reads and writes it: only the tip matters here."""

    def __init__(self) -> None:
        self.tip: Any = None

    async def last(self, node: str) -> Any:
        return self.tip

    async def put(self, **kw: Any) -> None:
        from types import SimpleNamespace

        self.tip = SimpleNamespace(id=kw["bundle_id"], seq=kw["seq"])


class _Outbox:
    def __init__(self, messages: list[bytes]) -> None:
        self.messages = messages

    async def enqueue(self, subject: str, msg_id: str, payload: bytes, now: int) -> None:
        self.messages.append(payload)


class _NoAudit:
    async def append(self, *args: Any) -> None:
        return None


class Memory:
    """The townships' sending side, in memory: only the signed messages matter here (the repositories
    send_bundle uses: bundles, outbox, audit)."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.bundles = _Chain()
        self.outbox = _Outbox(self.messages)
        self.audit = _NoAudit()


def hierarchy() -> tuple[Me, list[Me]]:
    k = {c: keys.generate() for c in ("51", "5101", "510104", "510104017", "510104018")}
    root = root_identity("51", "四川省", k["51"].public_key())

    def cert(issuer: str, code: str, level: str) -> bytes:
        return issue_certificate(k[issuer], issuer, code=code, name=code, level=level, public_key=k[code].public_key(),
                                 serial=1, not_before=NOW - 60, not_after=NOW + 86400)

    city = cert("51", "5101", "city")
    county_chain = (city, cert("5101", "510104", "county"))
    towns = [Me(code=t, name=t, level="township", path=("51", "5101", "510104", t), key=k[t],
                chain=(*county_chain, cert("510104", t, "township")), root=root, parent="510104", children={})
             for t in ("510104017", "510104018")]
    county = Me(code="510104", name="锦江区", level="county", path=("51", "5101", "510104"), key=k["510104"],
                chain=county_chain, root=root, parent="5101", children={t.code: t.code for t in towns})
    return county, towns


def framework(towns: list[Me]) -> Framework:
    inds = [Indicator(code="G", name="G", weight=Decimal(100))]
    inds += [Indicator(code=f"L{j:03d}", name=f"L{j:03d}", weight=Decimal("0.8") if j < 80 else Decimal("0.9"),
                       parent_code="G", leaf=True, target=Decimal(1000)) for j in range(LEAVES)]
    return Framework("510104", "锦江区", "2026", "乡镇街道", 1, "bench", NOW, NOW + 86400,
                     tuple(Unit(t.code, t.code) for t in towns), tuple(inds))


async def messages(towns: list[Me], digest: str, per_town: int) -> list[tuple[bytes, str]]:
    """Signed messages with the subject each township publishes on, interleaved as they would arrive."""
    mems = {t.code: Memory() for t in towns}
    for i in range(per_town):
        for t in towns:
            values = {f"L{j:03d}": Decimal(1000 + i + j) for j in range(LEAVES)}
            await send_bundle(mems[t.code], t, cycle="2026", period="2026-Y", framework_digest=digest, values=values,
                              child_scores=(), now=NOW)
    return [(mems[t.code].messages[n], t.results_subject()) for n in range(per_town) for t in towns]


async def catchup(tmp: str, count: int, batch: int) -> float:
    """The township holds ``count`` bundles its county never saw; the county pulls them over gRPC."""
    from sync.results_receiver import pull_missing
    from sync.results_sender import bundles_for_parent
    from sync.transport.grpc import FederationClient, FederationServicer, start_server

    county, towns = hierarchy()
    town = towns[0]
    county_store = await Store.open(f"sqlite+aiosqlite:///{tmp}/catchup-county.db")
    town_store = await Store.open(f"sqlite+aiosqlite:///{tmp}/catchup-town.db")
    server = None
    client = None
    try:
        async with county_store.tx() as tx:
            digest = await issue_framework(tx, county, framework(towns), [], NOW)
        async with town_store.tx() as tx:
            for i in range(count):
                values = {f"L{j:03d}": Decimal(1000 + i + j) for j in range(LEAVES)}
                await send_bundle(tx, town, cycle="2026", period="2026-Y", framework_digest=digest, values=values,
                                  child_scores=(), now=NOW)

        class Township:
            """Answers only FetchBundles, as the township's node does."""

            async def fetch_bundles(self, requester: str, after_seq: int) -> list[bytes]:
                return await bundles_for_parent(town_store, town, requester, after_seq)

            async def fetch_frameworks(self, *_: Any) -> Any:
                raise RuntimeError("not used")

            submit_results = query = fetch_frameworks

        server, port = await start_server("127.0.0.1:0", FederationServicer(Township()))
        client = FederationClient(f"127.0.0.1:{port}")

        async def fetch(after_seq: int) -> list[bytes]:
            assert client is not None
            return await client.fetch_bundles(county.code, after_seq)

        async def nothing(tx: Any, bundles: Any) -> None:
            return None

        t0 = time.perf_counter()
        outcomes = await pull_missing(county_store, county, town.code, fetch, lambda: NOW, nothing, batch)
        elapsed = time.perf_counter() - t0
        taken = sum(o.accepted and not o.duplicate for o in outcomes)
        if taken != count:
            raise RuntimeError(f"caught up {taken} of {count} bundles")
        return elapsed
    finally:
        if client is not None:
            await client.close()
        if server is not None:
            await server.stop(grace=None)
        await county_store.close()
        await town_store.close()


async def ingest(url: str, count: int, batch: int) -> tuple[float, float]:
    county, towns = hierarchy()
    store = await Store.open(url)
    try:
        async with store.tx() as tx:
            digest = await issue_framework(tx, county, framework(towns), [], NOW)
        msgs = await messages(towns, digest, count // 2)

        async def nothing(tx: Any, bundle: Any) -> None:
            return None

        t0 = time.perf_counter()
        for start in range(0, len(msgs), batch):  # as the NATS consumer hands them over: one fetch, one transaction
            for outcome in await receive_results_batch(store, county, msgs[start:start + batch], NOW, nothing):
                if not outcome.accepted:
                    raise RuntimeError(outcome.reason)
        elapsed = time.perf_counter() - t0
        async with store.read() as r:
            kept = (await r.counts())["bundles"]
        if kept != len(msgs):  # every bundle taken into its township's chain
            raise RuntimeError(f"expected {len(msgs)} bundles stored, found {kept}")
        return len(msgs) * LEAVES / elapsed, elapsed
    finally:
        await store.close()


def verify_rate(seconds: float = 1.5) -> float:
    key = keys.generate()
    env = sign(PAYLOAD_RESULTS, os.urandom(3000), key)
    from sync.envelope import open_envelope, verify_signature

    opened = open_envelope(env, PAYLOAD_RESULTS)
    pub = key.public_key()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        verify_signature(opened, pub)
        n += 1
    return n / (time.perf_counter() - t0)


async def copy_ceiling(dsn: str, rows: int) -> float:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE TEMP TABLE r (node text, cycle text, period text, framework_digest text, "
                           "indicator text, value text, source text, bundle_id text, updated_at bigint)")
        records = [("510104017", "2026", "2026-Y", "d" * 64, f"L{i % LEAVES:03d}", str(1000 + i), "reported", "b" * 64,
                    NOW) for i in range(rows)]
        t0 = time.perf_counter()
        await conn.copy_records_to_table("r", records=records)
        return rows / (time.perf_counter() - t0)
    finally:
        await conn.close()


async def pg_database(dsn: str) -> tuple[str, str]:
    import asyncpg

    name = f"fa_ingest_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    base = dsn.split("?", maxsplit=1)[0].rsplit("/", 1)[0]
    return name, f"{base}/{name}"


async def drop(dsn: str, name: str) -> None:
    import asyncpg

    admin = await asyncpg.connect(dsn)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"bundle_values": LEAVES, "bundles": args.bundles}
    with tempfile.TemporaryDirectory() as tmp:
        out["sqlite_values_per_s"], _ = await ingest(f"sqlite+aiosqlite:///{tmp}/county.db", args.bundles, args.batch)
        print(f"SQLite: {out['sqlite_values_per_s']:,.0f} values/s through the receive path "
              f"(target 100,000: {out['sqlite_values_per_s'] / 100_000:.2f}×)")
        out["catchup_1000_bundles_s"] = await catchup(tmp, 1000, args.batch)
        print(f"catch-up of 1,000 missed bundles over gRPC into SQLite: {out['catchup_1000_bundles_s']:.2f} s")
    try:
        name, url = await pg_database(args.pg)
        try:
            out["postgres_values_per_s"], _ = await ingest(url.replace("postgresql://", "postgresql+asyncpg://"),
                                                           args.bundles, args.batch)
            print(f"PostgreSQL: {out['postgres_values_per_s']:,.0f} values/s through the receive path "
                  f"(target 100,000: {out['postgres_values_per_s'] / 100_000:.2f}×)")
            out["copy_ceiling_rows_per_s"] = await copy_ceiling(url, args.bundles * LEAVES)
            print(f"ceiling: asyncpg copy_records_to_table {out['copy_ceiling_rows_per_s']:,.0f} rows/s")
        finally:
            await drop(args.pg, name)
    except OSError as exc:
        print(f"PostgreSQL skipped: {exc}")
        out["postgres_values_per_s"] = out["copy_ceiling_rows_per_s"] = None
    out["verify_per_s"] = verify_rate()
    print(f"ceiling: Ed25519 verifications {out['verify_per_s']:,.0f}/s "
          f"(a bundle costs 1 once its sender's certificate chain is remembered)")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundles", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=BATCH, help="bundles per fetch and transaction (the node's default)")
    ap.add_argument("--pg", default=os.environ.get("FEDAPPRAISAL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres"))
    out = asyncio.run(main_async(ap.parse_args()))
    print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in out.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
