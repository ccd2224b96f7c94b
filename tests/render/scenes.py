"""Scenes for the renderer tests: a photo turned into gaussians through the pipeline's own
geometry (raw NDC-like outputs -> :func:`mlsharp.gaussians.unproject` -> PLY), so a render from
the stored camera can be compared with the photo itself."""

from __future__ import annotations

import torch

from mlsharp.formats import encode_ply
from mlsharp.formats.colorspace import srgb_to_linear
from mlsharp.gaussians import CameraInfo, Gaussians3D, unproject


def photo_gaussians(
    photo_srgb: torch.Tensor, focal_px: float, working_px: int, depth_m: float = 3.0
) -> Gaussians3D:
    """One gaussian per working-grid pixel, as SHARP lays them out: the raw mean of grid pixel
    (u, v) is (z (2 (u + .5) / S - 1), z (2 (v + .5) / S - 1), z), its colour the photo's pixel
    there (nearest), its raw scale 0.6 grid pixels in NDC units."""
    height, width = photo_srgb.shape[:2]
    s = working_px
    centres = (torch.arange(s, dtype=torch.float32) + 0.5) / s  # (S,) in (0, 1)
    v, u = torch.meshgrid(centres, centres, indexing="ij")  # (S, S)
    z = torch.full((s, s), depth_m)
    means = torch.stack([z * (2 * u - 1), z * (2 * v - 1), z], dim=-1).reshape(-1, 3)
    rows = (v * height).long().clamp(max=height - 1)
    cols = (u * width).long().clamp(max=width - 1)
    colors = srgb_to_linear(photo_srgb[rows, cols].reshape(-1, 3))
    n = s * s
    raw_scale = (2.0 / s) * 0.6 * depth_m
    singular = torch.tensor([raw_scale, raw_scale, raw_scale * 0.1]).expand(n, 3).contiguous()
    quats = torch.tensor([1.0, 0.0, 0.0, 0.0]).expand(n, 4).contiguous()
    camera = CameraInfo(focal_px=focal_px, width_px=width, height_px=height)
    return unproject(means, singular, quats, colors, torch.full((n,), 0.98), camera, s)


def photo_ply(photo_srgb: torch.Tensor, focal_px: float, working_px: int) -> bytes:
    """The ml-sharp PLY of :func:`photo_gaussians` with the photo's camera elements."""
    height, width = photo_srgb.shape[:2]
    camera = CameraInfo(focal_px=focal_px, width_px=width, height_px=height)
    return encode_ply(photo_gaussians(photo_srgb, focal_px, working_px), camera)
