"""Projection of 3D gaussians to screen-space ellipses (EWA splatting), vectorised per component.

Why per component: like :mod:`mlsharp.linalg3`, every quantity is a (M,) tensor per matrix entry,
so the same code runs on CPU and GPU and a CPU spends its time in a few hundred elementwise ops
instead of batched 3x3 matmuls. On a CPU the gaussians are projected in chunks on the render pool
(:mod:`mlsharp.render.workers`), each writing its rows of preallocated outputs.

Formulas (Zwicker et al. 2001, "EWA Volume Splatting"; Kerbl et al. 2023, "3D Gaussian
Splatting"): Sigma = R(q) diag(s^2) R(q)^T in world space; in camera space W Sigma W^T; on screen
Sigma' = J W Sigma W^T J^T + eps2d I, where J is the Jacobian of the perspective map at the mean
(its x/z and y/z clamped to 1.3x the half field of view, so edge gaussians do not smear) and
eps2d = 0.3 px^2 is the low-pass dilation (a gaussian never gets thinner than about a pixel).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from mlsharp import linalg3
from mlsharp.render.camera import Camera
from mlsharp.render.workers import ATEN_GRAIN, run_chunks

#: low-pass dilation added to the screen covariance, px^2 (3DGS / gsplat "classic")
EPS2D_PX2 = 0.3
#: gaussians closer than this to the camera plane are culled, metres
NEAR_PLANE_M = 0.01
#: a pixel takes part in blending only when its alpha exceeds this (3DGS's 1/255)
ALPHA_MIN = 1.0 / 255.0
#: alpha never reaches 1 (3DGS/gsplat clamp), so transmittance stays invertible
ALPHA_MAX = 0.999
#: the Jacobian's x/z, y/z are clamped to this multiple of the half field of view
FOV_CLAMP = 1.3
#: gaussians per CPU work item: every op stays below ATen's intra-op grain
CPU_CHUNK = ATEN_GRAIN - 768
#: columns of :attr:`Projected.params`
PARAMS = ("u_px", "v_px", "-A/2", "-B", "-C/2", "ln_opacity")


@dataclass
class Projected:
    """Visible gaussians on screen (M of the scene's N), float32 on the scene's device."""

    index: Tensor  # (M,) int64 index into the scene, ascending
    params: Tensor  # (M, 6) PARAMS: mean (x right, y down, pixel centres at +0.5), conic, ln o
    depths_m: Tensor  # (M,) camera-space z of the mean
    radii_px: Tensor  # (M,) beyond this distance from the mean alpha <= ALPHA_MIN
    colors: Tensor  # (M, 3)

    @property
    def num_visible(self) -> int:
        return int(self.index.shape[0])

    @property
    def means2d_px(self) -> Tensor:
        """(M, 2) screen position of each mean."""
        return self.params[:, :2]

    @property
    def conics(self) -> Tensor:
        """(M, 3) (A, B, C) of Sigma'^-1: power = A dx^2 / 2 + B dx dy + C dy^2 / 2."""
        return torch.stack([-2 * self.params[:, 2], -self.params[:, 3], -2 * self.params[:, 4]], dim=-1)


def _project_block(
    means: Tensor, quaternions: Tensor, scales: Tensor, opacities: Tensor, camera: Camera
) -> tuple[list[Tensor], Tensor, Tensor, Tensor]:
    """(n, ...) gaussians -> (6 PARAMS columns, depth, radius, keep mask), each (n,), unfiltered."""
    pose = camera.world_to_camera.to(torch.float64)
    rot, trans = pose[:3, :3].tolist(), pose[:3, 3].tolist()
    fx, fy, cx, cy = camera.fx_px, camera.fy_px, camera.cx_px, camera.cy_px
    width, height = camera.width_px, camera.height_px
    mx, my, mz = means.float().unbind(-1)
    # Camera-space means: W mu + t, component by component.
    x = mx * rot[0][0] + my * rot[0][1] + mz * rot[0][2] + trans[0]
    y = mx * rot[1][0] + my * rot[1][1] + mz * rot[1][2] + trans[1]
    z = mx * rot[2][0] + my * rot[2][1] + mz * rot[2][2] + trans[2]
    opac = opacities.float()
    qw, qx, qy, qz = quaternions.float().unbind(-1)
    keep = (z > NEAR_PLANE_M) & (opac > ALPHA_MIN) & ((qw * qw + qx * qx + qy * qy + qz * qz) > 0)
    s = scales.float().unbind(-1)
    rq = linalg3.rotation_from_quaternion(qw, qx, qy, qz)  # rows of R(q / |q|)
    # G = W R(q) diag(s), so that W Sigma W^T = G G^T. Row i of G, column k.
    g = [
        [(rq[0][k] * rot[i][0] + rq[1][k] * rot[i][1] + rq[2][k] * rot[i][2]) * s[k] for k in range(3)]
        for i in range(3)
    ]
    inv_z = torch.reciprocal(z)
    lim_x = FOV_CLAMP * 0.5 * width / fx
    lim_y = FOV_CLAMP * 0.5 * height / fy
    tan_x = (x * inv_z).clamp(-lim_x, lim_x)
    tan_y = (y * inv_z).clamp(-lim_y, lim_y)
    # Rows of J G with J = [[fx/z, 0, -fx tx/z], [0, fy/z, -fy ty/z]] (tx = clamped x/z).
    jx = [(g[0][k] - tan_x * g[2][k]) * (fx * inv_z) for k in range(3)]
    jy = [(g[1][k] - tan_y * g[2][k]) * (fy * inv_z) for k in range(3)]
    cov_a = jx[0] * jx[0] + jx[1] * jx[1] + jx[2] * jx[2] + EPS2D_PX2
    cov_b = jx[0] * jy[0] + jx[1] * jy[1] + jx[2] * jy[2]
    cov_c = jy[0] * jy[0] + jy[1] * jy[1] + jy[2] * jy[2] + EPS2D_PX2
    inv_det = torch.reciprocal(cov_a * cov_c - cov_b * cov_b)  # det >= EPS2D^2 for any PSD Sigma
    lam_max = 0.5 * (cov_a + cov_c) + torch.sqrt(0.25 * (cov_a - cov_c) ** 2 + cov_b * cov_b)
    # alpha = o exp(-d' S^-1 d / 2) > 1/255 needs |d|^2 < 2 ln(255 o) lam_max; a 1 % margin
    # absorbs float32 rounding so that no pixel above the threshold is left out of its tiles.
    radii = torch.sqrt(2.0 * torch.log(opac * 255.0).clamp(min=0) * lam_max) * 1.01 + 0.01
    u = fx * x * inv_z + cx
    v = fy * y * inv_z + cy
    keep &= (u + radii > 0.5) & (u - radii < width - 0.5) & (v + radii > 0.5) & (v - radii < height - 0.5)
    columns = [u, v, cov_c * inv_det * -0.5, cov_b * inv_det, cov_a * inv_det * -0.5, torch.log(opac)]
    for column in (*columns[:5], radii):  # NaN/inf from degenerate input: culled
        keep &= torch.isfinite(column)
    return columns, z, radii, keep


def project(
    means: Tensor,
    quaternions: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    camera: Camera,
) -> Projected:
    """Cull and project (N, ...) gaussians for ``camera``; the kept ones in input order."""
    n, device = means.shape[0], means.device
    params = torch.empty((n, len(PARAMS)), device=device)
    depths = torch.empty((n,), device=device)
    radii = torch.empty((n,), device=device)
    keep = torch.empty((n,), dtype=torch.bool, device=device)

    def work(start: int, stop: int) -> None:
        cols, z, r, k = _project_block(
            means[start:stop], quaternions[start:stop], scales[start:stop], opacities[start:stop], camera
        )
        for j, col in enumerate(cols):
            params[start:stop, j] = col
        depths[start:stop], radii[start:stop], keep[start:stop] = z, r, k

    chunk = CPU_CHUNK if device.type == "cpu" else max(n, 1)
    run_chunks(n, chunk, work)
    index = keep.nonzero().squeeze(1)
    return Projected(
        index=index,
        params=params.index_select(0, index),
        depths_m=depths.index_select(0, index),
        radii_px=radii.index_select(0, index),
        colors=colors.float().index_select(0, index),
    )
