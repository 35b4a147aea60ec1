"""The gateway's Litestar application: controllers per URL group, the node's services injected,
guards for access, one problem+json exception handler, Jinja2 templates with autoescaping, the
gateway's own static files, and security headers on every response."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from litestar import Litestar
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig

from gateway import i18n, problems, response_cache
from gateway.controllers.admin import AdminController
from gateway.controllers.appeals import AppealsApiController, AppealsPageController
from gateway.controllers.audit import AuditController
from gateway.controllers.dashboard import DashboardController
from gateway.controllers.divisions import DivisionController
from gateway.controllers.entries_api import EntriesApiController
from gateway.controllers.feedback import FeedbackApiController, FeedbackController
from gateway.controllers.frameworks import FrameworkController
from gateway.controllers.home import HomeController
from gateway.controllers.intake import IntakeController
from gateway.controllers.metrics import MetricsController, http_latency
from gateway.controllers.node import NodeController
from gateway.controllers.oidc import OidcController
from gateway.controllers.public import PublicApiController, PublicController
from gateway.controllers.publication import PublicationApiController, PublicationPageController
from gateway.controllers.rectification import RectificationApiController, RectificationController
from gateway.controllers.results import ResultsController
from gateway.controllers.results_use import ResultsUseController
from gateway.controllers.reviews import ReviewController
from gateway.controllers.session import SessionController
from gateway.controllers.users import UserController
from gateway.controllers.views import ViewsController
from gateway.deps import Services, dependencies, state_of
from gateway.oidc import RelyingParty, flow_key
from gateway.openapi import SchemaRenderPlugin
from gateway.security import add_security_headers

HERE = Path(__file__).resolve().parent


def templates() -> TemplateConfig[JinjaTemplateEngine]:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True),
                      enable_async=False)
    env.globals.update(i18n.template_globals())  # t(key), lang(), switch_language(), default_nav
    return TemplateConfig(instance=JinjaTemplateEngine.from_environment(env))


def relying_party(services: Services) -> RelyingParty | None:
    cfg = services.node.cfg
    return RelyingParty(cfg.oidc, services.node.clock, flow_key(cfg.key.private_bytes_raw())) if cfg.oidc else None


def node_scope(services: Services) -> dict[str, Any]:
    """One node's entry for a host's shared application (put in each request's scope as NODE_SCOPE)."""
    return state_of(services, relying_party(services))


def create_app(services: Services | None, *, title: str = "") -> Litestar:
    """One node's gateway, or (``services`` None) the one application of a node host, serving every
    node it carries: each request's node comes in its scope (gateway.deps.NODE_SCOPE), so routes,
    templates and schemas are built once per process, not once per node."""
    state = state_of(services, relying_party(services)) if services is not None else {}
    if services is not None:
        title = services.node.me.name
    return Litestar(
        route_handlers=[NodeController, FrameworkController, DivisionController, ResultsController, ReviewController,
                        AdminController,
                        AuditController, MetricsController, DashboardController, SessionController, HomeController,
                        UserController, IntakeController, EntriesApiController, OidcController,
                        ViewsController, PublicationApiController, PublicationPageController, ResultsUseController,
                        AppealsApiController, AppealsPageController,
                        RectificationController, RectificationApiController,
                        PublicController, PublicApiController,
                        FeedbackController, FeedbackApiController,
                        create_static_files_router(path="/static", directories=[HERE / "static"])],
        dependencies=dependencies(services),
        middleware=[http_latency(services.metrics if services is not None else None)],
        exception_handlers={Exception: problems.handle},
        before_send=[add_security_headers, i18n.remember_language],
        template_config=templates(),
        response_cache_config=response_cache.config(),
        stores={response_cache.STORE: response_cache.BoundedMemoryStore()},
        state=State(state),
        openapi_config=OpenAPIConfig(
            title=f"fedappraisal gateway · {title}", version="1.0.0", path="/schema",
            render_plugins=[SchemaRenderPlugin()],
            components=Components(security_schemes={"bearer": SecurityScheme(type="http", scheme="bearer")})),
        debug=False,
    )
