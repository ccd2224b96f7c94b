"""GET /files/{task_id}/{name}: result downloads that cannot leave the results directory.

Ids are 192-bit random capabilities checked by regex, names a strict whitelist, and the final
path is resolved and checked to sit directly in the task's folder.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import FileResponse

from gateway.api.deps import ServicesDep
from gateway.api.schemas import error_responses
from gateway.formats import format_labels
from gateway.ids import resolve_download

router = APIRouter(tags=["files"])


def media_type_for(name: str) -> str:
    if name.endswith(".json"):
        return "application/json"
    if name.endswith(".zip"):
        return "application/zip"
    for label in sorted(format_labels().values(), key=lambda lab: -len(lab.extension)):
        if name.endswith(label.extension):
            return label.media_type
    return "application/octet-stream"


@router.get("/files/{task_id}/{name}", response_class=FileResponse, responses=error_responses(404))
async def download(
    services: ServicesDep,
    task_id: Annotated[str, Path(max_length=64)],
    name: Annotated[str, Path(max_length=128)],
) -> FileResponse:
    path = await asyncio.to_thread(resolve_download, services.settings.results_dir, task_id, name)
    return FileResponse(
        path,
        media_type=media_type_for(name),
        filename=name,
        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=3600"},
    )
