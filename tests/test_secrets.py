"""Secrets are created readable by the node's user only: node.yaml (it holds the NATS password) and a
new SQLite store, like the keys and the admin token; the demo prints neither the operator's NATS
password nor a token, but says where each node's admin token is."""

from __future__ import annotations

import stat
from pathlib import Path

from nodes.launcher import Federation, load_topology
from nodes.store import Store


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_generated_configurations_keys_and_tokens_are_private(tmp_path: Path) -> None:
    fed = Federation(tmp_path / "fed", load_topology())
    fed.prepare()
    for spec in fed.specs:
        d = fed.node_dir(spec.code)
        assert mode(d / "node.yaml") == 0o600, spec.code
        assert mode(d / "admin.token") == 0o600 and mode(d / "key.pem") == 0o600, spec.code
    assert "nats://node-51:" in (fed.node_dir("51") / "node.yaml").read_text(encoding="utf-8")  # why it is secret


async def test_a_new_sqlite_store_is_private_and_an_existing_one_keeps_its_mode(tmp_path: Path) -> None:
    new = tmp_path / "node.db"
    store = await Store.open(f"sqlite+aiosqlite:///{new}")
    async with store.tx() as tx:
        await tx.audit.append("t", "test", "s", {}, 1)
    await store.close()
    assert mode(new) == 0o600
    for extra in (tmp_path / "node.db-wal", tmp_path / "node.db-shm"):
        if extra.exists():
            assert mode(extra) == 0o600, extra
    kept = tmp_path / "shared.db"
    kept.touch(mode=0o640)
    kept.chmod(0o640)
    store = await Store.open(f"sqlite+aiosqlite:///{kept}")
    await store.close()
    assert mode(kept) == 0o640
