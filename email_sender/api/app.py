"""The app factory: one FastAPI app per service, and the metrics app on its own port."""

from __future__ import annotations

from fastapi import FastAPI
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from email_sender import __version__, metrics, web
from email_sender.api import errors
from email_sender.api.middleware import ModeMiddleware, RequestContextMiddleware
from email_sender.api.routes import (
    backups,
    collections,
    contacts,
    conversations,
    emails,
    events,
    health,
    inbound,
    maintenance,
    managers,
    search,
    segments,
    sequences,
    sink,
    suppressions,
    unsubscribe,
    webhooks,
)
from email_sender.api.security import KeyRing
from email_sender.service import Service

# Routes are matched in this order, router after router: the two that take the load first.
ROUTERS = [
    health.router,
    emails.router,
    managers.router,
    events.router,
    maintenance.router,
    suppressions.router,
    sink.router,
    backups.router,
    inbound.router,
    conversations.router,
    webhooks.router,
    contacts.router,
    segments.router,
    sequences.router,
    unsubscribe.router,
]
# Mounted when the node searches (``service.search`` set): its role runs the vector managers.
SEARCH_ROUTERS = [search.router, collections.router]


def create_app(service: Service) -> FastAPI:
    settings = service.settings
    app = FastAPI(
        title="EMAIL_SENDER_1",
        version=__version__,
        description="Self-hosted email delivery with semantic memory.",
        responses=errors.ERROR_RESPONSES,
        # FastAPI's own OpenTelemetry bridge asks the global providers on every request whether
        # one is configured; this service exports Prometheus metrics and JSON logs instead.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.service = service
    app.state.keys = KeyRing(settings.security)
    for router in ROUTERS:
        app.include_router(router)
    if service.search is not None:
        for router in SEARCH_ROUTERS:
            app.include_router(router)
    web.install(app)
    errors.install(app, page_for=web.error_page)
    # Starlette runs the last added middleware first: context wraps the mode guard.
    app.add_middleware(ModeMiddleware, modes=service.modes)
    app.add_middleware(
        RequestContextMiddleware,
        security=settings.security,
        max_body_bytes=settings.server.max_body_bytes,
    )
    return app


def create_metrics_app(service: Service) -> Starlette:
    """``metrics.path`` for Prometheus; ``/debug/*`` only when ``metrics.debug_endpoints``."""

    async def scrape(request: Request) -> Response:
        service.bus.stats()  # refreshes the backlog gauge
        return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)

    routes = [Route(service.settings.metrics.path, scrape)]
    if service.settings.metrics.debug_endpoints:
        from email_sender.api import debug

        routes.extend(debug.routes(service))
    return Starlette(routes=routes)
