"""perf_analyzer ``--input-data`` JSON built from photo-like JPEGs.

Why JSON with ``b64``: perf_analyzer takes ``b64`` as the raw tensor bytes, so a BYTES element must
be Triton's wire format (4-byte little-endian length, then the bytes); the bare JPEG is rejected
with an absurd "expecting string of length ..." error. Float tensors go as raw little-endian fp32
too, which keeps a 3x1536x1536 image at ~37 MB of JSON instead of ~100 MB of decimal text.
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mlsharp.sample_image import photo_like_jpeg

#: (width, height, seed) of the generated photos: landscape, portrait, 4:3, like phone shots
DEFAULT_PHOTOS = ((960, 720, 0), (720, 960, 1), (1024, 768, 2))


def generated_photos(sizes: Sequence[tuple[int, int, int]] = DEFAULT_PHOTOS) -> list[bytes]:
    """Seeded photo-like JPEGs (with an EXIF 35 mm focal length), used when no photos are given."""
    return [photo_like_jpeg(w, h, seed=s) for w, h, s in sizes]


def load_photos(paths: Sequence[str | Path]) -> list[bytes]:
    """Read the given photo files; they are sent as-is (no re-encoding)."""
    return [Path(p).read_bytes() for p in paths]


def bytes_element(data: bytes) -> dict[str, object]:
    """One BYTES tensor of shape [1] in perf_analyzer's raw ``b64`` form (length-prefixed)."""
    return {"b64": base64.b64encode(struct.pack("<I", len(data)) + data).decode("ascii"), "shape": [1]}


def fp32_element(array: np.ndarray) -> dict[str, object]:
    """A float32 tensor (no batch axis) as raw little-endian bytes."""
    arr = np.ascontiguousarray(array, dtype="<f4")
    return {"b64": base64.b64encode(arr.tobytes()).decode("ascii"), "shape": list(arr.shape)}


def ensemble_data(photos: Sequence[bytes], fmt: str = "ply") -> dict[str, object]:
    """One input set per photo for the ``mlsharp`` ensemble; focal overrides unset (<= 0)."""
    steps = []
    for photo in photos:
        steps.append(
            {
                "image_bytes": bytes_element(photo),
                "focal_px": {"content": [0.0], "shape": [1]},
                "focal_mm": {"content": [0.0], "shape": [1]},
                "formats": bytes_element(fmt.encode()),
            }
        )
    return {"data": steps}


def sharp_data(photos: Sequence[bytes], working_size_px: int) -> dict[str, object]:
    """Network inputs for ``sharp`` alone: each photo decoded and resized as ``preprocess`` does.

    Using the real preprocessing (not uniform noise) keeps the tensors in the range the network
    sees in service, so the timing matches the ensemble's ``sharp`` step.
    """
    from mlsharp.imaging import decode_image
    from mlsharp.preprocess import to_network_input

    steps = []
    for photo in photos:
        decoded = decode_image(photo)
        image, disparity = to_network_input(decoded.rgb, decoded.focal_px, working_size_px)
        steps.append(
            {
                "image": fp32_element(image.numpy()[0]),
                "disparity_factor": fp32_element(disparity.numpy().reshape(1)),
            }
        )
    return {"data": steps}


def write_json(data: dict[str, object], path: Path) -> Path:
    """Write input data for ``--input-data``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path
