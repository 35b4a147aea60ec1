"""Accounts, passwords and sessions of the node's web application.

Passwords are hashed with Argon2id (argon2-cffi's defaults, RFC 9106's second recommendation) in a
worker thread, so a sign-in never stalls the event loop. An unknown login is checked against a dummy
hash so it takes as long as a wrong password (no account enumeration by timing). After
``lockout_attempts`` wrong passwords in a row the account is locked for ``lockout_minutes``; while
locked, no password is even tried. Every change to an account, every sign-in and every refusal is in
the audit log with the person who did it. There is no default password: an account made or reset by
someone else gets a one-time password, shown once, that must be changed at the first sign-in.

Sessions: the browser holds a random 256-bit token; the store keeps only its SHA-256, with a CSRF
token, an absolute expiry and the last request time (idle expiry). Disabling an account or resetting
its password ends its sessions.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from aggregator.errors import BadInput, Conflict, NotFound
from nodes.accounts import (
    ROLES,
    Principal,
    WebSettings,
    check_login,
    check_name,
    check_password,
    check_roles,
    check_subject,
)
from nodes.repositories.users import SessionRecord, UserRecord
from nodes.services.context import NodeContext
from nodes.store import Tx
from sync.ports import Occurrence

_HASHER = PasswordHasher()
_DUMMY = _HASHER.hash(secrets.token_urlsafe(16))
TOUCH_EVERY = 60  # seconds: a session's last_seen is written at most this often


class SignInRefused(BadInput):
    """Wrong login or password, a locked or disabled account: one message that does not say which
    (the audit log does)."""

    default_code = "auth.failed"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def one_time_password() -> str:
    return secrets.token_urlsafe(12)  # 16 characters, 96 bits


@dataclass(frozen=True)
class Session:
    token: str  # for the cookie; never stored
    csrf: str
    principal: Principal


def principal_of(u: UserRecord, via: str, csrf: str) -> Principal:
    # A person signed in through OIDC uses no password here: a one-time password set for the account
    # is not theirs to change before they may work.
    return Principal(login=u.login, name=u.name, roles=frozenset(u.roles), org=u.org, units=frozenset(u.units),
                     indicators=u.indicators, via=via, csrf=csrf, must_change=u.must_change and via != "oidc")


def _scope_units(ctx: NodeContext, units: Iterable[str]) -> tuple[str, ...]:
    known = set(ctx.me.children) | {ctx.me.code} | {d.code for d in ctx.cfg.departments}
    out = tuple(sorted({u.strip() for u in units if u.strip()}))
    unknown = [u for u in out if u not in known]
    if unknown:
        raise BadInput(f"单位 {', '.join(x[:16] for x in unknown[:5])} 不是本节点的被考评单位或本级 "
                       "(not a unit of this node)", code="users.scope")
    return out


class AccountService:
    def __init__(self, ctx: NodeContext, settings: WebSettings | None = None) -> None:
        self.ctx = ctx
        self.settings = settings or WebSettings()

    # --- accounts
    async def add(self, login: str, name: str, roles: Sequence[str], actor: Principal, *, org: str = "",
                  units: Iterable[str] = (), indicators: Iterable[str] = (), password: str | None = None,
                  oidc_subject: str = "") -> str:
        """Returns the one-time password when none was given ("" when one was)."""
        login, name, checked = check_login(login.strip()), check_name(name), check_roles(roles)
        oidc_subject = check_subject(oidc_subject)
        scope_units = _scope_units(self.ctx, units)
        scope_inds = tuple(sorted({i.strip() for i in indicators if i.strip()}))
        given = password is not None
        secret = check_password(password, login) if password is not None else one_time_password()
        hashed = await asyncio.to_thread(_HASHER.hash, secret)
        now = self.ctx.clock()
        async with self.ctx.store.tx(quiet=True) as tx:
            if await tx.users.get(login) is not None:
                raise Conflict(f"用户名 {login} 已存在 (login taken)", code="users.exists")
            if oidc_subject and await tx.users.by_subject(oidc_subject) is not None:
                raise Conflict("该统一身份认证账号已绑定其他用户 (that OIDC subject is bound to another user)",
                               code="users.subject_taken")
            await tx.users.add(UserRecord(login=login, name=name, org=org.strip()[:64], roles=checked,
                                          units=scope_units, indicators=scope_inds, password_hash=hashed,
                                          must_change=not given, oidc_subject=oidc_subject, disabled=False,
                                          failed_logins=0, locked_until=0, created_at=now, updated_at=now))
            await tx.audit.append(actor.actor, "users.add", login,
                                  {"name": name, "roles": list(checked), "org": org.strip()[:64],
                                   "units": list(scope_units), "indicators": list(scope_inds),
                                   "oidc": bool(oidc_subject)}, now)
        return "" if given else secret

    async def list(self) -> list[UserRecord]:
        async with self.ctx.store.read() as r:
            return await r.users.all()

    async def get(self, login: str) -> UserRecord:
        async with self.ctx.store.read() as r:
            u = await r.users.get(login)
        if u is None:
            raise NotFound(f"没有用户 {login[:40]} (no such user)", code="users.not_found")
        return u

    async def change(self, login: str, actor: Principal, *, name: str | None = None, roles: Sequence[str] | None = None,
                     org: str | None = None, units: Iterable[str] | None = None,
                     indicators: Iterable[str] | None = None, oidc_subject: str | None = None) -> None:
        fields: dict[str, object] = {}
        if name is not None:
            fields["name"] = check_name(name)
        if roles is not None:
            fields["roles"] = check_roles(roles)
        if org is not None:
            fields["org"] = org.strip()[:64]
        if units is not None:
            fields["units"] = _scope_units(self.ctx, units)
        if indicators is not None:
            fields["indicators"] = tuple(sorted({i.strip() for i in indicators if i.strip()}))
        if oidc_subject is not None:
            fields["oidc_subject"] = check_subject(oidc_subject)
        now = self.ctx.clock()
        async with self.ctx.store.tx(quiet=True) as tx:
            before = await tx.users.get(login)
            if before is None:
                raise NotFound(f"没有用户 {login[:40]} (no such user)", code="users.not_found")
            if login == actor.login and "roles" in fields and "office" in before.roles \
                    and "office" not in fields["roles"]:  # type: ignore[operator]
                raise Conflict("不能取消自己的绩效办角色 (you cannot remove your own office role)",
                               code="users.self_demote")
            subject = fields.get("oidc_subject")
            if subject == before.oidc_subject:
                fields.pop("oidc_subject")
            elif subject:
                holder = await tx.users.by_subject(str(subject))
                if holder is not None and holder.login != login:
                    raise Conflict("该统一身份认证账号已绑定其他用户 (that OIDC subject is bound to another user)",
                                   code="users.subject_taken")
            await tx.users.change(login, now, **fields)
            # the subject itself stays out of the log (it may be derived from an ID number): only that it changed
            await tx.audit.append(actor.actor, "users.change", login,
                                  {k: (bool(v) if k == "oidc_subject" else list(v) if isinstance(v, tuple) else v)
                                   for k, v in fields.items()}, now)

    async def set_disabled(self, login: str, disabled: bool, actor: Principal) -> None:
        if disabled and login == actor.login:
            raise Conflict("不能停用自己的账号 (you cannot disable your own account)", code="users.self_disable")
        now = self.ctx.clock()
        async with self.ctx.store.tx(quiet=True) as tx:
            if await tx.users.get(login) is None:
                raise NotFound(f"没有用户 {login[:40]} (no such user)", code="users.not_found")
            await tx.users.change(login, now, disabled=disabled, failed_logins=0, locked_until=0)
            ended = await tx.users.close_sessions_of(login) if disabled else 0
            await tx.audit.append(actor.actor, "users.disable" if disabled else "users.enable", login,
                                  {"sessions_ended": ended}, now)

    async def reset(self, login: str, actor: Principal) -> str:
        """A new one-time password (returned, shown once); unlocks the account and ends its sessions."""
        secret = one_time_password()
        hashed = await asyncio.to_thread(_HASHER.hash, secret)
        now = self.ctx.clock()
        async with self.ctx.store.tx(quiet=True) as tx:
            if await tx.users.get(login) is None:
                raise NotFound(f"没有用户 {login[:40]} (no such user)", code="users.not_found")
            await tx.users.change(login, now, password_hash=hashed, must_change=True, failed_logins=0, locked_until=0)
            ended = await tx.users.close_sessions_of(login)
            await tx.audit.append(actor.actor, "users.reset", login, {"sessions_ended": ended}, now)
        return secret

    async def change_password(self, who: Principal, current: str, new: str) -> None:
        check_password(new, who.login)
        if new == current:
            raise BadInput("新密码不能与当前密码相同 (choose a new password)", code="users.password")
        u = await self.get(who.login)
        if not await self._verify(u.password_hash, current):
            raise SignInRefused("当前密码不正确 (the current password is wrong)", code="auth.password_wrong")
        hashed = await asyncio.to_thread(_HASHER.hash, new)
        now = self.ctx.clock()
        async with self.ctx.store.tx(quiet=True) as tx:
            await tx.users.change(who.login, now, password_hash=hashed, must_change=False)
            await tx.audit.append(who.actor, "users.password", who.login, {}, now)

    # --- signing in
    @staticmethod
    async def _verify(hashed: str, password: str) -> bool:
        try:
            return await asyncio.to_thread(_HASHER.verify, hashed or _DUMMY, password)
        except (VerificationError, InvalidHashError):
            return False

    async def sign_in(self, login: str, password: str, remote: str) -> Session:
        now = self.ctx.clock()
        login = login.strip().lower()[:64]
        async with self.ctx.store.read() as r:
            u = await r.users.get(login)
        ok = await self._verify(u.password_hash if u else "", password[:256])
        refused: SignInRefused | None = None
        # The refusal is raised after the transaction commits: its audit entry and the failure count
        # must outlive it (raising inside would roll both back, and lock-out would never happen).
        async with self.ctx.store.tx(quiet=True) as tx:
            refused = await self._refusal(tx, u, login, ok, remote, now)
            if refused is None:
                assert u is not None
                if _HASHER.check_needs_rehash(u.password_hash):
                    await tx.users.change(login, now, password_hash=await asyncio.to_thread(_HASHER.hash, password))
                await tx.users.change(login, now, failed_logins=0, locked_until=0)
                session = await self._open(tx, u, "password", now)
                await tx.audit.append(login, "login", login, {"via": "password", "from": remote}, now)
        if refused is not None:
            raise refused
        return session

    async def _refusal(self, tx: Tx, u: UserRecord | None, login: str, ok: bool, remote: str,
                       now: int) -> SignInRefused | None:
        s = self.settings
        generic = SignInRefused("用户名或密码错误，或账号已停用 (wrong login or password, or the account is disabled)")

        async def refused(reason: str, **detail: object) -> None:
            # Counted per (address, reason) and window (sync/refusals.py), so that a flood of guesses adds a
            # bounded number of audit entries and loses no count; a lock-out is always an entry of its own.
            await tx.audit.record([Occurrence(actor=login or "-", action="login.refused", subject=login or "-",
                                              sender=f"http:{remote}", code=reason,
                                              detail={"reason": reason, "login": login, **detail})],
                                  now, self.ctx.limits.audit_repeat_seconds)

        if u is None:
            await refused("unknown")
            return generic
        if u.locked_until > now:
            await refused("locked")
            minutes = (u.locked_until - now + 59) // 60
            return SignInRefused(f"账号因多次密码错误已锁定，请 {minutes} 分钟后再试或请绩效办重置 "
                                 f"(locked after repeated failures; try in {minutes} min or ask the office)",
                                 code="auth.locked")
        if u.disabled or not u.password_hash:
            await refused("disabled" if u.disabled else "no_password")
            return generic
        if not ok:
            failures, locked = await tx.users.note_failure(login, s.lockout_attempts, now + 60 * s.lockout_minutes)
            if locked:
                await tx.audit.append(login, "login.locked", login,
                                      {"reason": "password", "failures": failures, "from": remote}, now)
            else:
                await refused("password", failures=failures)
            if locked:
                return SignInRefused(f"密码连续错误 {failures} 次，账号已锁定 {s.lockout_minutes} 分钟 "
                                     f"(locked for {s.lockout_minutes} min after {failures} failures)",
                                     code="auth.locked")
            return generic
        return None

    async def sign_in_subject(self, subject: str, remote: str) -> Session:
        """After an OpenID Connect provider vouched for ``subject`` (the gateway checked its ID token)."""
        now = self.ctx.clock()
        async with self.ctx.store.tx(quiet=True) as tx:
            u = await tx.users.by_subject(subject)
            if u is None or u.disabled:
                await tx.audit.append("-", "login.refused", subject[:255],
                                      {"reason": "disabled" if u else "unbound_subject", "via": "oidc", "from": remote},
                                      now)
            else:
                session = await self._open(tx, u, "oidc", now)
                await tx.audit.append(u.login, "login", u.login, {"via": "oidc", "from": remote}, now)
        if u is None or u.disabled:  # after the commit, so that the refusal stays in the audit log
            raise SignInRefused("该统一身份认证账号未在本节点开通或已停用，请联系绩效办 "
                                "(that identity has no enabled account here; ask the office)", code="auth.unbound")
        return session

    async def refuse_oidc(self, reason: str, remote: str, subject: str = "-", detail: str = "") -> None:
        """An OpenID Connect sign-in that failed before a subject could be trusted (the provider's error,
        a bad state, a token that did not verify): audited like every other refusal."""
        info: dict[str, object] = {"reason": reason[:64], "via": "oidc", "from": remote}
        if detail:
            info["detail"] = detail[:200]
        async with self.ctx.store.tx(quiet=True) as tx:
            await tx.audit.append("-", "login.refused", subject[:255] or "-", info, self.ctx.clock())

    async def _open(self, tx: Tx, u: UserRecord, via: str, now: int) -> Session:
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        await tx.users.sweep(now)
        await tx.users.open_session(SessionRecord(
            token_hash=token_hash(token), login=u.login, csrf=csrf, via=via, created_at=now,
            expires_at=now + 3600 * self.settings.session_hours, last_seen=now))
        return Session(token=token, csrf=csrf, principal=principal_of(u, via, csrf))

    async def resolve(self, token: str) -> Principal | None:
        """The principal of a session cookie, or None (unknown, expired, idle too long, or disabled)."""
        if not token or len(token) > 128:
            return None
        now, h = self.ctx.clock(), token_hash(token)
        async with self.ctx.store.read() as r:
            s = await r.users.session(h)
            u = await r.users.get(s.login) if s is not None else None
        if s is None or u is None or u.disabled or s.expires_at <= now or \
                now - s.last_seen > 60 * self.settings.idle_minutes:
            return None
        if now - s.last_seen >= TOUCH_EVERY:
            async with self.ctx.store.tx(quiet=True) as tx:
                await tx.users.touch(h, now)
        return principal_of(u, s.via, s.csrf)

    async def sign_out(self, token: str, who: Principal) -> None:
        now = self.ctx.clock()
        async with self.ctx.store.tx(quiet=True) as tx:
            await tx.users.close_session(token_hash(token))
            await tx.audit.append(who.actor, "logout", who.login, {}, now)


__all__ = ["ROLES", "AccountService", "Session", "SignInRefused"]
