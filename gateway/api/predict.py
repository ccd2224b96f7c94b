"""POST /v1/predict: one image in, one scene file URL per requested format out (one network run).

``url`` is the first format's download, as existing clients expect; ``urls`` has every format."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, UploadFile

from gateway.api.deps import BaseUrl, PredictPrincipal, ServicesDep, read_image
from gateway.api.schemas import PredictResponse, error_responses
from gateway.service.inputs import check_params

router = APIRouter(prefix="/v1", tags=["predict"])


@router.post(
    "/predict",
    response_model=PredictResponse,
    responses=error_responses(400, 401, 403, 413, 415, 422, 429, 503),
    summary="Predict a 3D gaussian scene from one photo",
)
async def predict(
    services: ServicesDep,
    principal: PredictPrincipal,
    base_url: BaseUrl,
    file: Annotated[UploadFile, File(description="The photo (JPEG, PNG, WebP, HEIC, ...)")],
    focal_px: Annotated[float | None, Form(description="Focal length override in pixels")] = None,
    focal_mm: Annotated[float | None, Form(description="35 mm-equivalent focal length override")] = None,
    format: Annotated[
        list[str] | None,
        Form(description="ply, ply-clean, spz or splat; repeated or comma-separated (default ply)"),
    ] = None,
) -> dict[str, Any]:
    settings = services.settings
    params = check_params(format, focal_px, focal_mm, settings.formats_default[:1])
    data = await read_image(file, settings)
    return await services.predict.predict_task(data, params, owner=principal.name, base_url=base_url)
