"""Trust state that must survive a restart: revocation lists in force and keys seen per serial."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from nodes.repositories._sql import dialect_insert, upsert
from nodes.tables import node_keys, revocation_lists
from sync.ports import KeyRecord, RevocationRecord
from sync.trust import CertInfo


class TrustRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def put_revocations(self, issuer: str, version: int, envelope: bytes, now: int) -> None:
        await upsert(self.conn, revocation_lists, [{"issuer": issuer, "version": version, "envelope": envelope,
                                                    "received_at": now}], ["issuer"], ["version", "envelope", "received_at"])

    async def revocation_lists(self) -> list[RevocationRecord]:
        return [RevocationRecord(*row) for row in
                await self.conn.execute(select(revocation_lists).order_by(revocation_lists.c.issuer))]

    async def put_keys(self, infos: Sequence[CertInfo], now: int) -> None:
        """Remember (node, serial) → key; the first one seen stays (a different key later is a fork)."""
        if not infos:
            return
        stmt = dialect_insert(self.conn, node_keys).on_conflict_do_nothing(index_elements=["code", "serial"])
        await self.conn.execute(stmt, [{"code": i.code, "serial": i.serial, "keyid": i.keyid, "issuer": i.issuer,
                                        "previous_keyid": i.previous_keyid, "seen_at": now} for i in infos])

    async def known_keys(self) -> list[KeyRecord]:
        return [KeyRecord(*row) for row in
                await self.conn.execute(select(node_keys).order_by(node_keys.c.code, node_keys.c.serial))]
