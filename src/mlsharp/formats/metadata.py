"""Scene metadata as JSON: what a viewer or client needs without parsing the PLY extras.

Why: only the ml-sharp PLY carries camera and depth-range information; SPZ, .splat and the clean
PLY cannot. The API returns this dict beside every format, so a page can set up the camera
(intrinsics, image size) and an orbit target (disparity quantiles) for any of them, and can see
that a scene came from random weights.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, TypedDict, cast

from mlsharp.formats import attributes
from mlsharp.formats.ply import COLOR_SPACE_SRGB, PLY_LAYOUT_VERSION
from mlsharp.gaussians import CameraInfo, Gaussians3D

#: version of this metadata schema; bump when a key changes meaning
METADATA_VERSION = 1
COORDINATE_FRAME = "opencv: x right, y down, z forward"


class ImageSize(TypedDict):
    """The original photo's size in pixels (not the network's working size)."""

    width_px: int
    height_px: int


class ImageInfo(TypedDict):
    """What decoding learnt about the photo, passed from Triton's preprocess to its postprocess."""

    focal_source: str
    source_format: str


class _ProducerFacts(TypedDict, total=False):
    """Keys only some producers know (the served and eager paths; not a converted file)."""

    working_size_px: int
    focal_source: str
    source_format: str


class SceneMetadata(_ProducerFacts):
    """The metadata document's keys, one type for every producer and reader.

    Why a TypedDict: it stays the plain JSON dict on the wire and on disk, while the gateway,
    the Triton models and the test fakes read the same declared keys (``image_size`` is nested;
    a reader that invents a flat ``width_px`` is a type error, not a silent miss). Every key
    ``build_metadata`` always writes is required; the rest depend on the producer.
    """

    metadata_version: int
    model_id: str
    random_weights: bool
    num_gaussians: int
    image_size: ImageSize
    intrinsics: dict[str, Any]
    vertical_fov_deg: float
    disparity_quantiles: dict[str, float | None]
    coordinate_frame: str
    units: str
    color_space: str
    ply_layout_version: list[int]


def parse_metadata(raw: str | bytes, *, check_keys: bool = True) -> SceneMetadata:
    """A metadata document read back (from Triton, the cache): the JSON object, checked for
    every required key unless ``check_keys`` is off; ValueError otherwise (a foreign or
    truncated document)."""
    document = json.loads(raw)
    if not isinstance(document, dict):
        raise ValueError("scene metadata is not a JSON object")
    missing = sorted(SceneMetadata.__required_keys__ - document.keys()) if check_keys else []
    if missing:
        raise ValueError(f"scene metadata lacks {', '.join(missing)}")
    return cast(SceneMetadata, document)


def image_size(metadata: Mapping[str, Any]) -> ImageSize | None:
    """The ``image_size`` entry when it is well formed, else None (old or foreign documents)."""
    size = metadata.get("image_size")
    if not isinstance(size, dict):
        return None
    width, height = size.get("width_px"), size.get("height_px")
    if not isinstance(width, int) or not isinstance(height, int):
        return None
    return {"width_px": width, "height_px": height}


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None  # JSON has no NaN/inf


def build_metadata(
    gaussians: Gaussians3D,
    camera: CameraInfo,
    *,
    model_id: str,
    random_weights: bool,
    working_size_px: int | None = None,
    image_info: ImageInfo | None = None,
    extra: Mapping[str, Any] | None = None,
    quantiles: tuple[float, float] | None = None,
) -> SceneMetadata:
    """JSON-serialisable description of one scene (keys in ``extra`` are added last, may override:
    a producer's own facts, outside the declared schema). ``quantiles``: the disparity quantiles
    when the caller already has them (a GPU stage), else computed from ``gaussians.means``."""
    f, w, h = float(camera.focal_px), int(camera.width_px), int(camera.height_px)
    cx, cy = w * 0.5, h * 0.5
    lo, hi = quantiles if quantiles is not None else attributes.disparity_quantiles(gaussians.means)
    meta: SceneMetadata = {
        "metadata_version": METADATA_VERSION,
        "model_id": model_id,
        "random_weights": bool(random_weights),
        "num_gaussians": gaussians.num_gaussians,
        "image_size": {"width_px": w, "height_px": h},
        "intrinsics": {
            "focal_px": f,
            "cx_px": cx,
            "cy_px": cy,
            "matrix": [[f, 0.0, cx], [0.0, f, cy], [0.0, 0.0, 1.0]],
        },
        "vertical_fov_deg": math.degrees(2 * math.atan(h / (2 * f))),
        "disparity_quantiles": {"q10": _finite_or_none(lo), "q90": _finite_or_none(hi)},
        "coordinate_frame": COORDINATE_FRAME,
        "units": "metres (up to SHARP's monocular scale)",
        "color_space": "srgb" if COLOR_SPACE_SRGB == 0 else "linear",
        "ply_layout_version": list(PLY_LAYOUT_VERSION),
    }
    if working_size_px is not None:
        meta["working_size_px"] = int(working_size_px)
    if image_info is not None:
        meta["focal_source"] = image_info["focal_source"]
        meta["source_format"] = image_info["source_format"]
    if extra:
        return cast(SceneMetadata, {**meta, **extra})
    return meta


def metadata_json_bytes(metadata: Mapping[str, Any]) -> bytes:
    """UTF-8 JSON, stable key order, no NaN (strict JSON parsers reject it)."""
    return json.dumps(metadata, sort_keys=True, allow_nan=False, indent=2).encode("utf-8")
