"""The store interface, on SQLite and on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from nodes.store import Store


async def test_values_upsert_by_key(store: Store) -> None:
    async with store.tx() as tx:
        await tx.results.put(node="510104017", cycle="2026", period="2026-Y", framework_digest="d",
                            values={"A1": "1.5", "B1": "7"}, source="entered", bundle_id="b1", now=1)
    async with store.tx() as tx:
        await tx.results.put(node="510104017", cycle="2026", period="2026-Y", framework_digest="d",
                            values={"A1": "2.5"}, source="entered", bundle_id="b2", now=2)
    async with store.read() as r:
        assert await r.results.values("2026", "2026-Y", "d") == {"510104017": {"A1": "2.5", "B1": "7"}}


async def test_bulk_values_of_many_bundles_upsert_in_one_transaction(store: Store) -> None:
    """Past COPY_FROM rows PostgreSQL takes the batch by COPY into a staging table; twice in one
    transaction (the staging table starts empty each time), over rows held from before, and rolled
    back with the transaction like any other write."""
    from nodes.repositories._sql import COPY_FROM

    def batch(n: int, tag: str) -> dict[tuple[str, str, str, str, str], dict[str, str]]:
        return {("510104017", "2026", "2026-Y", "d", f"L{i:04d}"): {"value": f"{i}.{tag}", "bundle_id": tag * 64}
                for i in range(n)}

    n = COPY_FROM * 3
    async with store.tx() as tx:
        await tx.results.put_reported(batch(n, "1"), 1)
    async with store.tx() as tx:
        await tx.results.put_reported(batch(n // 2, "2"), 2)
        await tx.results.put_reported(batch(n // 4, "3"), 3)
    with pytest.raises(RuntimeError):
        async with store.tx() as tx:
            await tx.results.put_reported(batch(n, "4"), 4)
            raise RuntimeError("boom")
    async with store.read() as r:
        held = (await r.results.values("2026", "2026-Y", "d"))["510104017"]
        sources = {row.bundle_id[0] for row in await r.results.of_node("510104017")}
    assert len(held) == n and sources == {"1", "2", "3"}
    assert held["L0000"] == "0.3" and held[f"L{n // 4:04d}"] == f"{n // 4}.2" and held[f"L{n - 1:04d}"] == f"{n - 1}.1"


async def test_transaction_rolls_back_everything(store: Store) -> None:
    with pytest.raises(RuntimeError):
        async with store.tx() as tx:
            await tx.inbox.remember("51", "m1", 1)
            await tx.outbox.enqueue("casc.51", "m1", b"x", 1)
            await tx.audit.append("51", "test", "s", {}, 1)
            raise RuntimeError("boom")
    async with store.read() as r:
        assert not await r.inbox.seen("51", "m1")
        counts = await r.counts()
    assert counts["outbox_pending"] == 0 and counts["audit"] == 0


async def test_inbox_is_unique(store: Store) -> None:
    async with store.tx() as tx:
        await tx.inbox.remember("51", "m1", 1)
    with pytest.raises(IntegrityError):
        async with store.tx() as tx:
            await tx.inbox.remember("51", "m1", 2)


async def test_outbox_pending_then_sent(store: Store) -> None:
    async with store.tx() as tx:
        await tx.outbox.enqueue("casc.51", "a", b"1", 1)
        await tx.outbox.enqueue("casc.51", "b", b"2", 1)
    async with store.read() as r:
        rows = await r.outbox.pending()
    assert [row.msg_id for row in rows] == ["a", "b"]
    async with store.tx() as tx:
        await tx.outbox.mark_sent(rows[0].id, 2)
    async with store.read() as r:
        assert [row.msg_id for row in await r.outbox.pending()] == ["b"]


async def test_framework_versions_and_unique_version(store: Store) -> None:
    async with store.tx() as tx:
        for v in (1, 2):
            await tx.frameworks.put(digest=f"d{v}", issuer="51", cycle="2026", unit_class="市州", version=v,
                                   role="received", envelope=b"e", cascade=b"c", now=v)
    async with store.read() as r:
        latest = await r.frameworks.latest("51", "2026", "市州")
    assert latest is not None and latest.version == 2
    with pytest.raises(IntegrityError):
        async with store.tx() as tx:
            await tx.frameworks.put(digest="other", issuer="51", cycle="2026", unit_class="市州", version=2,
                                   role="received", envelope=b"e", cascade=b"c", now=3)


async def test_audit_chain_detects_tampering(store: Store) -> None:
    async with store.tx() as tx:
        for i in range(3):
            await tx.audit.append("51", "accept.framework", f"s{i}", {"i": i, "名": "四川"}, i)
    async with store.read() as r:
        assert await r.audit.verify() is None
    async with store.tx() as tx:
        await tx.conn.execute(text("UPDATE audit_log SET detail = :d WHERE seq = 2"), {"d": '{"i":9}'})
    async with store.read() as r:
        broken = await r.audit.verify()
    assert broken is not None and broken.seq == 2


async def test_bundles_and_scores(store: Store) -> None:
    async with store.tx() as tx:
        await tx.bundles.put(bundle_id="b1", node="5101", cycle="2026", period="2026-Y", seq=1, prev_hash="0" * 64,
                            framework_digest="d", message=b"m", now=1)
        await tx.bundles.put(bundle_id="b2", node="5101", cycle="2026", period="2026-Y", seq=2, prev_hash="b1",
                            framework_digest="d", message=b"m", now=2)
        await tx.scores.put([{"unit": "5101", "cycle": "2026", "period": "2026-Y", "framework_digest": "d",
                              "score": "99.5", "rank": 1, "explanation": "{}"}])
        await tx.scores.put([{"unit": "5101", "cycle": "2026", "period": "2026-Y", "framework_digest": "d",
                              "score": "98", "rank": 2, "explanation": "{}"}])
    async with store.read() as r:
        last = await r.bundles.last("5101")
        scores = await r.scores.list("2026")
    assert last is not None and last.id == "b2"
    assert [(s.score, s.rank) for s in scores] == [("98", 2)]


async def test_reopen_skips_current_migrations(store: Store) -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from nodes.store import MIGRATIONS, _schema_head

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(cfg).get_current_head() == _schema_head()
    async with store.tx() as tx:
        await tx.inbox.remember("51", "kept", 1)
    again = await Store.open(str(store.engine.url.render_as_string(hide_password=False)))
    try:
        async with again.read() as r:
            assert await r.inbox.seen("51", "kept")
    finally:
        await again.close()


async def test_stores_of_one_process_share_compiled_statements_and_keep_their_own_rows(
        store: Store, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """A node host's stores compile each statement once between them (nodes/store.py _adopt_shared),
    and sharing the dialect shares nothing else: each store still reads and writes its own database."""
    from sqlalchemy import select

    from nodes.tables import inbox
    from tests.support.pg import PgDatabases

    dbs = None
    if store.engine.dialect.name == "sqlite":
        other_url = f"sqlite+aiosqlite:///{tmp_path / 'other.db'}"
    else:
        dbs = PgDatabases(request.getfixturevalue("pg_admin_dsn"))
        other_url = await dbs.create()
    other = await Store.open(other_url)
    try:
        assert other.engine.sync_engine.dialect is store.engine.sync_engine.dialect
        async with store.tx() as tx:
            await tx.inbox.remember("51", "only-here", 1)
        stmt = select(inbox.c.msg_id).where(inbox.c.origin == "51")
        async with store.read() as r:
            first = await r.conn.execute(stmt)
            assert first.scalars().all() == ["only-here"]
        async with other.read() as r:
            second = await r.conn.execute(stmt)
            assert second.scalars().all() == []
        assert second.context.compiled is first.context.compiled
    finally:
        await other.close()
        if dbs is not None:
            await dbs.drop_all()


async def test_division_change_lists_keep_their_bytes_and_acceptance_order(store: Store) -> None:
    """区划调整: a list is kept exactly as signed with its issuer, number and sender, and read back in
    the order it was accepted (a province's list taken after a city's stays after it), not by issuer;
    a second list under one (issuer, seq) is refused by the store itself."""
    async with store.tx() as tx:
        await tx.division_changes.put(issuer="5118", seq=1, digest="a" * 64, envelope=b"\x00city\xff",
                                      sender="nats:casc.51.5118", now=5, base="nbs-2023")
        await tx.division_changes.put(issuer="51", seq=1, digest="b" * 64, envelope=b"prov", sender="grpc:5118", now=6,
                                      base="nbs-2023")
    with pytest.raises(IntegrityError):
        async with store.tx() as tx:
            await tx.division_changes.put(issuer="51", seq=1, digest="c" * 64, envelope=b"other", sender="x", now=7,
                                          base="nbs-2023")
    async with store.read() as r:
        held = await r.division_changes.all()
        assert [(h.issuer, h.seq, h.envelope, h.sender, h.accepted_at) for h in held] == [
            ("5118", 1, b"\x00city\xff", "nats:casc.51.5118", 5), ("51", 1, b"prov", "grpc:5118", 6)]
        assert held[0].position < held[1].position and held[0].base == "nbs-2023"
        assert [(x.issuer, x.seq, x.digest) for x in await r.division_changes.refs()] == [
            ("5118", 1, "a" * 64), ("51", 1, "b" * 64)]
        assert await r.division_changes.last_seq("51") == 1 and await r.division_changes.last_seq("5107") == 0
        got = await r.division_changes.get("5118", 1)
        assert got is not None and got.digest == "a" * 64 and await r.division_changes.get("5118", 2) is None
