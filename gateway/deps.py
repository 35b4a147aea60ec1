"""What the gateway is given: the node's services (built by nodes/runtime.py). Controllers get
them by name through Litestar's dependency injection (``Provide``); nothing in the gateway
builds a service or opens the store."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.di import Provide

from nodes.services.accounts import AccountService
from nodes.services.appeals import AppealService
from nodes.services.audit_log import AuditService
from nodes.services.cascade import CascadeService
from nodes.services.context import NodeContext
from nodes.services.divisions import DivisionChangeService
from nodes.services.entry import EntryService
from nodes.services.feedback import FeedbackService
from nodes.services.intake import IntakeService
from nodes.services.metrics import NodeMetrics
from nodes.services.public_site import PublicSite
from nodes.services.publication import PublicationService
from nodes.services.query import QueryService
from nodes.services.read_models import ReadModels
from nodes.services.rectification import RectificationService
from nodes.services.results_use import ResultsUseService
from nodes.services.review import ReviewService
from nodes.services.trust import HeartbeatService


@dataclass(frozen=True)
class Services:
    node: NodeContext
    read: ReadModels
    cascade: CascadeService
    entry: EntryService
    review: ReviewService
    heartbeat: HeartbeatService
    query: QueryService
    audit: AuditService
    metrics: NodeMetrics
    accounts: AccountService
    intake: IntakeService
    feedback: FeedbackService  # 绩效报告 (issue 11)
    publication: PublicationService
    results_use: ResultsUseService
    appeals: AppealService
    rectification: RectificationService
    public_site: PublicSite
    divisions: DivisionChangeService  # 区划调整


# Where a node host's shared application finds the node a request is for (set by nodes/host.py's
# router from the Host header); a node alone keeps the same mapping in its application's state.
NODE_SCOPE = "fedappraisal.node"

# Dependency name → the Services field it is.
_PROVIDED = {"node_context": "node", "read": "read", "cascade": "cascade", "entry": "entry",
             "review_service": "review", "heartbeat": "heartbeat", "query_service": "query", "audit_log": "audit",
             "metrics": "metrics", "accounts": "accounts", "intake": "intake", "publication": "publication",
             "results_use": "results_use", "appeals": "appeals", "rectification": "rectification",
             "public_site": "public_site", "feedback_service": "feedback",
             "divisions": "divisions"}


def node_state(connection: ASGIConnection[Any, Any, Any, Any]) -> Mapping[str, Any]:
    """The node this request is for: its services, admin token, code, OIDC relying party."""
    found = cast("Mapping[str, Any] | None", connection.scope.get(NODE_SCOPE))
    return found if found is not None else connection.app.state


def dependencies(s: Services | None) -> dict[str, Provide]:
    """Each service by name: the node's own (``s``), or, for a host's shared application (None),
    the one of the node the request is for."""
    if s is not None:
        def const(value: Any) -> Provide:
            return Provide(lambda: value, use_cache=True, sync_to_thread=False)

        return {name: const(getattr(s, field)) for name, field in _PROVIDED.items()}

    def per_request(field: str) -> Provide:
        def get(request: Request[Any, Any, Any]) -> Any:
            return getattr(node_state(request)["services"], field)

        return Provide(get, sync_to_thread=False)

    return {name: per_request(field) for name, field in _PROVIDED.items()}


def state_of(s: Services, oidc: Any) -> dict[str, Any]:
    """What the gateway keeps per node (the application's state alone, the request's scope on a host)."""
    cfg = s.node.cfg
    return {"services": s, "admin_token": cfg.admin_token, "node_code": s.node.me.code, "node": s.node,
            "accounts": s.accounts, "oidc": oidc, "rectification": s.rectification,
            "oidc_name": cfg.oidc.name if cfg.oidc else ""}

