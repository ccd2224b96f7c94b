"""The CPU paths that split work over the render pool give the single-pass results."""

from __future__ import annotations

import torch

from mlsharp.render import psnr
from mlsharp.render.camera import Camera
from mlsharp.render.project import CPU_CHUNK, project
from mlsharp.render.rasterize import EXCLUSIVE_CPU_SETTINGS, RasterSettings, rasterize
from mlsharp.render.synthetic import random_scene, sharp_like_scene
from mlsharp.render.tiles import ENTRY_CHUNK, bin_tiles, bin_tiles_chunked
from mlsharp.render.workers import exclusive_cpu, run_chunks


def test_chunked_binning_equals_one_stable_sort() -> None:
    gen = torch.Generator().manual_seed(0)
    n = 3 * ENTRY_CHUNK + 123
    means2d = torch.rand(n, 2, generator=gen) * torch.tensor([100.0, 60.0]) - 5.0
    radii = torch.rand(n, generator=gen) * 12.0
    one = bin_tiles(means2d, radii, 90, 50, 8)
    chunked = bin_tiles_chunked(means2d, radii, 90, 50, 8)
    assert (one.tiles_x, one.tiles_y) == (chunked.tiles_x, chunked.tiles_y) == (12, 7)
    assert torch.equal(one.counts, chunked.counts) and torch.equal(one.starts, chunked.starts)
    assert torch.equal(one.ids, chunked.ids)
    # within every tile the ids ascend: depth order (the input order) is kept
    t = int(one.counts.argmax())
    tile_ids = one.ids[one.starts[t] : one.starts[t] + one.counts[t]]
    assert torch.all(tile_ids[1:] > tile_ids[:-1]) and tile_ids.shape[0] > 100


def test_pooled_projection_and_rasterization_equal_the_single_pass() -> None:
    scene = sharp_like_scene(side=200, layers=2)  # 80,000 gaussians: several projection chunks
    assert scene.num_gaussians > 2 * CPU_CHUNK
    camera = scene.camera.resized(96, 72)
    tensors = (scene.means, scene.quaternions, scene.scales, scene.opacities, scene.colors)
    projected = project(*tensors, camera)
    whole = project(*(t.clone() for t in tensors), camera)  # same inputs, same chunked path
    assert torch.equal(projected.index, whole.index) and projected.num_visible > 70_000
    single = rasterize(projected, 96, 72, RasterSettings(budget=1 << 20, pool=False))
    pooled = rasterize(projected, 96, 72)
    with exclusive_cpu():
        exclusive = rasterize(projected, 96, 72, EXCLUSIVE_CPU_SETTINGS)
    for other in (pooled, exclusive):
        assert float((other.rgb - single.rgb).abs().max()) < 1e-5
        assert float((other.transmittance - single.transmittance).abs().max()) < 1e-5
    assert psnr(pooled.rgb.clamp(0, 1), single.rgb.clamp(0, 1)) > 80.0


def test_exclusive_cpu_restores_the_thread_count() -> None:
    before = torch.get_num_threads()
    with exclusive_cpu():
        assert torch.get_num_threads() == 1
        assert run_chunks(10, 3, lambda a, b: (a, b)) == [(0, 3), (3, 6), (6, 9), (9, 10)]
    assert torch.get_num_threads() == before


def test_moved_camera_renders_match_between_paths() -> None:
    camera = Camera(40.0, 42.0, 24.5, 15.0, 48, 32)
    scene = random_scene(500, camera, seed=5)
    tensors = (scene.means, scene.quaternions, scene.scales, scene.opacities, scene.colors)
    a = rasterize(project(*tensors, camera), 48, 32, RasterSettings(tile_px=4, chunk=16, budget=4096))
    b = rasterize(project(*tensors, camera), 48, 32, RasterSettings(tile_px=16, chunk=32, pool=False))
    assert float((a.rgb - b.rgb).abs().max()) < 1e-5
