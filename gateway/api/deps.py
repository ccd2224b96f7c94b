"""Dependencies shared by the routers (FastAPI ``Annotated`` style)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Header, Request, UploadFile

from gateway.errors import PayloadTooLarge
from gateway.gate import PRINCIPAL_STATE_KEY, admit
from gateway.service.auth import Principal
from gateway.service.container import Services
from gateway.service.inputs import check_image
from gateway.settings import Settings

CHUNK = 1 << 20


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def _with_scope(scope: str) -> Callable[..., Awaitable[Principal]]:
    async def dependency(
        request: Request,
        services: ServicesDep,
        x_api_key: Annotated[str | None, Header(description="API key (when auth is enabled)")] = None,
        authorization: Annotated[str | None, Header(description="Bearer API key or JWT")] = None,
    ) -> Principal:
        admitted: Principal | None = request.scope.get("state", {}).get(PRINCIPAL_STATE_KEY)
        if admitted is not None:  # the early gate already authenticated and rate-limited it
            admitted.require(scope)
            return admitted
        client = request.client.host if request.client else None
        return await admit(
            services.auth, services.limiter, services.metrics, scope, x_api_key, authorization, client
        )

    return dependency


PredictPrincipal = Annotated[Principal, Depends(_with_scope("predict"))]
AdminPrincipal = Annotated[Principal, Depends(_with_scope("admin"))]


def get_base_url(request: Request, services: ServicesDep) -> str:
    """Absolute base for links in responses and webhooks (configurable behind proxies)."""
    return (services.settings.public_base_url or str(request.base_url)).rstrip("/")


BaseUrl = Annotated[str, Depends(get_base_url)]


async def read_image(upload: UploadFile, settings: Settings) -> bytes:
    """Read one uploaded image in chunks, refusing it as soon as it passes the byte limit, then
    check its real type and pixel count (header only) off the event loop."""
    max_bytes = settings.upload_max_bytes
    parts: list[bytes] = []
    size = 0
    while chunk := await upload.read(CHUNK):
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(f"The file exceeds the limit of {max_bytes:,} bytes.")
        parts.append(chunk)
    data = b"".join(parts)
    await asyncio.to_thread(check_image, data, max_bytes=max_bytes, max_pixels=settings.upload_max_pixels)
    return data
