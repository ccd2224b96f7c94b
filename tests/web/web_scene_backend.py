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
import json
from typing import Any

import numpy as np

from gateway.backends.base import Admission, InferenceResult, no_gpu

PHOTO_W, PHOTO_H, FOCAL_PX, DEPTH_M = 640, 480, 560.0, 2.0


def synthetic_scene(cols: int = 96, rows: int = 72):
    """A plane at DEPTH_M filling the photo's frustum, as a core ``Gaussians3D`` plus its camera."""
    import torch

    from mlsharp.formats.colorspace import srgb_to_linear
    from mlsharp.gaussians import CameraInfo, Gaussians3D

    u = (np.arange(cols) + 0.5) / cols * PHOTO_W
    v = (np.arange(rows) + 0.5) / rows * PHOTO_H
    uu, vv = np.meshgrid(u, v)
    x = (uu - PHOTO_W / 2) / FOCAL_PX * DEPTH_M
    y = (vv - PHOTO_H / 2) / FOCAL_PX * DEPTH_M
    z = np.full_like(x, DEPTH_M)
    srgb = np.where((vv < PHOTO_H / 2)[..., None], [0.9, 0.1, 0.1], [0.1, 0.2, 0.9])
    marker = (uu < PHOTO_W * 0.25) & (vv < PHOTO_H * 0.25)
    srgb[marker] = [0.1, 0.85, 0.15]
    spacing = PHOTO_W / cols / FOCAL_PX * DEPTH_M
    n = cols * rows
    quaternions = torch.zeros(n, 4)
    quaternions[:, 0] = 1.0
    gaussians = Gaussians3D(
        means=torch.from_numpy(np.stack([x, y, z], -1).reshape(n, 3).astype(np.float32)),
        scales=torch.full((n, 3), spacing * 0.7),
        quaternions=quaternions,
        colors_linear=srgb_to_linear(torch.from_numpy(srgb.reshape(n, 3).astype(np.float32))),
        opacities=torch.full((n,), 0.95),
    )
    return gaussians, CameraInfo(focal_px=FOCAL_PX, width_px=PHOTO_W, height_px=PHOTO_H)


class KnownSceneBackend:
    """The gateway's backend contract (gateway/backends/base.py), answering with the known scene."""

    name = "known-scene"
    model_id = "known-scene-1"

    def __init__(self) -> None:
        from mlsharp.formats import OUTPUT_FORMATS, build_metadata, encode_scene

        self.admission = Admission(1, 8, retry_after_s=3)
        gaussians, camera = synthetic_scene()
        # The project's own writers, so the browser reads what the service really sends.
        self.scenes = {fmt: encode_scene(fmt, gaussians, camera) for fmt in OUTPUT_FORMATS}
        self.metadata = build_metadata(gaussians, camera, model_id=self.model_id, random_weights=False)

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
        formats: tuple[str, ...],
        *,
        wait: bool = False,
    ) -> InferenceResult:
        async with self.admission.slot(wait=wait):
            await asyncio.sleep(0.2)
        scenes = {fmt: self.scenes[fmt] for fmt in formats}  # every format from one "run"
        return InferenceResult(scenes, json.loads(json.dumps(self.metadata)), {"network": 0.2})
