"""Accounts and browser sessions (nodes/accounts.py says what they mean)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from nodes.tables import sessions, users


@dataclass(frozen=True)
class UserRecord:
    login: str
    name: str
    org: str
    roles: tuple[str, ...]
    units: tuple[str, ...]
    indicators: tuple[str, ...]
    password_hash: str
    must_change: bool
    oidc_subject: str
    disabled: bool
    failed_logins: int
    locked_until: int
    created_at: int
    updated_at: int


@dataclass(frozen=True)
class SessionRecord:
    token_hash: str
    login: str
    csrf: str
    via: str
    created_at: int
    expires_at: int
    last_seen: int


def _user(row: object) -> UserRecord:
    m = row._mapping  # type: ignore[attr-defined]
    return UserRecord(login=m["login"], name=m["name"], org=m["org"], roles=tuple(json.loads(m["roles"])),
                      units=tuple(json.loads(m["units"])), indicators=tuple(json.loads(m["indicators"])),
                      password_hash=m["password_hash"], must_change=bool(m["must_change"]),
                      oidc_subject=m["oidc_subject"], disabled=bool(m["disabled"]),
                      failed_logins=int(m["failed_logins"]), locked_until=int(m["locked_until"]),
                      created_at=int(m["created_at"]), updated_at=int(m["updated_at"]))


class UserRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def get(self, login: str) -> UserRecord | None:
        row = (await self.conn.execute(select(users).where(users.c.login == login))).first()
        return None if row is None else _user(row)

    async def by_subject(self, subject: str) -> UserRecord | None:
        if not subject:
            return None
        row = (await self.conn.execute(select(users).where(users.c.oidc_subject == subject))).first()
        return None if row is None else _user(row)

    async def all(self) -> list[UserRecord]:
        return [_user(r) for r in await self.conn.execute(select(users).order_by(users.c.login))]

    async def count(self) -> int:
        return len((await self.conn.execute(select(users.c.login))).all())

    async def add(self, u: UserRecord) -> None:
        await self.conn.execute(users.insert().values(
            login=u.login, name=u.name, org=u.org, roles=json.dumps(list(u.roles)), units=json.dumps(list(u.units)),
            indicators=json.dumps(list(u.indicators)), password_hash=u.password_hash, must_change=u.must_change,
            oidc_subject=u.oidc_subject, disabled=u.disabled, failed_logins=u.failed_logins,
            locked_until=u.locked_until, created_at=u.created_at, updated_at=u.updated_at))

    async def change(self, login: str, now: int, **fields: object) -> None:
        values = {k: json.dumps(list(v)) if k in ("roles", "units", "indicators") else v  # type: ignore[call-overload]
                  for k, v in fields.items()}
        await self.conn.execute(update(users).where(users.c.login == login).values(updated_at=now, **values))

    async def note_failure(self, login: str, lock_after: int, lock_until: int) -> tuple[int, bool]:
        """One more failed login; returns (failures in a row, locked now)."""
        row = (await self.conn.execute(select(users.c.failed_logins).where(users.c.login == login))).first()
        failures = (int(row[0]) if row else 0) + 1
        locked = failures >= lock_after
        await self.conn.execute(update(users).where(users.c.login == login).values(
            failed_logins=0 if locked else failures, locked_until=lock_until if locked else users.c.locked_until))
        return failures, locked

    # --- sessions
    async def open_session(self, s: SessionRecord) -> None:
        await self.conn.execute(sessions.insert().values(
            token_hash=s.token_hash, login=s.login, csrf=s.csrf, via=s.via, created_at=s.created_at,
            expires_at=s.expires_at, last_seen=s.last_seen))

    async def session(self, token_hash: str) -> SessionRecord | None:
        row = (await self.conn.execute(select(sessions).where(sessions.c.token_hash == token_hash))).first()
        return None if row is None else SessionRecord(*row)

    async def touch(self, token_hash: str, now: int) -> None:
        await self.conn.execute(update(sessions).where(sessions.c.token_hash == token_hash).values(last_seen=now))

    async def close_session(self, token_hash: str) -> None:
        await self.conn.execute(delete(sessions).where(sessions.c.token_hash == token_hash))

    async def close_sessions_of(self, login: str) -> int:
        return int((await self.conn.execute(delete(sessions).where(sessions.c.login == login))).rowcount or 0)

    async def sweep(self, now: int) -> None:
        await self.conn.execute(delete(sessions).where(sessions.c.expires_at <= now))
