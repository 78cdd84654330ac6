"""Composition root of the HTTP role: builds the FastAPI app from injected services."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from postyard import __version__
from postyard.core.http import (
    AppServices,
    RequestContextMiddleware,
    Services,
    error_response,
    install_error_handlers,
)
from postyard.core.json_route import JsonRoute
from postyard.delivery.destination_routes import router as destinations_router
from postyard.delivery.hold_routes import router as holds_router
from postyard.delivery.routes import router as content_router
from postyard.delivery.warmup import WarmupPolicy
from postyard.delivery.warmup_routes import router as warmups_router
from postyard.domains.routes import DomainDeps
from postyard.domains.routes import router as domains_router
from postyard.ops.routes import router as metrics_router
from postyard.sending.accept import AcceptOptions
from postyard.sending.grouped import GroupedAccept
from postyard.sending.routes import router as emails_router
from postyard.settings import WarmupSettings
from postyard.suppression.routes import router as suppressions_router
from postyard.tenancy.routes import router as api_keys_router
from postyard.tracking.routes import router as tracking_router
from postyard.tracking.types import TrackingConfig
from postyard.webhooks.routes import WebhookDeps
from postyard.webhooks.routes import router as webhooks_router

API_DESCRIPTION = """Postyard's REST API. Resend-compatible: point a Resend SDK's base URL at
`http://HOST:PORT/v1`. Authenticate with `Authorization: Bearer <API key>`. Errors are
`{"statusCode", "name", "message"}`."""


def _health_router() -> APIRouter:
    router = APIRouter(route_class=JsonRoute, tags=["Health"])

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @router.get("/readyz", response_model=None)
    async def readyz(services: Services) -> dict[str, str] | JSONResponse:
        """Readiness: the database answers and its schema is at this release's revision."""
        try:
            async with services.db.system_tx(reason="readiness probe") as session:
                current = await session.scalar(text("SELECT version_num FROM alembic_version"))
        except (SQLAlchemyError, OSError):
            return error_response(503, "not_ready", "The database is not reachable.")
        if current != services.schema_head:
            return error_response(
                503,
                "not_ready",
                f"The database schema is at {current}, expected {services.schema_head}: "
                "run `postyard migrate`.",
            )
        return {"status": "ready", "schema": current}

    return router


def create_app(
    services: AppServices,
    *,
    max_body_bytes: int,
    domain_deps: DomainDeps,
    webhook_deps: WebhookDeps,
    tracking: TrackingConfig,
    warmup_policy: WarmupPolicy | None = None,
) -> FastAPI:
    app = FastAPI(
        title="Postyard",
        version=__version__,
        description=API_DESCRIPTION,
        openapi_url="/v1/openapi.json",
        docs_url="/v1/docs",
        redoc_url=None,
        redirect_slashes=False,
    )
    app.state.services = services
    app.state.domain_deps = domain_deps
    app.state.webhook_deps = webhook_deps
    app.state.tracking = tracking
    # What GET /v1/warmups shows for domains on the instance's ramp (default: the settings'
    # default ramp).
    app.state.warmup_policy = warmup_policy or WarmupPolicy(tuple(WarmupSettings().schedule))
    app.state.grouped_accept = GroupedAccept(
        services.db,
        services.clock,
        AcceptOptions(
            source="api",
            require_verified_domain=services.require_verified_domain,
            tracking=tracking,
        ),
        window=services.group_commit_window,
        max_messages=services.group_commit_max_messages,
    )
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware, max_body_bytes=max_body_bytes)
    app.include_router(_health_router())
    app.include_router(metrics_router)
    # Each router straight under the app (no /v1 router in between: FastAPI walks nested
    # routers on every request), the sending endpoints first: they take most requests.
    for router in (
        emails_router,
        content_router,
        api_keys_router,
        domains_router,
        webhooks_router,
        holds_router,
        warmups_router,
        destinations_router,
        suppressions_router,
    ):
        app.include_router(router, prefix="/v1")
    app.include_router(tracking_router)  # the tracking host's paths, outside /v1
    return app
