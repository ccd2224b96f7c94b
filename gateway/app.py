"""The app factory: ``create_app(settings)`` wires routers, middleware, errors and services."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from gateway import __version__
from gateway.api import cache, files, health, jobs, metrics, predict, webhooks
from gateway.backends import InferenceBackend
from gateway.errors import install_error_handlers
from gateway.gate import EarlyGateMiddleware
from gateway.middleware import BodyLimitMiddleware, RequestContextMiddleware
from gateway.service.container import Services
from gateway.settings import Settings

#: bytes allowed for multipart framing and form fields on top of the file bytes
MULTIPART_OVERHEAD = 256 * 1024
#: JSON bodies (webhook registrations) are tiny
DEFAULT_BODY_LIMIT = 64 * 1024


def body_limits(settings: Settings) -> Callable[[str, str], int]:
    """Per-route request-body limit, checked while the body streams in."""

    def limit_for(method: str, path: str) -> int:
        if method == "POST" and path.rstrip("/").endswith("/v1/predict"):
            return settings.upload_max_bytes + MULTIPART_OVERHEAD
        if method == "POST" and path.rstrip("/").endswith("/v1/jobs"):
            return settings.job_max_bytes + MULTIPART_OVERHEAD
        return DEFAULT_BODY_LIMIT

    return limit_for


def _web_router() -> APIRouter:
    try:
        from gateway.api.web import create_router
    except ImportError:
        from gateway.api.home import create_router as create_home_router

        return create_home_router()
    return create_router()


def create_app(settings: Settings, *, backend: InferenceBackend | None = None) -> FastAPI:
    """Build one gateway; ``backend`` replaces the configured one (tests, embedding)."""
    services = Services.build(settings, backend)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await services.start()
        try:
            yield
        finally:
            await services.close()

    docs = settings.docs_enabled
    app = FastAPI(
        title="MLSharp gateway",
        version=__version__,
        description="One photo in, a 3D gaussian splat scene out (Apple SHARP), with async jobs.",
        lifespan=lifespan,
        root_path=settings.root_path,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    app.state.services = services
    install_error_handlers(app)
    for module in (predict, jobs, files, health, cache, webhooks, metrics):
        app.include_router(module.router)
    app.include_router(_web_router())
    app.add_middleware(BodyLimitMiddleware, limit_for=body_limits(settings))
    # outside the body limit, inside CORS (so a 401 still carries the CORS headers)
    app.add_middleware(
        EarlyGateMiddleware, auth=services.auth, limiter=services.limiter, metrics=services.metrics
    )
    if settings.cors_allow_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_allow_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "X-API-Key", "X-Request-ID", "Content-Type"],
            expose_headers=["X-Request-ID", "Retry-After"],
        )
    app.add_middleware(RequestContextMiddleware, metrics=services.metrics)
    return app
