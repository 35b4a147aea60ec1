"""Published results (公示 and final) and results-use lists, each version kept as signed."""

from __future__ import annotations

import builtins
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from nodes.tables import appeals, publications, use_lists

UNDECIDED = ("filed", "assigned")  # appeal states that hold a publication back from final


@dataclass(frozen=True)
class PublicationRecord:
    digest: str
    node: str
    cycle: str
    period: str
    unit_class: str
    framework_digest: str
    version: int
    state: str  # publicity | final
    public: bool
    opens_at: int
    closes_at: int
    reason: str
    role: str  # own | received
    envelope: bytes
    proof: bytes
    created_at: int
    created_by: str

    def open_at(self, now: int) -> bool:
        """Within its publicity window (appeals may be filed)."""
        return self.state == "publicity" and self.opens_at <= now < self.closes_at


@dataclass(frozen=True)
class UseListRecord:
    digest: str
    cycle: str
    list: str
    version: int
    envelope: bytes
    created_at: int
    created_by: str


def _pub(row: object) -> PublicationRecord:
    m = dict(row._mapping)  # type: ignore[attr-defined]
    m["public"] = bool(m["public"])
    return PublicationRecord(**m)


class PublicationRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def add(self, p: PublicationRecord) -> None:
        await self.conn.execute(publications.insert().values(**p.__dict__))

    async def get(self, digest: str) -> PublicationRecord | None:
        row = (await self.conn.execute(select(publications).where(publications.c.digest == digest))).first()
        return None if row is None else _pub(row)

    async def list(self, *, node: str | None = None, cycle: str | None = None, period: str | None = None,
                   unit_class: str | None = None, role: str | None = None) -> list[PublicationRecord]:
        """Oldest first, per (node, cycle, period, class) in version order."""
        q = select(publications)
        for col, want in ((publications.c.node, node), (publications.c.cycle, cycle), (publications.c.period, period),
                          (publications.c.unit_class, unit_class), (publications.c.role, role)):
            if want is not None:
                q = q.where(col == want)
        q = q.order_by(publications.c.node, publications.c.cycle, publications.c.period, publications.c.unit_class,
                       publications.c.version)
        return [_pub(r) for r in await self.conn.execute(q)]

    async def latest(self, node: str, cycle: str, period: str, unit_class: str) -> PublicationRecord | None:
        found = await self.list(node=node, cycle=cycle, period=period, unit_class=unit_class)
        return found[-1] if found else None

    async def current(self, node: str, *, cycle: str | None = None) -> builtins.list[PublicationRecord]:
        """The latest version per (cycle, period, class) of ``node``'s publications."""
        latest: dict[tuple[str, str, str], PublicationRecord] = {}
        for p in await self.list(node=node, cycle=cycle):
            latest[(p.cycle, p.period, p.unit_class)] = p
        return list(latest.values())


    async def open_appeals(self, digests: builtins.list[str]) -> int:
        """Appeals not yet decided against any of these publication versions."""
        if not digests:
            return 0
        q = select(func.count()).select_from(appeals).where(appeals.c.publication.in_(digests),
                                                            appeals.c.status.in_(UNDECIDED))
        return int((await self.conn.execute(q)).scalar_one())


class UseListRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def add(self, r: UseListRecord) -> None:
        await self.conn.execute(use_lists.insert().values(**r.__dict__))

    async def get(self, digest: str) -> UseListRecord | None:
        row = (await self.conn.execute(select(use_lists).where(use_lists.c.digest == digest))).first()
        return None if row is None else UseListRecord(**dict(row._mapping))

    async def list(self, cycle: str | None = None) -> list[UseListRecord]:
        q = select(use_lists).order_by(use_lists.c.cycle, use_lists.c.list, use_lists.c.version)
        if cycle is not None:
            q = q.where(use_lists.c.cycle == cycle)
        return [UseListRecord(**dict(r._mapping)) for r in await self.conn.execute(q)]
