"""GET /v1/live, /v1/health, /v1/ready and /v1/stats: liveness, status, readiness, queue/cache/GPU figures."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from gateway import __version__
from gateway.api.deps import ServicesDep
from gateway.api.schemas import HealthResponse, StatsResponse, StatusMessage, error_responses
from gateway.backends import InferenceBackend
from gateway.errors import BackendUnavailable

router = APIRouter(prefix="/v1", tags=["health"])


def not_ready_reason(backend: InferenceBackend) -> str:
    """Why the backend is not ready, for unauthenticated callers: the kind of failure, never the
    load error's text (it names checkpoint paths and the host's layout; the log has it)."""
    error = getattr(backend, "load_error", None)
    if not error:
        return f"the {backend.name} backend is not ready"
    if "checkpoint" in error.lower():
        return "the model checkpoint could not be loaded (the server log names the file and the cause)"
    return f"the {backend.name} backend failed to load (the server log has the cause)"


@router.get("/live", response_model=StatusMessage)
async def live() -> StatusMessage:
    """Liveness probe: answered by this process alone, never waiting on Triton or storage, so a
    slow Triton does not get every gateway restarted (that is what readiness is for)."""
    return StatusMessage(status="success", message="alive")


@router.get("/health", response_model=HealthResponse)
async def health(services: ServicesDep) -> HealthResponse:
    """Always 200 while the process serves; ``status`` says whether predictions can run."""
    backend = services.backend
    ready = await backend.ready()
    gpu = await backend.device_info()
    return HealthResponse(
        status="healthy" if ready else "degraded",
        gpu_available=bool(gpu["available"]),
        gpu_vendor=gpu["vendor"],
        gpu_name=gpu["name"],
        backend=backend.name,
        backend_ready=ready,
        triton_ready=ready if backend.name == "triton" else None,
        model_id=backend.model_id,
        version=__version__,
        detail=None if ready else not_ready_reason(backend),
    )


@router.get("/ready", response_model=StatusMessage, responses=error_responses(503))
async def ready(services: ServicesDep) -> StatusMessage:
    """Readiness probe: 503 until the backend (model or Triton) can serve and the database and
    object store answer."""
    if not await services.backend.ready():
        raise BackendUnavailable(f"The backend is not ready: {not_ready_reason(services.backend)}.")
    problem = await services.storage_problem()
    if problem is not None:
        raise BackendUnavailable(f"Storage is not ready: {problem}.")
    return StatusMessage(status="success", message="ready")


@router.get("/stats", response_model=StatsResponse)
async def stats(services: ServicesDep) -> dict[str, Any]:
    queue = dict(services.backend.load())
    queue["jobs_active"] = await services.refresh_gauges()
    return {
        "gpu": await services.backend.device_info(),
        "queue": queue,
        "cache": await services.cache.stats(),
        "webhooks": await services.webhooks.outbox_counts(),
    }
