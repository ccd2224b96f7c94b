"""GET /metrics: Prometheus text format from the app's own registry."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.api.deps import ServicesDep

router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=Response)
async def metrics(services: ServicesDep) -> Response:
    await services.refresh_gauges()
    return Response(generate_latest(services.metrics.registry), media_type=CONTENT_TYPE_LATEST)
