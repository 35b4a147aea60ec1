"""People and what they may do: roles, scopes and the principal a request acts as (pure; no I/O).

A node's web application serves several kinds of people (docs/design.md §5a). Each account has one
or more roles; each role is a set of capabilities, and a scope narrows the units and indicators the
person acts for (like DHIS2's capture and view organisation units). The gateway's guards
(gateway/guards.py) are the only place that turns these into allow or 403; services are handed a
:class:`Principal` and record its login in every audit entry they write.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from aggregator.errors import BadInput

# role → what it is called on screen
ROLES: dict[str, str] = {
    "office": "绩效办",  # manages frameworks, users, the task book, publication
    "provider": "数据提供单位",  # enters named indicators for named units
    "opinion": "评估意见提供单位",  # ratings and qualitative assessments
    "reviewer": "审核人",  # approves or returns entries
    "unit": "被考评单位",  # sees its own values, scores and returns
    "auditor": "审计/纪检",  # reads the audit log, exports and verifies
}
ROLES_EN: dict[str, str] = {"office": "performance office", "provider": "data provider", "opinion": "opinion provider",
                            "reviewer": "reviewer", "unit": "evaluated unit", "auditor": "auditor"}

# capability → roles that have it. A capability names an act, so a guard reads as the rule it enforces.
CAPABILITIES: dict[str, frozenset[str]] = {
    "users.manage": frozenset({"office"}),
    "frameworks.manage": frozenset({"office"}),
    "tasks.manage": frozenset({"office"}),
    "tasks.view": frozenset({"office", "provider", "opinion", "reviewer", "unit", "auditor"}),
    "values.enter": frozenset({"office", "provider", "unit"}),
    "opinions.enter": frozenset({"office", "opinion"}),
    "values.confirm": frozenset({"unit"}),
    "values.review": frozenset({"office", "reviewer"}),
    "values.view": frozenset({"office", "provider", "opinion", "reviewer", "unit", "auditor"}),
    "audit.read": frozenset({"office", "auditor"}),
    "revocations.manage": frozenset({"office"}),
    # the close of the year (issue 11)
    "results.interim": frozenset({"office", "reviewer", "auditor"}),  # computed results before publication
    "publication.manage": frozenset({"office"}),  # open 公示, finalise, revise
    "publication.view": frozenset({"office", "provider", "opinion", "reviewer", "unit", "auditor"}),  # 公示中
    "appeals.file": frozenset({"unit"}),
    "appeals.assign": frozenset({"office"}),
    "appeals.decide": frozenset({"reviewer"}),  # only the reviewer the office assigned
    "appeals.view": frozenset({"office", "reviewer", "unit", "auditor"}),
    "feedback.generate": frozenset({"office"}),
    "feedback.view": frozenset({"office", "reviewer", "unit", "auditor"}),
    "rectification.manage": frozenset({"office"}),  # create, assign, accept closure, carry into next year
    "rectification.update": frozenset({"unit"}),  # its measures, progress and closure evidence
    "rectification.view": frozenset({"office", "unit", "auditor"}),
    "comments.answer": frozenset({"office", "unit"}),  # 公众评议: the unit answers each comment
    "use.manage": frozenset({"office"}),  # 结果运用: produce the signed lists
    "use.view": frozenset({"office", "auditor"}),
    "divisions.manage": frozenset({"office"}),  # 区划调整: sign and issue change lists for units below the node
}

SYSTEM_LOGIN = "admin"  # the bearer token (machines, scripts): every capability, on the whole node
_LOGIN = re.compile(r"^[a-z][a-z0-9._-]{1,31}$")
MIN_PASSWORD = 10


def check_login(login: str) -> str:
    if not _LOGIN.match(login) or login == SYSTEM_LOGIN:
        raise BadInput(f"用户名 {login[:40]!r} 无效：2–32 位小写字母、数字、点、下划线或连字符，以字母开头，且不能是 admin "
                       "(login: 2-32 of a-z 0-9 . _ -, starting with a letter, not 'admin')", code="users.login")
    return login


def check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 64 or any(ord(c) < 32 for c in name):
        raise BadInput("姓名须为 1–64 个字符，不含控制字符 (name: 1-64 characters)", code="users.name")
    return name


def check_roles(roles: Iterable[str]) -> tuple[str, ...]:
    out = tuple(sorted(set(roles)))
    unknown = [r for r in out if r not in ROLES]
    if not out or unknown:
        raise BadInput(f"角色 {', '.join(unknown) or '（空）'} 无效；可选：{', '.join(ROLES)} (unknown or no role)",
                       code="users.role")
    return out


def check_password(password: str, login: str) -> str:
    if len(password) < MIN_PASSWORD or password.strip() != password or password.lower() == login.lower():
        raise BadInput(f"密码至少 {MIN_PASSWORD} 位、首尾不能有空格且不能与用户名相同 "
                       f"(a password needs at least {MIN_PASSWORD} characters, no outer spaces, not the login)",
                       code="users.password")
    if len(password) > 256:
        raise BadInput("密码不能超过 256 位 (at most 256 characters)", code="users.password")
    return password


def check_subject(subject: str) -> str:
    """An OpenID Connect ``sub`` to bind ("" unbinds): as the provider issues it, at most 255 characters."""
    subject = subject.strip()
    if len(subject) > 255 or any(ord(c) < 33 or ord(c) == 127 for c in subject):
        raise BadInput("统一身份认证用户标识 (sub) 至多 255 个字符，不含空白或控制字符 "
                       "(the OIDC subject: at most 255 characters, no spaces or control characters)",
                       code="users.oidc_subject")
    return subject


@dataclass(frozen=True)
class Principal:
    """Who a request acts as. ``units``/``indicators`` empty: the whole node."""

    login: str
    name: str
    roles: frozenset[str]
    org: str = ""
    units: frozenset[str] = frozenset()
    indicators: tuple[str, ...] = ()  # indicator codes or group prefixes (a group covers its descendants)
    via: str = "token"  # token | password | oidc
    csrf: str = ""
    must_change: bool = False

    @property
    def system(self) -> bool:
        return self.login == SYSTEM_LOGIN and self.via == "token"

    def can(self, capability: str) -> bool:
        if self.system:
            return True
        return bool(self.roles & CAPABILITIES[capability])

    def covers_unit(self, unit: str) -> bool:
        return not self.units or unit in self.units

    def covers_indicator(self, code: str) -> bool:
        # A group code covers its children: indicator codes nest by prefix with a separator (A, A1, A1.2 …)
        return not self.indicators or any(code == p or code.startswith(p) for p in self.indicators)

    @property
    def actor(self) -> str:
        """What the audit log's actor column holds: the login, unique at this node."""
        return self.login

    @property
    def label(self) -> str:
        """The person as named in signed approvals and on screen: name and login."""
        return self.login if self.system else f"{self.name}（{self.login}）"


SYSTEM = Principal(login=SYSTEM_LOGIN, name="管理令牌", roles=frozenset(ROLES), via="token")


@dataclass(frozen=True)
class WebSettings:
    """node.yaml ``web:``: sessions, lock-out and cookies of the web application."""

    session_hours: int = 12  # a session ends this long after sign-in, however busy
    idle_minutes: int = 120  # … or after this long without a request
    lockout_attempts: int = 5  # failed passwords in a row that lock an account
    lockout_minutes: int = 15
    cookie_secure: str = "auto"  # auto: Secure when the request came over https; always; never (plain-http intranet)


DEFAULT_WEB_SETTINGS = WebSettings()


@dataclass(frozen=True)
class OidcSettings:
    """node.yaml ``oidc:``: signing in through an OpenID Connect provider (统一身份认证平台).

    The provider vouches for a person's ``sub``; the node maps it to the one account bound to it
    (``users.oidc_subject``). The gateway is a confidential client using the authorization-code flow
    with PKCE; its callback is ``<redirect_base>/login/oidc/callback``, to be registered at the provider.
    """

    issuer: str  # exactly as the provider's discovery document and ID tokens name it
    client_id: str
    client_secret: str = field(repr=False)  # read from client_secret_file, never in node.yaml itself
    redirect_base: str  # the gateway's external URL, as browsers reach it
    name: str = "统一身份认证"  # the sign-in button's label: 使用{name}登录
    scopes: str = "openid profile"

    @property
    def redirect_uri(self) -> str:
        return f"{self.redirect_base.rstrip('/')}/login/oidc/callback"
