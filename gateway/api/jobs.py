"""Async jobs: submit one or many photos, follow progress (JSON or server-sent events), cancel,
and download every result as one zip."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Path, UploadFile
from fastapi.responses import Response, StreamingResponse
from fastapi.sse import EventSourceResponse, ServerSentEvent

from gateway.api.deps import BaseUrl, PredictPrincipal, ServicesDep, read_image
from gateway.api.files import file_response
from gateway.api.schemas import JobAccepted, JobStatus, error_responses, job_status
from gateway.errors import GatewayError, NotFound, PayloadTooLarge, Unprocessable
from gateway.ids import safe_stem
from gateway.service.inputs import check_flag, check_params
from mlsharp.errors import MLSharpError

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
JobId = Annotated[str, Path(max_length=64, description="Job id from POST /v1/jobs")]


@router.post(
    "",
    status_code=202,
    response_model=JobAccepted,
    responses=error_responses(400, 401, 403, 413, 415, 422, 429),
    summary="Submit one or many photos as an async job",
)
async def submit_job(
    services: ServicesDep,
    principal: PredictPrincipal,
    base_url: BaseUrl,
    files: Annotated[list[UploadFile], File(description="One or more photos")],
    format: Annotated[list[str] | None, Form(description="Formats, repeated or comma-separated")] = None,
    focal_px: Annotated[float | None, Form()] = None,
    focal_mm: Annotated[float | None, Form()] = None,
    render: Annotated[
        str | None, Form(description="true: also a preview.png and an orbit.mp4 per photo (default false)")
    ] = None,
) -> dict[str, Any]:
    settings = services.settings
    focal = check_params(format, focal_px, focal_mm, settings.formats_default)
    wants_render = check_flag("render", render)
    if not files:
        raise Unprocessable("Send at least one file in the 'files' field.")
    if len(files) > settings.job_max_files:
        raise PayloadTooLarge(f"At most {settings.job_max_files} files per job; got {len(files)}.")
    uploads = []
    for upload in files:
        try:
            data = await read_image(upload, settings)
        except (MLSharpError, GatewayError) as error:
            error.args = (f"{upload.filename or 'file'}: {error}",)  # say which file of the batch
            raise
        uploads.append((upload.filename or "image", safe_stem(upload.filename), data))
    job_id = await services.jobs.submit(
        principal.name, uploads, focal.formats, focal.focal_px, focal.focal_mm, base_url, wants_render
    )
    return {
        "job_id": job_id,
        "status_url": f"{base_url}/v1/jobs/{job_id}",
        "events_url": f"{base_url}/v1/jobs/{job_id}/events",
    }


@router.get("/{job_id}", response_model=JobStatus, responses=error_responses(401, 403, 404))
async def get_job(
    job_id: JobId, services: ServicesDep, principal: PredictPrincipal, base_url: BaseUrl
) -> JobStatus:
    return job_status(await services.jobs.get(job_id, principal), base_url)


@router.delete("/{job_id}", response_model=JobStatus, responses=error_responses(401, 403, 404))
async def cancel_job(
    job_id: JobId, services: ServicesDep, principal: PredictPrincipal, base_url: BaseUrl
) -> JobStatus:
    return job_status(await services.jobs.cancel(job_id, principal), base_url)


async def watched_job(job_id: JobId, services: ServicesDep, principal: PredictPrincipal) -> str:
    """The job's id once it is known to be the caller's: a 404 comes before the stream starts."""
    await services.jobs.get(job_id, principal)
    return job_id


@router.get(
    "/{job_id}/events",
    response_class=EventSourceResponse,
    responses=error_responses(401, 403, 404),
    summary="Follow a job: a `job` event (the JobStatus) per change, then one `end` event",
)
async def job_events(
    job_id: Annotated[str, Depends(watched_job)],
    services: ServicesDep,
    principal: PredictPrincipal,
    base_url: BaseUrl,
) -> AsyncIterator[ServerSentEvent]:
    """FastAPI encodes the events and sends a keep-alive comment when the job is quiet."""
    try:
        async for job in services.jobs.watch(job_id, principal):
            yield ServerSentEvent(event="job", id=str(job.version), data=job_status(job, base_url))
    except NotFound:  # expired (TTL) while someone was still watching
        pass
    yield ServerSentEvent(event="end", data={"job_id": job_id})


@router.get(
    "/{job_id}/archive",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/zip": {}}},
        307: {"description": "Redirect to a presigned URL"},
        **error_responses(401, 403, 404, 409),
    },
)
async def job_archive(job_id: JobId, services: ServicesDep, principal: PredictPrincipal) -> Response:
    job_id, name = await services.jobs.archive(job_id, principal)
    return await file_response(services, job_id, name, filename=f"mlsharp-{job_id[:12]}.zip")
