"""create_app(): routers, middleware, error handlers — nothing else."""

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.audit.router import router as admin_router
from app.auth.router import router as auth_router
from app.bookings.router import router as bookings_router
from app.calendar.router import router as calendar_router
from app.health.router import router as health_router
from app.infra.errors import install_problem_handlers
from app.infra.logging import configure_logging
from app.infra.observability import RequestContextMiddleware
from app.infra.settings import Settings, get_settings
from app.media.router import router as media_router
from app.notifications.router import router as notifications_router
from app.posts.router import router as posts_router
from app.resources import Resources
from app.scheduling.router import router as scheduling_router
from app.spaces.router import router as spaces_router
from app.tenants.router import router as tenants_router

# Matched in this order on every request: the feed (posts) is by far the most requested
# route, and the prefixes don't overlap, so it goes first (bench/feed.py).
API_ROUTERS = [
    posts_router,
    auth_router,
    tenants_router,
    spaces_router,
    media_router,
    scheduling_router,
    bookings_router,
    calendar_router,
    notifications_router,
    admin_router,
]


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.resources = Resources.create(settings)
        await app.state.resources.open()
        # Everything alive now lives as long as the process: keep it out of the cyclic GC,
        # whose full passes over it took ~60 ms each (a p99 spike; bench/feed.py).
        gc.freeze()
        try:
            yield
        finally:
            await app.state.resources.close()

    app = FastAPI(
        title="Courtside API",
        version="0.1.0",
        description="Multi-tenant backend for coaching: spaces, posts, media, scheduling.",
        lifespan=lifespan,
        # For developers; production publishes no route map unless API_DOCS=true.
        openapi_url="/openapi.json" if settings.serves_api_docs else None,
        docs_url="/docs" if settings.serves_api_docs else None,
        redoc_url="/redoc" if settings.serves_api_docs else None,
        # Metrics are our own Prometheus ones (app/infra/observability.py) and no OpenTelemetry
        # provider is configured; FastAPI's own hooks would still look for one on every
        # request (a few % of the feed's cost, bench/feed.py).
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    install_problem_handlers(app)
    app.add_middleware(RequestContextMiddleware)
    for router in API_ROUTERS:
        app.include_router(router)
    app.include_router(health_router)
    return app
