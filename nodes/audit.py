"""The audit log's hash chain: one definition, used by the store, the CLI and external verifiers.

Entry hash = sha256 of the compact JSON array
``[prev_hash, seq, at, actor, action, subject, detail]`` (UTF-8, no spaces, non-ASCII kept),
where ``detail`` is the stored JSON text and the first entry's ``prev_hash`` is 64 zeros.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

GENESIS = "0" * 64
FIELDS = ("seq", "at", "actor", "action", "subject", "detail", "prev_hash", "hash")


@dataclass(frozen=True)
class AuditBreak:
    seq: int
    reason: str


def entry_hash(prev: str, seq: int, at: int, actor: str, action: str, subject: str, detail: str) -> str:
    canon = json.dumps([prev, seq, at, actor, action, subject, detail], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()


def verify_entries(entries: Iterable[Mapping[str, Any]], prev: str = GENESIS,
                   first: int = 1) -> tuple[int, AuditBreak | None]:
    """Walk the chain; return how many entries were checked and the first break, if any.

    ``prev`` and ``first``: where the walk starts, the hash before entry ``first`` (from genesis by
    default; from a verified checkpoint to check only what came after it)."""
    expected, count = first, 0
    for e in entries:
        count += 1
        try:
            seq, at = int(e["seq"]), int(e["at"])
            actor, action, subject, detail = (str(e[k]) for k in ("actor", "action", "subject", "detail"))
            stored_prev, stored_hash = str(e["prev_hash"]), str(e["hash"])
        except (KeyError, TypeError, ValueError):
            return count, AuditBreak(expected, "条目缺少字段或字段无效 (entry malformed)")
        if seq != expected:
            return count, AuditBreak(seq, f"序号不连续，应为 {expected} (sequence gap)")
        if stored_prev != prev:
            return count, AuditBreak(seq, "前序哈希不符 (previous hash does not match)")
        if entry_hash(prev, seq, at, actor, action, subject, detail) != stored_hash:
            return count, AuditBreak(seq, "条目内容与哈希不符 (entry altered)")
        prev, expected = stored_hash, expected + 1
    return count, None
