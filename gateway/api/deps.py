"""Dependencies shared by the routers (FastAPI ``Annotated`` style)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request, UploadFile

from gateway.errors import PayloadTooLarge, RateLimited
from gateway.service.auth import Principal
from gateway.service.container import Services

CHUNK = 1 << 20


def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_principal(
    services: ServicesDep,
    x_api_key: Annotated[str | None, Header(description="API key (when auth is enabled)")] = None,
    authorization: Annotated[str | None, Header(description="Bearer API key or JWT")] = None,
) -> Principal:
    return services.auth.authenticate(x_api_key, authorization)


def _with_scope(scope: str):
    def dependency(
        request: Request, services: ServicesDep, principal: Annotated[Principal, Depends(get_principal)]
    ) -> Principal:
        principal.require(scope)
        client = request.client.host if request.client else "unknown"
        bucket = principal.name if principal.name != "anonymous" else f"ip:{client}"
        try:
            services.limiter.check(bucket, principal.rate_per_minute)
        except RateLimited:
            services.metrics.rejected.labels("rate_limit").inc()
            raise
        return principal

    return dependency


PredictPrincipal = Annotated[Principal, Depends(_with_scope("predict"))]
AdminPrincipal = Annotated[Principal, Depends(_with_scope("admin"))]


def get_base_url(request: Request, services: ServicesDep) -> str:
    """Absolute base for links in responses and webhooks (configurable behind proxies)."""
    return (services.settings.public_base_url or str(request.base_url)).rstrip("/")


BaseUrl = Annotated[str, Depends(get_base_url)]


async def read_upload(upload: UploadFile, max_bytes: int) -> bytes:
    """Read one uploaded file in chunks, refusing it as soon as it passes ``max_bytes``."""
    parts: list[bytes] = []
    size = 0
    while chunk := await upload.read(CHUNK):
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(
                f"The file {upload.filename or 'upload'!r} exceeds the limit of {max_bytes:,} bytes."
            )
        parts.append(chunk)
    return b"".join(parts)
