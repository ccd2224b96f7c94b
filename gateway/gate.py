"""Credentials, scope and rate limit checked from the request headers, before any body byte.

FastAPI dependencies run after the multipart body has been parsed and spooled to disk, so an
anonymous 200 MB upload used to be received in full before its 401. This pure-ASGI gate answers
401/403/429 right after the headers, with ``Connection: close``, and never calls ``receive``;
the route dependency then reuses the principal it found (one rate-limit token per request).
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.errors import GatewayError, RateLimited, error_response
from gateway.service.auth import Authenticator, Principal
from gateway.service.metrics import Metrics
from gateway.service.rate_shared import Limiter

#: key in ``scope["state"]`` (``request.state``) holding the principal the gate admitted
PRINCIPAL_STATE_KEY = "gate_principal"

#: path prefix -> scope a request needs; everything else is public (health, files, docs, ...)
ROUTE_SCOPES: tuple[tuple[str, str], ...] = (
    ("/v1/predict", "predict"),
    ("/v1/jobs", "predict"),
    ("/v1/webhooks", "admin"),
    ("/v1/cache", "admin"),
)


def route_path(scope: Scope) -> str:
    """The path the routers match: ``path`` without the ``root_path`` prefix (as Starlette does)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/"):
        return path[len(root) :]
    return path


def required_scope(path: str) -> str | None:
    """The scope a path needs, or None for public paths (must mirror the routers' dependencies)."""
    for prefix, scope in ROUTE_SCOPES:
        if path == prefix or path.startswith(prefix + "/"):
            return scope
    return None


def rate_bucket(principal: Principal, client_host: str | None) -> str:
    """Token bucket key: the principal, or the client address for anonymous callers."""
    return principal.name if principal.name != "anonymous" else f"ip:{client_host or 'unknown'}"


async def admit(
    auth: Authenticator,
    limiter: Limiter,
    metrics: Metrics,
    scope_name: str,
    api_key: str | None,
    authorization: str | None,
    client_host: str | None,
) -> Principal:
    """Authenticate, check the scope and take one rate-limit token; raises the typed error."""
    principal = auth.authenticate(api_key, authorization)
    principal.require(scope_name)
    try:
        await limiter.take(rate_bucket(principal, client_host), principal.rate_per_minute)
    except RateLimited:
        metrics.rejected.labels("rate_limit").inc()
        raise
    return principal


class EarlyGateMiddleware:
    """Refuses unauthenticated, unauthorised or rate-limited requests before reading their body."""

    def __init__(self, app: ASGIApp, auth: Authenticator, limiter: Limiter, metrics: Metrics) -> None:
        self.app = app
        self.auth = auth
        self.limiter = limiter
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] == "OPTIONS":  # CORS preflights carry no key
            await self.app(scope, receive, send)
            return
        needed = required_scope(route_path(scope))
        if needed is None:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        client = scope.get("client")
        try:
            principal = await admit(
                self.auth,
                self.limiter,
                self.metrics,
                needed,
                headers.get("x-api-key"),
                headers.get("authorization"),
                client[0] if client else None,
            )
        except GatewayError as error:
            response = error_response(error, scope["path"])
            response.headers["Connection"] = "close"  # the body was never read: end the connection
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})[PRINCIPAL_STATE_KEY] = principal
        await self.app(scope, receive, send)
