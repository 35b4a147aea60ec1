"""Access decisions live here and nowhere else. Today one role exists: the node's office,
proved by the admin bearer token; reads are public. Roles arrive later (issue 10) by extending
these guards, not the controllers."""

from __future__ import annotations

import hmac
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler

ACTOR_KEY = "actor"


def admin_guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """The request must carry ``Authorization: Bearer <admin token>``."""
    token: str = connection.app.state["admin_token"]
    header = connection.headers.get("authorization", "")
    scheme, _sep, supplied = header.partition(" ")
    # compare_digest refuses non-ASCII str; compare bytes so any header is a clean refusal.
    if scheme.lower() != "bearer" or not supplied.strip() or not hmac.compare_digest(
            supplied.strip().encode("utf-8", "surrogateescape"), token.encode()):
        raise NotAuthorizedException("需要管理令牌 (admin token required)")
    connection.state[ACTOR_KEY] = "admin"
