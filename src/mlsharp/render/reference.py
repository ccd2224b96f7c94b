"""The naive renderer: every gaussian at every pixel, one gaussian at a time, in float64.

Why: it is the oracle the fast rasterizer is tested against (gsplat's own tests pair a reference
implementation with the fast one the same way). Written independently of :mod:`project` and
:mod:`rasterize`: explicit 3x3/2x3 matrices instead of per-component algebra, no culling or tiles,
and the 3DGS blending loop spelled out. Only for tiny images and scenes (O(N * H * W)).
"""

from __future__ import annotations

import torch
from torch import Tensor

from mlsharp.render.camera import Camera
from mlsharp.render.project import ALPHA_MAX, ALPHA_MIN, EPS2D_PX2, FOV_CLAMP, NEAR_PLANE_M
from mlsharp.render.rasterize import T_MIN, Raster


def _rotation(q: Tensor) -> Tensor:
    """(4,) w x y z (any norm) -> (3, 3)."""
    w, x, y, z = (q / torch.linalg.vector_norm(q)).tolist()
    return torch.tensor(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ],
        dtype=torch.float64,
    )


def render_reference(
    means: Tensor, quaternions: Tensor, scales: Tensor, opacities: Tensor, colors: Tensor, camera: Camera
) -> Raster:
    """(N, ...) gaussians -> blended (H, W, 3) colour and (H, W) transmittance, float64."""
    pose = camera.world_to_camera.to(torch.float64)
    rot, trans = pose[:3, :3], pose[:3, 3]
    width, height = camera.width_px, camera.height_px
    fx, fy, cx, cy = camera.fx_px, camera.fy_px, camera.cx_px, camera.cy_px
    cols = torch.arange(width, dtype=torch.float64) + 0.5
    rows = torch.arange(height, dtype=torch.float64) + 0.5
    py, px = torch.meshgrid(rows, cols, indexing="ij")  # (H, W) pixel centres

    splats = []
    for i in range(means.shape[0]):
        mean = rot @ means[i].double() + trans
        x, y, z = mean.tolist()
        if z <= NEAR_PLANE_M or float(opacities[i]) <= ALPHA_MIN:
            continue
        r = _rotation(quaternions[i].double())
        sigma = r @ torch.diag(scales[i].double() ** 2) @ r.T
        tx = max(-FOV_CLAMP * 0.5 * width / fx, min(FOV_CLAMP * 0.5 * width / fx, x / z)) * z
        ty = max(-FOV_CLAMP * 0.5 * height / fy, min(FOV_CLAMP * 0.5 * height / fy, y / z)) * z
        jac = torch.tensor(
            [[fx / z, 0.0, -fx * tx / z**2], [0.0, fy / z, -fy * ty / z**2]], dtype=torch.float64
        )
        cov2d = jac @ rot @ sigma @ rot.T @ jac.T + EPS2D_PX2 * torch.eye(2, dtype=torch.float64)
        center = (fx * x / z + cx, fy * y / z + cy)
        splats.append((z, i, torch.linalg.inv(cov2d), center))
    splats.sort(key=lambda s: (s[0], s[1]))  # by depth, ties in input order

    color = torch.zeros((height, width, 3), dtype=torch.float64)
    transmittance = torch.ones((height, width), dtype=torch.float64)
    done = torch.zeros((height, width), dtype=torch.bool)
    for _, i, conic, (u, v) in splats:
        dx, dy = px - u, py - v
        power = 0.5 * (conic[0, 0] * dx * dx + conic[1, 1] * dy * dy) + conic[0, 1] * dx * dy
        alpha = torch.clamp(float(opacities[i]) * torch.exp(-power), max=ALPHA_MAX)
        blend = (alpha > ALPHA_MIN) & ~done
        after = transmittance * (1 - alpha)
        stop = blend & (after <= T_MIN)
        done |= stop
        blend &= ~stop
        color += torch.where(blend, alpha * transmittance, 0.0)[..., None] * colors[i].double()
        transmittance = torch.where(blend, after, transmittance)
    return Raster(rgb=color, transmittance=transmittance)
