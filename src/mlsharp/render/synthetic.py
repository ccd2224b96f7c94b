"""Synthetic scenes with known geometry, for the renderer's tests and benchmark.

Why in the package: the tests and ``benchmarks/render.py`` need the same scenes, and a scene laid
out like a photo is the renderer's ground truth: seen from the photo's camera it must give the
photo back. ``image_scene`` puts one small gaussian on each pixel's ray at a given depth, the way
SHARP's output covers the photo's frustum; ``sharp_like_scene`` is the size and layout of a real
SHARP scene (two layers of 768 x 768) for timing.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mlsharp.render.camera import Camera
from mlsharp.render.scene import RenderScene


def image_scene(
    image_srgb: Tensor,
    camera: Camera,
    depth_m: Tensor | float = 2.0,
    *,
    opacity: float = 0.98,
    footprint_px: float = 0.6,
) -> RenderScene:
    """One gaussian per pixel of an (H, W, 3) sRGB image, on that pixel centre's ray.

    ``depth_m`` is a scalar or an (H, W) depth map; ``footprint_px`` the gaussian's standard
    deviation in the image's pixels (0.6: neighbours overlap, so the surface is closed). The
    image must have the camera's size.
    """
    height, width = image_srgb.shape[:2]
    if (width, height) != (camera.width_px, camera.height_px):
        raise ValueError(
            f"image {width}x{height} does not match the camera {camera.width_px}x{camera.height_px}"
        )
    depth = torch.as_tensor(depth_m, dtype=torch.float32).expand(height, width)
    cols = torch.arange(width, dtype=torch.float32) + 0.5
    rows = torch.arange(height, dtype=torch.float32) + 0.5
    v, u = torch.meshgrid(rows, cols, indexing="ij")  # (H, W)
    x = (u - camera.cx_px) / camera.fx_px * depth
    y = (v - camera.cy_px) / camera.fy_px * depth
    means = torch.stack([x, y, depth], dim=-1).reshape(-1, 3)  # (H*W, 3) in the camera's frame
    sigma = (footprint_px / camera.fx_px) * depth.reshape(-1)  # metres at that depth
    n = means.shape[0]
    scales = torch.stack([sigma, sigma, sigma * 0.1], dim=-1)  # flat discs facing the camera
    camera_to_world = camera.camera_to_world.float()
    means = means @ camera_to_world[:3, :3].T + camera_to_world[:3, 3]
    quats = torch.zeros((n, 4))
    quats[:, 0] = 1.0
    if not torch.equal(camera_to_world[:3, :3], torch.eye(3)):
        raise ValueError("image_scene expects a camera at the identity orientation")
    return RenderScene(
        means=means,
        quaternions=quats,
        scales=scales,
        opacities=torch.full((n,), opacity),
        colors=image_srgb.reshape(-1, 3).float().clone(),
        color_space="srgb",
        camera=camera,
        camera_source="synthetic",
    )


def pattern_image(width: int, height: int) -> Tensor:
    """(H, W, 3) sRGB picture with a known layout: red top-left, green top-right, blue bottom
    half, a white diagonal band; every quadrant different, so flips and mirrors are visible."""
    img = torch.zeros((height, width, 3))
    top = height // 2
    img[:top, : width // 2] = torch.tensor([0.9, 0.1, 0.1])
    img[:top, width // 2 :] = torch.tensor([0.1, 0.8, 0.2])
    img[top:] = torch.tensor([0.15, 0.2, 0.85])
    yy, xx = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    band = (xx * height - yy * width).abs() < 0.08 * width * height
    img[band] = torch.tensor([0.95, 0.95, 0.95])
    return img


def sharp_like_scene(side: int = 768, layers: int = 2, *, seed: int = 0) -> RenderScene:
    """``layers * side^2`` gaussians laid out like SHARP's output (1,179,648 at the defaults).

    A 4:3 photo camera (focal ~ its width); each layer a side x side grid on the pixels' rays, the
    first on a wavy surface at 2-4 m, the second 0.5-2 m behind it; per-gaussian random colours,
    opacities, anisotropic scales about one grid cell wide, random orientations.
    """
    gen = torch.Generator().manual_seed(seed)
    camera = Camera(1000.0, 1000.0, 500.0, 375.0, 1000, 750)
    cols = (torch.arange(side, dtype=torch.float32) + 0.5) / side * camera.width_px
    rows = (torch.arange(side, dtype=torch.float32) + 0.5) / side * camera.height_px
    v, u = torch.meshgrid(rows, cols, indexing="ij")
    ray_x, ray_y = (u - camera.cx_px) / camera.fx_px, (v - camera.cy_px) / camera.fy_px  # (side, side)
    surface = 3.0 + 0.7 * torch.sin(ray_x * 6.0) * torch.cos(ray_y * 5.0)
    parts = []
    for layer in range(layers):
        depth = surface + layer * (0.5 + 1.5 * torch.rand(side, side, generator=gen))
        means = torch.stack([ray_x * depth, ray_y * depth, depth], dim=-1).reshape(-1, 3)
        cell = (camera.width_px / side / camera.fx_px) * depth.reshape(-1, 1)  # grid cell, metres
        spread = torch.exp(torch.randn(means.shape[0], 3, generator=gen) * 0.4)
        parts.append((means, cell * 0.5 * spread))
    n = layers * side * side
    quats = torch.randn(n, 4, generator=gen)
    return RenderScene(
        means=torch.cat([m for m, _ in parts]),
        quaternions=quats / quats.norm(dim=-1, keepdim=True),
        scales=torch.cat([s for _, s in parts]),
        opacities=torch.rand(n, generator=gen) * 0.6 + 0.4,
        colors=torch.rand(n, 3, generator=gen),
        color_space="linear",
        camera=camera,
        camera_source="synthetic",
    )


def random_scene(
    n: int, camera: Camera, *, seed: int = 0, depth_m: tuple[float, float] = (1.0, 4.0)
) -> RenderScene:
    """n gaussians scattered in the camera's frustum, sizes from sub-pixel to a tenth of the view:
    a scene with overlaps, anisotropy and off-screen parts, for the oracle comparison."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.empty(n).uniform_(*depth_m, generator=gen)
    half_w = 0.6 * camera.width_px / camera.fx_px
    half_h = 0.6 * camera.height_px / camera.fy_px
    x = torch.empty(n).uniform_(-half_w, half_w, generator=gen) * z
    y = torch.empty(n).uniform_(-half_h, half_h, generator=gen) * z
    pixel_m = z / camera.fx_px
    sizes = torch.exp(
        torch.empty(n, 3).uniform_(math.log(0.3), math.log(0.1 * camera.width_px), generator=gen)
    )
    quats = torch.randn(n, 4, generator=gen)
    return RenderScene(
        means=torch.stack([x, y, z], dim=-1),
        quaternions=quats,
        scales=sizes * pixel_m[:, None],
        opacities=torch.rand(n, generator=gen),
        colors=torch.rand(n, 3, generator=gen),
        color_space="srgb",
        camera=camera,
        camera_source="synthetic",
    )
