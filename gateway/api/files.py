"""GET /files/{task_id}/{name}: result downloads, streamed from the blob store or redirected.

Ids are 192-bit random capabilities checked by regex and names a strict whitelist; a name is
served only if the task has a ``file_refs`` row for it, so no other blob (job inputs, another
task's files) is reachable. Bytes are streamed chunk by chunk through the gateway, or, with
``download_mode: presigned`` and an S3 store, the answer is a 307 to a short-lived presigned URL.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import RedirectResponse, Response, StreamingResponse

from gateway.api.deps import ServicesDep
from gateway.api.schemas import error_responses
from gateway.errors import NotFound
from gateway.formats import format_labels
from gateway.ids import is_valid_id, is_valid_name
from gateway.service.blobs import BlobNotFound
from gateway.service.container import Services

router = APIRouter(tags=["files"])

CACHE_CONTROL = "private, max-age=3600"


#: files a job makes besides scenes: metadata, archives, renders (render=true)
OTHER_MEDIA_TYPES = {
    ".json": "application/json",
    ".zip": "application/zip",
    ".png": "image/png",
    ".mp4": "video/mp4",
}


def media_type_for(name: str) -> str:
    for extension, media_type in OTHER_MEDIA_TYPES.items():
        if name.endswith(extension):
            return media_type
    for label in sorted(format_labels().values(), key=lambda lab: -len(lab.extension)):
        if name.endswith(label.extension):
            return label.media_type
    return "application/octet-stream"


async def file_response(
    services: Services, task_id: str, name: str, *, filename: str | None = None
) -> Response:
    """A task's file as a streamed download (or a redirect), or NotFound before any byte."""
    if not is_valid_id(task_id) or not is_valid_name(name):
        raise NotFound("No such file.")
    ref = await services.store.ref(task_id, name)
    if ref is None:
        raise NotFound("No such file.")
    filename = filename or name
    media_type = media_type_for(name)
    headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": CACHE_CONTROL}
    if services.settings.download_mode == "presigned":
        url = await services.blobs.presigned_url(
            ref.blob_key, services.settings.presigned_url_ttl_s, filename, media_type
        )
        if url is not None:
            return RedirectResponse(url, status_code=307, headers={**headers, "Cache-Control": "no-store"})
    try:
        stream = await services.blobs.open(ref.blob_key)
    except BlobNotFound:
        raise NotFound("No such file.") from None
    headers |= {
        "Content-Length": str(stream.size_bytes),
        "Content-Disposition": f'attachment; filename="{filename}"',
    }
    return StreamingResponse(stream.chunks, media_type=media_type, headers=headers)


@router.get(
    "/files/{task_id}/{name}",
    response_class=StreamingResponse,
    responses={307: {"description": "Redirect to a presigned URL"}, **error_responses(404)},
)
async def download(
    services: ServicesDep,
    task_id: Annotated[str, Path(max_length=64)],
    name: Annotated[str, Path(max_length=128)],
) -> Response:
    return await file_response(services, task_id, name)
