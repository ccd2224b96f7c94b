"""Response bodies of the /v1 API, for validation and the OpenAPI document.

The response shapes existing clients parse are kept key for key; new resources (jobs) add their own models.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, HttpUrl

from gateway.service.job_rows import FileStage, FileState, JobRow, JobState
from gateway.service.webhooks import EventType


class ErrorBody(BaseModel):
    error: str
    code: str = Field(description="Machine-readable error code (e.g. invalid_image, overloaded)")
    message: str
    status_code: int
    path: str
    timestamp: str


class ImageSizeModel(BaseModel):
    width_px: int
    height_px: int


class PredictResponse(BaseModel):
    status: Literal["success"]
    url: str = Field(description="Download of the first requested format (the field existing clients read)")
    urls: dict[str, str] = Field(default_factory=dict, description="One download per requested format")
    metadata_url: str | None = None
    image_size: ImageSizeModel | None = Field(default=None, description="The photo's size in pixels")
    cached: bool = False
    processing_time: float
    task_id: str


class Gpu(BaseModel):
    available: bool
    vendor: str | None
    name: str | None
    count: int = 0
    memory_mb: int = 0


class HealthResponse(BaseModel):
    status: Literal["healthy", "degraded"]
    gpu_available: bool
    gpu_vendor: str | None
    gpu_name: str | None
    backend: str
    backend_ready: bool
    triton_ready: bool | None
    model_id: str
    version: str
    detail: str | None = None


class CacheStats(BaseModel):
    enabled: bool
    size: int | None
    max_size: int
    hits: int
    misses: int
    hit_rate: float
    backend: str | None = None
    bytes: int | None = None
    errors: int = 0


class StatsResponse(BaseModel):
    gpu: Gpu
    queue: dict[str, int]
    cache: CacheStats
    webhooks: dict[str, int]


class StatusMessage(BaseModel):
    status: Literal["success"]
    message: str


class WebhookList(BaseModel):
    enabled: bool
    webhooks: dict[str, str]


class WebhookCreate(BaseModel):
    model_config = {"extra": "forbid"}

    event_type: EventType
    url: HttpUrl = Field(description="http(s) URL; private/loopback targets need the allow-list")


class WebhookCreated(BaseModel):
    status: Literal["success"]
    event_type: str
    url: str
    secret: str = Field(description="HMAC-SHA256 key for X-Webhook-Signature; shown only once")


class JobAccepted(BaseModel):
    job_id: str
    status_url: str
    events_url: str


class JobFile(BaseModel):
    index: int
    filename: str
    state: FileState
    error: str | None
    error_code: str | None = Field(default=None, description="Machine-readable error code")
    processing_time: float | None
    stage: FileStage | None = Field(
        default=None, description="While running: inference, then render (render=true jobs)"
    )
    downloads: dict[str, str] = Field(
        description="Format -> URL; also metadata, and preview (PNG) and orbit (MP4) with render=true"
    )


class JobStatus(BaseModel):
    job_id: str
    state: JobState
    progress: float
    counts: dict[str, int]
    formats: list[str]
    render: bool = Field(description="Each photo also gets a preview still and an orbit video")
    error: str | None
    created_at: float
    updated_at: float
    finished_at: float | None
    expires_at: float | None
    files: list[JobFile]
    status_url: str
    events_url: str
    archive_url: str | None


def job_status(job: JobRow, base_url: str) -> JobStatus:
    """Render a job row (with its files) as the API shape, with absolute download URLs."""
    job_id = job.job_id
    counts = {"total": len(job.files), "done": 0, "failed": 0, "pending": 0, "running": 0, "cancelled": 0}
    for file in job.files:
        counts[file.state] += 1
    files = [
        JobFile(
            index=file.idx,
            filename=file.filename,
            state=file.state,
            error=file.error,
            error_code=file.error_code,
            processing_time=file.processing_time,
            stage=file.stage,
            downloads={fmt: f"{base_url}/files/{job_id}/{name}" for fmt, name in file.outputs.items()},
        )
        for file in job.files
    ]
    finished = counts["done"] + counts["failed"] + counts["cancelled"]
    return JobStatus(
        job_id=job_id,
        state=job.state,
        progress=round(finished / counts["total"], 4) if counts["total"] else 1.0,
        counts=counts,
        formats=list(job.formats),
        render=job.render,
        error=job.error,
        created_at=job.created_at,
        updated_at=job.updated_at,
        finished_at=job.finished_at,
        expires_at=job.expires_at,
        files=files,
        status_url=f"{base_url}/v1/jobs/{job_id}",
        events_url=f"{base_url}/v1/jobs/{job_id}/events",
        archive_url=f"{base_url}/v1/jobs/{job_id}/archive" if job.terminal and counts["done"] else None,
    )


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries for the error shape."""
    return {code: {"model": ErrorBody} for code in codes}
