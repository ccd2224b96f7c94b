"""A backend for the real gateway whose scene is known in advance, for browser tests of the
viewer (random-weight SHARP output looks like noise, so it cannot show orientation).

Every photo becomes the same synthetic scene in SHARP's OpenCV camera frame (x right, y down,
z forward): a plane of gaussians 2 m in front of the camera that, seen from the photo's viewpoint,
shows a red top half, a blue bottom half and a green square in the top-left corner. If the viewer
orients the frame and the field of view correctly, the first rendered frame shows exactly that.
It plugs into ``gateway.app.create_app(settings, backend=...)``, so the page talks to the real
jobs API, events stream and file downloads.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import struct
from typing import Any

import numpy as np

from gateway.backends.base import Admission, InferenceResult, no_gpu

PHOTO_W, PHOTO_H, FOCAL_PX, DEPTH_M = 640, 480, 560.0, 2.0
C0 = 0.28209479177387814


def synthetic_scene(cols: int = 96, rows: int = 72) -> dict[str, np.ndarray]:
    """A plane at DEPTH_M filling the photo's frustum; colours as described in the module doc."""
    u = (np.arange(cols) + 0.5) / cols * PHOTO_W
    v = (np.arange(rows) + 0.5) / rows * PHOTO_H
    uu, vv = np.meshgrid(u, v)
    x = (uu - PHOTO_W / 2) / FOCAL_PX * DEPTH_M
    y = (vv - PHOTO_H / 2) / FOCAL_PX * DEPTH_M
    z = np.full_like(x, DEPTH_M)
    rgb = np.where((vv < PHOTO_H / 2)[..., None], [0.9, 0.1, 0.1], [0.1, 0.2, 0.9])
    marker = (uu < PHOTO_W * 0.25) & (vv < PHOTO_H * 0.25)
    rgb[marker] = [0.1, 0.85, 0.15]
    spacing = PHOTO_W / cols / FOCAL_PX * DEPTH_M
    n = cols * rows
    return {
        "means": np.stack([x, y, z], -1).reshape(n, 3).astype(np.float32),
        "colors": rgb.reshape(n, 3).astype(np.float32),
        "sigma": np.full((n, 3), spacing * 0.7, np.float32),
        "opacity": np.full(n, 0.95, np.float32),
    }


def encode_spz_v2(scene: dict[str, np.ndarray]) -> bytes:
    """Niantic SPZ version 2, SH degree 0, axes as given (no conversion), gzip-wrapped."""
    means, colors, sigma, opacity = scene["means"], scene["colors"], scene["sigma"], scene["opacity"]
    n = len(means)
    out = io.BytesIO()
    out.write(struct.pack("<IIIBBBB", 0x5053474E, 2, n, 0, 12, 0, 0))
    fixed = np.round(means.astype(np.float64) * (1 << 12)).astype(np.int64).reshape(-1)
    fixed &= 0xFFFFFF
    out.write(
        np.stack([fixed & 0xFF, (fixed >> 8) & 0xFF, (fixed >> 16) & 0xFF], -1).astype(np.uint8).tobytes()
    )
    out.write(np.clip(np.round(opacity * 255), 0, 255).astype(np.uint8).tobytes())
    f_dc = (colors - 0.5) / C0
    out.write(np.clip(np.round(f_dc * 0.15 * 255 + 127.5), 0, 255).astype(np.uint8).tobytes())
    out.write(np.clip(np.round((np.log(sigma) + 10) * 16), 0, 255).astype(np.uint8).tobytes())
    # identity rotation: xyz = 0 (w >= 0 is derived by the reader)
    out.write(np.full((n, 3), 128, np.uint8).tobytes())
    return gzip.compress(out.getvalue(), compresslevel=6)


def scene_metadata(n: int) -> dict:
    return {
        "focal_px": FOCAL_PX,
        "width_px": PHOTO_W,
        "height_px": PHOTO_H,
        "intrinsic": [[FOCAL_PX, 0, PHOTO_W / 2], [0, FOCAL_PX, PHOTO_H / 2], [0, 0, 1]],
        "image_size": [PHOTO_W, PHOTO_H],
        "disparity_quantiles": [1 / DEPTH_M, 1 / DEPTH_M],
        "num_gaussians": n,
        "random_weights": False,
        "model_id": "stub",
        "coordinate_frame": "opencv",
    }


class KnownSceneBackend:
    """The gateway's backend contract (gateway/backends/base.py), answering with the known scene."""

    name = "known-scene"
    model_id = "known-scene-1"

    def __init__(self) -> None:
        self.admission = Admission(1, 8, retry_after_s=3)
        scene = synthetic_scene()
        self.spz = encode_spz_v2(scene)
        self.metadata = scene_metadata(len(scene["means"]))

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def ready(self) -> bool:
        return True

    def load(self) -> dict[str, int]:
        return self.admission.load()

    async def device_info(self) -> dict[str, Any]:
        return no_gpu()

    async def infer(
        self,
        image_bytes: bytes,
        focal_px: float | None,
        focal_mm: float | None,
        fmt: str,
        *,
        wait: bool = False,
    ) -> InferenceResult:
        async with self.admission.slot(wait=wait):
            await asyncio.sleep(0.2)
        scene = self.spz if fmt == "spz" else b"known-scene placeholder for " + fmt.encode()
        return InferenceResult(scene, json.loads(json.dumps(self.metadata)), {"network": 0.2})
