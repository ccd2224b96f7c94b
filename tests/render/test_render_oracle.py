"""The tile rasterizer against the naive float64 oracle, on scenes with known geometry."""

from __future__ import annotations

import math

import pytest
import torch

from mlsharp.render import psnr, render
from mlsharp.render.camera import Camera, look_at
from mlsharp.render.project import project
from mlsharp.render.rasterize import RasterSettings, rasterize
from mlsharp.render.reference import render_reference
from mlsharp.render.renderer import to_display
from mlsharp.render.scene import RenderScene
from mlsharp.render.synthetic import random_scene

CAMERA = Camera(40.0, 42.0, 24.5, 15.0, 48, 32)


def _tensors(scene: RenderScene) -> tuple[torch.Tensor, ...]:
    return scene.means, scene.quaternions, scene.scales, scene.opacities, scene.colors


@pytest.mark.parametrize(
    "settings",
    [
        RasterSettings(),
        RasterSettings(tile_px=8, chunk=8, budget=512),  # many small batches, many steps per tile
        RasterSettings(tile_px=16, chunk=3, budget=1 << 12),
    ],
    ids=["default", "small-batches", "big-tiles-tiny-chunks"],
)
def test_fast_matches_oracle(settings: RasterSettings) -> None:
    scene = random_scene(300, CAMERA, seed=1)
    oracle = render_reference(*_tensors(scene), CAMERA)
    fast = rasterize(project(*_tensors(scene), CAMERA), CAMERA.width_px, CAMERA.height_px, settings)
    assert fast.rgb.shape == (32, 48, 3)
    assert 0.05 < float(oracle.transmittance.mean()) < 0.9  # a real mix of covered and open pixels
    assert psnr(fast.rgb.double().clamp(0, 1), oracle.rgb.clamp(0, 1)) >= 35.0
    assert float((fast.rgb.double() - oracle.rgb).abs().max()) < 1e-4
    assert float((fast.transmittance.double() - oracle.transmittance).abs().max()) < 1e-4


def test_fast_matches_oracle_from_a_moved_camera_with_saturation() -> None:
    """A posed camera, and a dense opaque scene where most pixels stop early (T <= 1e-4)."""
    scene = random_scene(1000, CAMERA, seed=7)
    scene.opacities = 0.7 + 0.3 * scene.opacities
    pose = look_at(torch.tensor([0.4, -0.2, -0.3], dtype=torch.float64), torch.tensor([0.0, 0.0, 2.5]))
    camera = CAMERA.with_pose(pose)
    oracle = render_reference(*_tensors(scene), camera)
    fast = rasterize(project(*_tensors(scene), camera), 48, 32, RasterSettings(tile_px=8, chunk=16))
    assert float((oracle.transmittance < 1e-3).double().mean()) > 0.3
    assert psnr(fast.rgb.double().clamp(0, 1), oracle.rgb.clamp(0, 1)) >= 35.0
    assert float((fast.rgb.double() - oracle.rgb).abs().max()) < 1e-4


def test_single_gaussian_values_by_hand() -> None:
    """An isotropic gaussian on the optical axis: the centre pixel's alpha and colour by formula."""
    camera = Camera(10.0, 10.0, 4.0, 4.0, 8, 8)  # pixel (3, 3) has its centre 0.5 px off the axis
    sigma_px = 1.0
    scene = RenderScene(
        means=torch.tensor([[0.0, 0.0, 2.0]]),
        quaternions=torch.tensor([[1.0, 0.0, 0.0, 0.0]]),
        scales=torch.full((1, 3), sigma_px * 2.0 / 10.0),  # 1 px at z = 2 m, f = 10 px
        opacities=torch.tensor([0.8]),
        colors=torch.tensor([[1.0, 0.5, 0.25]]),
    )
    raster = rasterize(project(*_tensors(scene), camera), 8, 8)
    var = sigma_px**2 + 0.3  # the low-pass dilation
    alpha = 0.8 * math.exp(-0.5 * (0.5**2 + 0.5**2) / var)
    assert float(raster.rgb[3, 3, 0]) == pytest.approx(alpha, abs=1e-6)
    assert float(raster.rgb[3, 3, 2]) == pytest.approx(alpha * 0.25, abs=1e-6)
    assert float(raster.transmittance[3, 3]) == pytest.approx(1 - alpha, abs=1e-6)
    # symmetric about the axis: pixels (3, 3) and (4, 4) are mirror images
    assert torch.allclose(raster.rgb[3, 3], raster.rgb[4, 4], atol=1e-6)


def test_linear_scene_is_converted_to_srgb_on_output() -> None:
    scene = random_scene(200, CAMERA, seed=3)
    oracle = render_reference(*_tensors(scene), CAMERA)
    linear = RenderScene(*_tensors(scene), color_space="linear")
    image = render(linear, CAMERA, background_srgb=(1.0, 1.0, 1.0))
    expected = oracle.rgb + oracle.transmittance[..., None]  # white is 1 in linear light too
    srgb = torch.where(
        expected <= 0.0031308, expected * 12.92, 1.055 * expected.clamp(min=0) ** (1 / 2.4) - 0.055
    )
    assert float((image.double() - srgb.clamp(0, 1)).abs().max()) < 1e-4
    # the same numbers read as sRGB are left alone (no conversion)
    srgb_scene = render(RenderScene(*_tensors(scene), color_space="srgb"), CAMERA)
    assert float((srgb_scene.double() - oracle.rgb.clamp(0, 1)).abs().max()) < 1e-4


def test_background_fills_what_the_scene_leaves() -> None:
    scene = random_scene(50, CAMERA, seed=2)
    raster = rasterize(project(*_tensors(scene), CAMERA), 48, 32)
    white = to_display(raster, "srgb", (1.0, 1.0, 1.0))
    black = to_display(raster, "srgb", (0.0, 0.0, 0.0))
    gap = (white - black).mean(-1)
    assert torch.allclose(gap, raster.transmittance.clamp(0, 1), atol=1e-5)


def test_culls_behind_the_camera_and_empty_scene() -> None:
    scene = RenderScene(
        means=torch.tensor([[0.0, 0.0, -1.0], [0.0, 0.0, 0.001]]),
        quaternions=torch.tensor([[1.0, 0, 0, 0], [1.0, 0, 0, 0]]),
        scales=torch.full((2, 3), 0.5),
        opacities=torch.tensor([1.0, 1.0]),
        colors=torch.ones(2, 3),
    )
    projected = project(*_tensors(scene), CAMERA)
    assert projected.num_visible == 0
    raster = rasterize(projected, 48, 32)
    assert float(raster.rgb.abs().max()) == 0.0 and float(raster.transmittance.min()) == 1.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_torch_rasterizer_on_cuda_matches_cpu() -> None:
    scene = random_scene(300, CAMERA, seed=1)
    cpu = render(scene, CAMERA, backend="torch")
    gpu = render(scene.to("cuda"), CAMERA, backend="torch").cpu()
    assert psnr(cpu, gpu) >= 60.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gsplat_matches_ours() -> None:
    pytest.importorskip("gsplat")
    scene = random_scene(300, CAMERA, seed=1).to("cuda")
    ours = render(scene, CAMERA, backend="torch").cpu()
    theirs = render(scene, CAMERA, backend="gsplat").cpu()
    assert psnr(ours, theirs) >= 35.0
