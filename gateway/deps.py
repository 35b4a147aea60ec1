"""What the gateway is given: the node's services (built by nodes/runtime.py). Controllers get
them by name through Litestar's dependency injection (``Provide``); nothing in the gateway
builds a service or opens the store."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar.di import Provide

from nodes.services.accounts import AccountService
from nodes.services.appeals import AppealService
from nodes.services.audit_log import AuditService
from nodes.services.cascade import CascadeService
from nodes.services.context import NodeContext
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


def dependencies(s: Services) -> dict[str, Provide]:
    def const(value: Any) -> Provide:
        return Provide(lambda: value, use_cache=True, sync_to_thread=False)

    return {"node_context": const(s.node), "read": const(s.read), "cascade": const(s.cascade), "entry": const(s.entry),
            "review_service": const(s.review), "heartbeat": const(s.heartbeat), "query_service": const(s.query),
            "audit_log": const(s.audit), "metrics": const(s.metrics),
            "accounts": const(s.accounts), "intake": const(s.intake),
            "publication": const(s.publication), "results_use": const(s.results_use),
            "appeals": const(s.appeals), "rectification": const(s.rectification),
            "public_site": const(s.public_site),
            "feedback_service": const(s.feedback)}
