"""`appraise audit verify` / `export` on a real node store: intact, then tampered."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from nodes.config import load_config
from nodes.launcher import Federation, load_topology
from nodes.store import Store


def appraise(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nodes.cli", *args], capture_output=True, text=True, timeout=60,
                          check=False)


def test_verify_export_and_tamper(tmp_path: Path) -> None:
    fed = Federation(tmp_path / "fed", load_topology())
    fed.prepare()
    config = fed.node_dir("5101") / "node.yaml"

    async def fill() -> None:
        store = await Store.open(load_config(config).store_url)
        async with store.tx() as tx:
            for i in range(5):
                await tx.audit.append("5101", "accept.results", f"b{i}", {"seq": i, "单位": "锦江区"}, 1_700_000_000 + i)
        await store.close()

    asyncio.run(fill())
    # No federation runs here, so no parent to hold an anchor: the local chain only (the anchor is
    # checked against a running parent in tests/test_federation.py).
    unreachable = appraise("audit", "verify", "--config", str(config))
    assert unreachable.returncode == 2 and "--no-anchor" in unreachable.stderr
    ok = appraise("audit", "verify", "--config", str(config), "--no-anchor")
    assert ok.returncode == 0 and "5 条" in ok.stdout, ok.stderr
    export = tmp_path / "audit.jsonl"
    assert appraise("audit", "export", "--config", str(config), "--out", str(export)).returncode == 0
    assert appraise("audit", "verify", "--file", str(export)).returncode == 0
    # An auditor's copy altered in one entry, and the node's own database altered in place.
    lines = export.read_text(encoding="utf-8").splitlines()
    entry = json.loads(lines[2])
    entry["detail"] = entry["detail"].replace("锦江区", "青羊区")
    lines[2] = json.dumps(entry, ensure_ascii=False)
    export.write_text("\n".join(lines) + "\n", encoding="utf-8")
    bad = appraise("audit", "verify", "--file", str(export))
    assert bad.returncode == 1 and "entry 3" in bad.stderr and "altered" in bad.stderr
    db = sqlite3.connect(fed.node_dir("5101") / "node.db")
    db.execute("DELETE FROM audit_log WHERE seq = 4")
    db.commit()
    db.close()
    gap = appraise("audit", "verify", "--config", str(config), "--no-anchor")
    assert gap.returncode == 1 and "entry 5" in gap.stderr and "sequence gap" in gap.stderr


def test_a_full_verification_finds_an_edit_that_the_checkpoint_hides(tmp_path: Path) -> None:
    """The node verifies from its checkpoint on (nodes/services/audit_log.py), so an entry edited
    before it goes unseen there; ``appraise audit verify`` walks from genesis and names it."""
    from sqlalchemy import text

    from nodes.runtime import build_services

    fed = Federation(tmp_path / "fed", load_topology())
    fed.prepare()
    config = fed.node_dir("5101") / "node.yaml"

    async def fill_verify_tamper() -> tuple[int, bool]:
        cfg = load_config(config)
        store = await Store.open(cfg.store_url)
        try:
            node = build_services(cfg, store)
            async with store.tx() as tx:
                await tx.audit.append_many([("5101", "accept.results", f"b{i}", {"seq": i}) for i in range(5)],
                                           1_700_000_000)
            verified = (await node.audit.verify()).verified_seq
            async with store.tx() as tx:
                await tx.conn.execute(text("UPDATE audit_log SET detail = :d WHERE seq = 2"), {"d": '{"seq":9}'})
            return verified, (await node.audit.verify()).intact
        finally:
            await store.close()

    assert asyncio.run(fill_verify_tamper()) == (5, True)
    bad = appraise("audit", "verify", "--config", str(config))
    assert bad.returncode == 1 and "entry 2" in bad.stderr and "altered" in bad.stderr
