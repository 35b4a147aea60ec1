"""The one exception handler: every error answers an RFC 9457 ``application/problem+json``
document with a stable machine-readable ``code``; nothing answers a bare 500 or leaks a
traceback. Domain errors carry their code (aggregator/errors.py); Litestar's own (a body or
parameter that does not fit the schema, a missing token, an unknown route) get codes here."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, NotAuthorizedException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.response import Redirect
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from aggregator.errors import AppraisalError
from gateway.deps import node_state
from gateway.guards import Forbidden
from gateway.pages import is_page, page_now
from gateway.schemas import Problem

log = logging.getLogger("fedappraisal.gateway")

PROBLEM_JSON = "application/problem+json"
STATUS_BY_KIND = {"bad_input": 422, "not_found": 404, "conflict": 409, "refused": 422, "trust": 422,
                  "store": 503, "transport": 503}
TITLES = {400: "请求格式不符 (malformed request)", 401: "需要授权 (not authorised)",
          403: "无权访问 (forbidden)", 404: "未找到 (not found)",
          405: "方法不允许 (method not allowed)", 409: "与现有数据冲突 (conflict)", 413: "请求过大 (too large)",
          422: "无法处理的请求 (unprocessable request)", 429: "请求过多 (too many requests)",
          500: "内部错误 (internal error)", 503: "暂时不可用 (unavailable)"}
HTTP_CODES = {400: "request.malformed", 401: "auth.required", 403: "auth.forbidden", 404: "not_found",
              405: "request.method", 413: "request.too_large", 429: "rate_limited"}


def problem(status: int, code: str, detail: str, instance: str = "",
            errors: list[dict[str, Any]] | None = None, headers: dict[str, str] | None = None) -> Response[bytes]:
    body = Problem(type=f"urn:fedappraisal:problem:{code}", title=TITLES.get(status, "错误 (error)"), status=status,
                   detail=detail, code=code, instance=instance or msgspec.UNSET,
                   errors=errors if errors else msgspec.UNSET)
    return Response(msgspec.json.encode(body), status_code=status, media_type=PROBLEM_JSON, headers=headers)


def handle(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    answer = _problem_of(request, exc)
    if is_page(request) and answer.status_code != 405:
        return _as_page(request, answer)
    return answer


def _as_page(request: Request[Any, Any, Any], answer: Response[bytes]) -> Response[Any]:
    """The same refusal as a page: sign in first (401), or the problem's title and detail."""
    body = msgspec.json.decode(answer.content)
    if answer.status_code == 401 and request.method == "GET":
        return Redirect(path="/login?" + urlencode({"next": request.url.path + (
            "?" + request.url.query if request.url.query else "")}), status_code=303)
    if body.get("code") == "auth.must_change" and request.method == "GET":
        return Redirect(path="/account/password", status_code=303)
    return page_now(request, "error.html.j2", node_state(request)["node"], status=answer.status_code or 500,
                    title=body["title"], detail=body["detail"], code=body["code"])


def _problem_of(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    path = request.url.path
    if isinstance(exc, AppraisalError):
        listed = getattr(exc, "problems", None)  # IntakeRefused, ExchangeError: every cell or place named
        errors = [{"where": p.where, "message": p.message, "code": p.code} for p in listed[:1000]] if listed else None
        return problem(STATUS_BY_KIND.get(exc.kind, 422), exc.code, str(exc), path, errors)
    if isinstance(exc, (OperationalError, InterfaceError, DisconnectionError, PoolTimeoutError)):
        log.warning("store unavailable on %s: %s", path, exc)
        return problem(503, "store.unavailable", "存储暂时不可用，请稍后重试 (store unavailable; try again)", path,
                       headers={"Retry-After": "5"})
    if isinstance(exc, RecursionError):  # the body decoder recurses per level of nesting
        return problem(400, "request.too_deep", "请求体嵌套过深 (the request body is nested too deep)", path)
    if isinstance(exc, ValidationException):
        extra = exc.extra if isinstance(exc.extra, list) else None
        return problem(400, "request.malformed", str(exc.detail), path,
                       [e if isinstance(e, dict) else {"message": str(e)} for e in extra] if extra else None)
    if isinstance(exc, Forbidden):
        return problem(403, exc.code, str(exc.detail), path)
    if isinstance(exc, NotAuthorizedException):
        return problem(401, "auth.required", str(exc.detail), path)
    if isinstance(exc, HTTPException):
        if exc.status_code >= 500:
            log.error("error on %s: %s", path, exc, exc_info=exc)
        # Keep what the exception says about the response: a 405 names the methods allowed (RFC 9110).
        return problem(exc.status_code, HTTP_CODES.get(exc.status_code, f"http.{exc.status_code}"), str(exc.detail),
                       path, headers=dict(exc.headers or {}))
    log.exception("unhandled error on %s", path)
    return problem(500, "internal", "内部错误，已记录 (internal error; it was logged)", path)


def documented(*statuses: int) -> dict[int, ResponseSpec]:
    """The problem responses an operation may answer, for its OpenAPI entry; every operation that
    reads the store may also answer 503."""
    statuses = (*statuses, 503)
    why = {400: "请求不符合模式 (the request does not fit the schema)",
           401: "需要登录或管理令牌 (a session or the bearer token is required)",
           403: "角色或权限范围不允许，或 CSRF 令牌不符 (roles or scope do not allow it, or a bad CSRF token)",
           404: "未找到 (not found)", 409: "与现有数据冲突 (conflicts with what the node holds)",
           422: "请求无法处理 (well-formed but refused: the detail and code say why)",
           429: "请求过多 (rate limited)", 503: "暂时不可用 (store or transport unavailable)"}
    return {s: ResponseSpec(data_container=Problem, description=why[s], media_type=PROBLEM_JSON,
                            generate_examples=False) for s in statuses}


__all__ = ["documented", "handle", "problem"]
