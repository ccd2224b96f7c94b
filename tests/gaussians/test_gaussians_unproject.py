"""Unprojection vs an independent float64 numpy computation (means, covariances, scales, frames)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gaussians_factory import covariances_np, ideal_linear, raw_gaussians, rotation_np

from mlsharp import gaussians as gmod
from mlsharp.gaussians import CameraInfo, Gaussians3D, unproject, unproject_batch, unprojection_matrix

CAMERAS = [
    (CameraInfo(focal_px=600.0, width_px=512, height_px=512), 512),  # square
    (CameraInfo(focal_px=3100.5, width_px=4032, height_px=3024), 1536),  # landscape phone photo
    (CameraInfo(focal_px=1234.0, width_px=720, height_px=1280), 512),  # portrait
]


def _unproject(raw: dict[str, torch.Tensor], camera: CameraInfo, size: int) -> Gaussians3D:
    return unproject(**raw, camera=camera, working_size_px=size)


def _cov_rel_err(g: Gaussians3D, expected: np.ndarray) -> np.ndarray:
    got = covariances_np(g.quaternions.numpy(), g.scales.numpy())
    return np.linalg.norm(got - expected, axis=(1, 2)) / np.linalg.norm(expected, axis=(1, 2))


def test_unprojection_matrix_is_the_float32_inverse_with_tiny_shear() -> None:
    ideal = ideal_linear(3100.5, 4032, 3024)
    m = unprojection_matrix(CameraInfo(3100.5, 4032, 3024), 1536)
    assert m.dtype == torch.float32 and m.shape == (4, 4)
    np.testing.assert_allclose(np.diag(m.numpy())[:3], np.diag(ideal), rtol=1e-6)
    assert m[3, 3] == 1.0 and torch.all(m[:3, 3] == 0)  # no translation
    # fp32 rounding of the principal point leaves a z-proportional shear far below 1e-6
    assert 0 < m[:2, 2].abs().max() < 1e-6
    # a square photo whose focal makes the maths exact has no such terms
    exact = unprojection_matrix(CameraInfo(256.0, 512, 512), 512)
    assert torch.equal(exact, torch.eye(4))


@pytest.mark.parametrize(("camera", "size"), CAMERAS)
def test_means_and_covariances_match_float64(camera: CameraInfo, size: int) -> None:
    raw = raw_gaussians(4000, seed=1)
    g = _unproject(raw, camera, size)
    linear = unprojection_matrix(camera, size)[:3, :3].double().numpy()
    expected_means = raw["means"].double().numpy() @ linear.T
    np.testing.assert_allclose(g.means.numpy(), expected_means, rtol=1e-6, atol=1e-6)
    ideal = ideal_linear(camera.focal_px, camera.width_px, camera.height_px)
    np.testing.assert_allclose(g.means.numpy(), raw["means"].double().numpy() @ ideal.T, rtol=1e-5, atol=1e-5)
    expected = covariances_np(raw["quaternions"].numpy(), raw["singular_values"].numpy(), linear)
    assert _cov_rel_err(g, expected).max() < 1e-6
    # Scales are the square roots of the eigenvalues, descending, each to float32 precision
    # (float64 inside, so even the thinnest axis keeps its relative accuracy).
    expected_scales = np.sqrt(np.linalg.eigvalsh(expected)[:, ::-1])
    np.testing.assert_allclose(g.scales.numpy(), expected_scales, rtol=1e-6)
    assert torch.all(g.scales[:, 0] >= g.scales[:, 1]) and torch.all(g.scales[:, 1] >= g.scales[:, 2])
    np.testing.assert_allclose(g.quaternions.norm(dim=1).numpy(), 1.0, atol=1e-6)
    assert torch.all(g.quaternions[:, 0] >= 0)  # canonical sign
    np.testing.assert_allclose(np.linalg.det(rotation_np(g.quaternions.numpy())), 1.0, atol=1e-6)
    assert torch.equal(g.colors_linear, raw["colors"]) and torch.equal(g.opacities, raw["opacities"])


@pytest.mark.parametrize("anisotropy", [1e2, 1e3, 1e4])
def test_thin_gaussians_keep_relative_accuracy(anisotropy: float) -> None:
    camera, size = CAMERAS[1]
    raw = raw_gaussians(2000, seed=2)
    s = raw["singular_values"]
    raw["singular_values"] = torch.stack([s[:, 0], s[:, 0], s[:, 0] / anisotropy], dim=1)
    g = _unproject(raw, camera, size)
    linear = unprojection_matrix(camera, size)[:3, :3].double().numpy()
    expected = covariances_np(raw["quaternions"].numpy(), raw["singular_values"].numpy(), linear)
    expected_scales = np.sqrt(np.linalg.eigvalsh(expected)[:, ::-1])
    np.testing.assert_allclose(g.scales.numpy(), expected_scales, rtol=2e-6)


def test_exactly_isotropic_and_repeated_eigenvalues() -> None:
    n = 600
    raw = raw_gaussians(n, seed=3)
    s = raw["singular_values"][:, :1]
    q = raw["quaternions"].clone()
    q[:200] = torch.tensor([1.0, 0.0, 0.0, 0.0])  # zero prediction heads: identity rotation
    q[200:260] = torch.tensor([0.0, 1.0, 0.0, 0.0])  # 180 degree turns
    q[260:300] = torch.tensor([0.0, 0.0, 0.0, -2.0])
    scales = s.repeat(1, 3)  # all isotropic ...
    scales[300:400, 2] = scales[300:400, 0] * 0.25  # ... or axis-symmetric (two equal)
    scales[400:500, 0] = scales[400:500, 1] * 4.0
    raw.update(quaternions=q, singular_values=scales)
    for camera, size in [(CameraInfo(256.0, 512, 512), 512), *CAMERAS]:  # first: A = I exactly
        g = _unproject(raw, camera, size)
        linear = unprojection_matrix(camera, size)[:3, :3].double().numpy()
        expected = covariances_np(q.numpy(), scales.numpy(), linear)
        assert _cov_rel_err(g, expected).max() < 1e-6
        np.testing.assert_allclose(
            g.scales.numpy(), np.sqrt(np.linalg.eigvalsh(expected)[:, ::-1]), rtol=1e-6
        )
        assert torch.isfinite(g.quaternions).all()
        np.testing.assert_allclose(g.quaternions.norm(dim=1).numpy(), 1.0, atol=1e-6)
    # With A = I an isotropic gaussian stays isotropic with the identity frame.
    g = _unproject(raw, CameraInfo(256.0, 512, 512), 512)
    torch.testing.assert_close(g.scales[:300], s[:300].repeat(1, 3), rtol=1e-6, atol=0)
    torch.testing.assert_close(g.quaternions[:300], torch.tensor([[1.0, 0, 0, 0]]).expand(300, 4))


def test_zero_prediction_heads_give_axis_aligned_frames() -> None:
    camera, size = CAMERAS[1]
    raw = raw_gaussians(50, seed=4)
    raw["quaternions"] = torch.tensor([[1.0, 0, 0, 0]]).repeat(50, 1)
    raw["singular_values"] = raw["singular_values"][:, :1].repeat(1, 3)
    g = _unproject(raw, camera, size)
    linear = unprojection_matrix(camera, size)[:3, :3].double().numpy()
    diag = np.sort(np.abs(np.diag(linear)))[::-1]
    np.testing.assert_allclose(g.scales.numpy(), raw["singular_values"].numpy() * diag, rtol=1e-6)
    rot = rotation_np(g.quaternions.numpy())
    np.testing.assert_allclose(np.abs(rot).max(axis=2), 1.0, atol=1e-6)  # a signed permutation


def test_cpu_chunks_and_threads_match_a_single_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    camera, size = CAMERAS[1]
    raw = raw_gaussians(3 * 1024 + 17, seed=5)
    monkeypatch.setattr(gmod, "CPU_CHUNK", 1024)
    chunked = _unproject(raw, camera, size)
    with torch.inference_mode():  # pool threads must honour the caller's (thread-local) mode
        chunked_inference = _unproject(raw, camera, size)
    assert torch.equal(chunked_inference.scales, chunked.scales)
    monkeypatch.setattr(gmod, "CPU_CHUNK", 1 << 30)
    whole = _unproject(raw, camera, size)
    torch.testing.assert_close(chunked.scales, whole.scales, rtol=1e-6, atol=0)
    torch.testing.assert_close(chunked.quaternions, whole.quaternions, rtol=0, atol=1e-6)


def test_batched_equals_per_item() -> None:
    items = [raw_gaussians(700, seed=s) for s in (6, 7)]
    cams = [CAMERAS[0][0], CAMERAS[2][0]]
    batch = {k: torch.stack([it[k] for it in items]) for k in items[0]}
    scenes = unproject_batch(**batch, cameras=cams, working_size_px=512)
    assert len(scenes) == 2
    for raw, cam, scene in zip(items, cams, scenes, strict=True):
        single = unproject(**raw, camera=cam, working_size_px=512)
        for name in ("means", "scales", "quaternions", "colors_linear", "opacities"):
            assert torch.equal(getattr(scene, name), getattr(single, name)), name
        assert scene.num_gaussians == 700


def test_zero_quaternion_and_empty_input_are_finite() -> None:
    raw = raw_gaussians(3, seed=8)
    raw["quaternions"][1] = 0.0
    g = _unproject(raw, *CAMERAS[0])
    assert torch.isfinite(g.quaternions).all() and torch.isfinite(g.scales).all()
    empty = _unproject({k: v[:0] for k, v in raw.items()}, *CAMERAS[0])
    assert empty.num_gaussians == 0 and empty.quaternions.shape == (0, 4)


def test_bad_shapes_and_cameras_are_rejected() -> None:
    raw = raw_gaussians(10)
    with pytest.raises(ValueError, match="quaternions"):
        unproject(
            **{**raw, "quaternions": raw["quaternions"][:, :3]}, camera=CAMERAS[0][0], working_size_px=512
        )
    with pytest.raises(ValueError, match="positive"):
        unproject(**raw, camera=CameraInfo(0.0, 10, 10), working_size_px=512)
    with pytest.raises(ValueError, match="cameras"):
        unproject_batch(**{k: v[None] for k, v in raw.items()}, cameras=[], working_size_px=512)


def _child_unproject(queue: object) -> None:
    # torch's own OpenMP regions are not fork-safe once the parent used them: forked workers must
    # run single-threaded (as PyTorch's DataLoader does). Our pool must then work too.
    torch.set_num_threads(1)
    raw = raw_gaussians(3 * 1024, seed=9)
    g = _unproject(raw, *CAMERAS[1])
    queue.put(float(g.scales.sum()))  # type: ignore[attr-defined]


def test_pool_survives_fork(monkeypatch: pytest.MonkeyPatch) -> None:
    import multiprocessing

    monkeypatch.setattr(gmod, "CPU_CHUNK", 1024)
    expected = float(_unproject(raw_gaussians(3 * 1024, seed=9), *CAMERAS[1]).scales.sum())  # pool exists
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child_unproject, args=(queue,))
    child.start()
    child.join(timeout=60)
    alive = child.is_alive()
    if alive:
        child.kill()
    assert not alive, "unprojection hung in a forked child"
    assert queue.get(timeout=5) == pytest.approx(expected, rel=1e-6)
