"""gsplat's CUDA rasterizer, when it is installed and the scene is on a CUDA device.

Why optional: gsplat needs a CUDA toolkit (it compiles or ships CUDA kernels); our own torch
rasterizer is the portable path and the one tested here. The call below uses gsplat's documented
``rasterization`` entry point with the same conventions as ours: OpenCV world-to-camera matrices,
pixel centres at +0.5, eps2d = 0.3 px^2 ("classic" mode), near plane 0.01 m, colours as given
(no spherical harmonics), no background (we add it ourselves).
"""

from __future__ import annotations

import importlib.util

import torch

from mlsharp.render.camera import Camera
from mlsharp.render.project import EPS2D_PX2, NEAR_PLANE_M
from mlsharp.render.rasterize import Raster


def available(device: torch.device) -> bool:
    """True when gsplat can be imported and ``device`` is a usable CUDA device."""
    if device.type != "cuda" or not torch.cuda.is_available():
        return False
    return importlib.util.find_spec("gsplat") is not None


def render_gsplat(
    means: torch.Tensor,
    quaternions: torch.Tensor,
    scales: torch.Tensor,
    opacities: torch.Tensor,
    colors: torch.Tensor,
    camera: Camera,
) -> Raster:
    """(N, ...) CUDA tensors -> blended (H, W, 3) colour and (H, W) transmittance."""
    import gsplat  # optional dependency, imported only here

    device = means.device
    viewmat = camera.world_to_camera.to(device=device, dtype=torch.float32)[None]  # (1, 4, 4)
    intrinsics = camera.intrinsics.to(device=device, dtype=torch.float32)[None]  # (1, 3, 3)
    rendered, alphas, _ = gsplat.rasterization(
        means.float(),
        quaternions.float(),
        scales.float(),
        opacities.float(),
        colors.float(),
        viewmat,
        intrinsics,
        camera.width_px,
        camera.height_px,
        near_plane=NEAR_PLANE_M,
        eps2d=EPS2D_PX2,
        rasterize_mode="classic",
        render_mode="RGB",
    )
    return Raster(rgb=rendered[0], transmittance=1.0 - alphas[0, ..., 0])
