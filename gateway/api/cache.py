"""GET /v1/cache and POST /v1/cache/clear (admin scope)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from gateway.api.deps import AdminPrincipal, ServicesDep
from gateway.api.schemas import CacheStats, StatusMessage, error_responses

router = APIRouter(prefix="/v1/cache", tags=["cache"], responses=error_responses(401, 403))


@router.get("", response_model=CacheStats)
async def cache_stats(services: ServicesDep, _: AdminPrincipal) -> dict[str, Any]:
    return await services.cache.stats()


@router.post("/clear", response_model=StatusMessage)
async def cache_clear(services: ServicesDep, _: AdminPrincipal) -> StatusMessage:
    removed = await services.cache.clear()
    return StatusMessage(status="success", message=f"Cache cleared ({removed} entries removed).")
