"""One entry point: a scene and a camera in, an sRGB image out, on the best backend available.

Why the colour step lives here: blending happens in the scene's stored colour space (sRGB scenes
are blended as sRGB values, like every 3DGS viewer does; linear scenes in linear light), and only
the final pixel is converted to sRGB for display, so both kinds of scene look as their viewers
show them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from mlsharp.formats.colorspace import linear_to_srgb, srgb_to_linear
from mlsharp.render import gsplat_backend
from mlsharp.render.camera import Camera
from mlsharp.render.project import project
from mlsharp.render.rasterize import Raster, RasterSettings, rasterize
from mlsharp.render.scene import RenderScene

BACKENDS = ("auto", "torch", "gsplat")


def choose_backend(backend: str, device: torch.device) -> str:
    """``auto`` -> gsplat on a CUDA device where it imports, else our torch rasterizer."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
    if backend == "auto":
        return "gsplat" if gsplat_backend.available(device) else "torch"
    if backend == "gsplat" and not gsplat_backend.available(device):
        raise ValueError("the gsplat backend needs gsplat installed and the scene on a CUDA device")
    return backend


def rasterize_scene(
    scene: RenderScene, camera: Camera, *, backend: str = "auto", settings: RasterSettings | None = None
) -> Raster:
    """Blended colour in the scene's colour space and transmittance, no background."""
    tensors = (scene.means, scene.quaternions, scene.scales, scene.opacities, scene.colors)
    if choose_backend(backend, scene.means.device) == "gsplat":
        return gsplat_backend.render_gsplat(*tensors, camera)
    with torch.no_grad():
        return rasterize(project(*tensors, camera), camera.width_px, camera.height_px, settings)


def to_display(
    raster: Raster, color_space: str, background_srgb: Sequence[float] = (0.0, 0.0, 0.0)
) -> Tensor:
    """(H, W, 3) sRGB in [0, 1]: background added in the blending space, then converted."""
    rgb = raster.rgb.float()
    bg = torch.tensor(list(background_srgb), dtype=torch.float32, device=rgb.device)
    if color_space == "linear":
        bg = srgb_to_linear(bg)
    image = rgb + raster.transmittance.float()[..., None] * bg
    if color_space == "linear":
        image = linear_to_srgb(image.clamp(min=0.0))
    return image.clamp_(0.0, 1.0)


def render(
    scene: RenderScene,
    camera: Camera,
    *,
    background_srgb: Sequence[float] = (0.0, 0.0, 0.0),
    backend: str = "auto",
    settings: RasterSettings | None = None,
) -> Tensor:
    """The scene seen by ``camera`` as an (H, W, 3) float32 sRGB image in [0, 1]."""
    raster = rasterize_scene(scene, camera, backend=backend, settings=settings)
    return to_display(raster, scene.color_space, background_srgb)


def to_uint8(image: Tensor) -> Tensor:
    """(H, W, 3) float in [0, 1] -> (H, W, 3) uint8 on the CPU, rounded to nearest."""
    return (image.detach().float().clamp(0.0, 1.0) * 255.0).round_().to(torch.uint8).cpu()
