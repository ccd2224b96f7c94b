"""Orientation, the photo's viewpoint, cameras and trajectories."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from mlsharp.formats import encode_ply, encode_spz
from mlsharp.gaussians import CameraInfo
from mlsharp.render import focus_depth_m, from_gaussians, load_scene, psnr, render, ssim, trajectory
from mlsharp.render.camera import Camera, default_size, look_at
from mlsharp.render.project import project
from mlsharp.render.scene import RenderScene, SceneFileError
from mlsharp.render.synthetic import image_scene, pattern_image
from tests.render.scenes import photo_gaussians, photo_ply

CAMERA = Camera(40.0, 40.0, 24.0, 16.0, 48, 32)


def _blob(
    x: float, y: float, z: float = 2.0, color: tuple[float, float, float] = (1.0, 1.0, 1.0)
) -> RenderScene:
    return RenderScene(
        means=torch.tensor([[x, y, z]]),
        quaternions=torch.tensor([[1.0, 0.0, 0.0, 0.0]]),
        scales=torch.full((1, 3), 0.05),
        opacities=torch.tensor([1.0]),
        colors=torch.tensor([color]),
    )


def _centroid(image: torch.Tensor) -> tuple[float, float]:
    weight = image.mean(-1)
    rows = torch.arange(image.shape[0], dtype=torch.float32)[:, None] + 0.5
    cols = torch.arange(image.shape[1], dtype=torch.float32)[None, :] + 0.5
    total = float(weight.sum())
    return float((weight * cols).sum()) / total, float((weight * rows).sum()) / total


def test_up_is_up_and_right_is_right() -> None:
    """OpenCV frame: -y is up, +x is right; a blob there lands in the upper / right image half."""
    above = render(_blob(0.0, -0.4), CAMERA)
    right = render(_blob(0.4, 0.0), CAMERA)
    u, v = _centroid(above)
    assert v < 16 - 4 and abs(u - 24) < 0.5
    assert v == pytest.approx(16 + 40 * (-0.4 / 2.0), abs=0.3)  # where the pinhole puts it
    u, v = _centroid(right)
    assert u == pytest.approx(24 + 40 * (0.4 / 2.0), abs=0.3) and abs(v - 16) < 0.5


def test_image_laid_out_as_gaussians_renders_back_from_its_camera() -> None:
    photo = pattern_image(96, 64)
    camera = Camera(80.0, 80.0, 48.0, 32.0, 96, 64)
    image = render(image_scene(photo, camera), camera)
    assert psnr(image, photo) >= 20.0 and ssim(image, photo) >= 0.85
    assert psnr(image, photo.flip(0)) < 8.0 and psnr(image, photo.flip(1)) < 8.0  # not flipped or mirrored


def test_pipeline_geometry_ply_renders_the_photo_from_the_stored_camera(tmp_path: Path) -> None:
    """Raw SHARP-layout outputs -> unproject -> ml-sharp PLY -> load -> render at the photo's camera."""
    photo = pattern_image(96, 64)
    path = tmp_path / "scene.ply"
    path.write_bytes(photo_ply(photo, focal_px=80.0, working_px=128))
    scene = load_scene(path)
    assert scene.camera_source == "ply" and scene.color_space == "srgb"
    assert (scene.camera.width_px, scene.camera.height_px, scene.camera.fx_px) == (96, 64, 80.0)
    image = render(scene, scene.camera)
    assert psnr(image, photo) >= 18.0 and ssim(image, photo) >= 0.8
    assert psnr(image, photo.flip(0)) < 8.0 and psnr(image, photo.flip(1)) < 8.0
    # quadrant colours: red top-left, green top-right, blue bottom
    assert image[4:12, 4:12].mean((0, 1)).argmax() == 0
    assert image[4:12, -12:-4].mean((0, 1)).argmax() == 1
    assert image[-12:-4, 8:16].mean((0, 1)).argmax() == 2
    # a smaller render of the same camera shows the same layout
    small = render(scene, scene.camera.resized(48, 32))
    assert psnr(small, pattern_image(48, 32)) >= 14.0


def test_pipeline_result_renders_like_its_ply(tmp_path: Path) -> None:
    """from_gaussians (in memory, linear colours) gives the picture the PLY file gives."""
    photo = pattern_image(96, 64)
    gaussians = photo_gaussians(photo, focal_px=80.0, working_px=128)
    in_memory = from_gaussians(gaussians, CameraInfo(80.0, 96, 64))
    path = tmp_path / "scene.ply"
    path.write_bytes(photo_ply(photo, focal_px=80.0, working_px=128))
    from_file = load_scene(path)
    assert in_memory.color_space == "srgb"
    for name in ("fx_px", "fy_px", "cx_px", "cy_px", "width_px", "height_px"):
        assert getattr(in_memory.camera, name) == getattr(from_file.camera, name)
    assert torch.equal(in_memory.camera.world_to_camera, from_file.camera.world_to_camera)
    a, b = render(in_memory, in_memory.camera), render(from_file, from_file.camera)
    assert float((a - b).abs().max()) < 1e-4


def test_spz_takes_its_camera_from_the_metadata_beside_it(tmp_path: Path) -> None:
    photo = pattern_image(96, 64)
    gaussians = photo_gaussians(photo, focal_px=80.0, working_px=128)
    (tmp_path / "scene.spz").write_bytes(encode_spz(gaussians))
    meta = {
        "intrinsics": {"focal_px": 80.0, "cx_px": 48.0, "cy_px": 32.0},
        "image_size": {"width_px": 96, "height_px": 64},
    }
    (tmp_path / "scene.json").write_text(json.dumps(meta))
    scene = load_scene(tmp_path / "scene.spz")
    assert scene.camera_source == "metadata" and scene.camera.fx_px == 80.0
    assert psnr(render(scene, scene.camera), photo) >= 18.0
    # without the metadata the camera is estimated from the scene's extent: close to the photo's
    (tmp_path / "scene.json").unlink()
    estimated = load_scene(tmp_path / "scene.spz")
    assert estimated.camera_source == "estimated"
    assert estimated.camera.width_px / estimated.camera.height_px == pytest.approx(1.5, rel=0.05)
    assert estimated.camera.vertical_fov_deg == pytest.approx(scene.camera.vertical_fov_deg, rel=0.05)


def test_load_scene_errors(tmp_path: Path) -> None:
    with pytest.raises(SceneFileError, match="not found"):
        load_scene(tmp_path / "missing.ply")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(SceneFileError, match="is not a scene"):
        load_scene(tmp_path / "notes.txt")
    (tmp_path / "bad.ply").write_bytes(b"ply\nformat ascii 1.0\nend_header\n1 2 3\n")
    with pytest.raises(SceneFileError, match="not a 3DGS scene PLY"):
        load_scene(tmp_path / "bad.ply")
    gaussians = photo_gaussians(pattern_image(8, 8), focal_px=10.0, working_px=8)
    broken = encode_ply(gaussians, CameraInfo(focal_px=0.0, width_px=8, height_px=8))  # focal 0 stored
    (tmp_path / "nofocal.ply").write_bytes(broken)
    with pytest.raises(SceneFileError, match="not a valid pinhole camera"):
        load_scene(tmp_path / "nofocal.ply")
    (tmp_path / "bad.spz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(SceneFileError, match="not a readable SPZ"):
        load_scene(tmp_path / "bad.spz")


def test_resized_camera_fits_the_whole_frame() -> None:
    wide = CAMERA.resized(96, 96)  # square output of a 3:2 photo: the width fits, margins above/below
    assert wide.fx_px == pytest.approx(80.0) and (wide.cx_px, wide.cy_px) == (48.0, 48.0)
    assert default_size(Camera(3000.0, 3000.0, 2016.0, 1512.0, 4032, 3024), 512) == (512, 384)
    assert all(side % 2 == 0 for side in default_size(Camera(30.0, 30.0, 12.5, 12.5, 25, 25), 25))  # H.264


def test_look_at_identity_and_axes() -> None:
    pose = look_at(torch.zeros(3, dtype=torch.float64), torch.tensor([0.0, 0.0, 5.0]))
    assert torch.equal(pose, torch.eye(4, dtype=torch.float64))
    pose = look_at(torch.tensor([1.0, 0.0, 0.0]), torch.tensor([1.0, 0.0, 5.0]))
    assert torch.allclose(pose[:3, 3], torch.tensor([-1.0, 0.0, 0.0], dtype=torch.float64))


@pytest.mark.parametrize("name", ["orbit", "dolly", "swing"])
def test_trajectories_start_at_the_photo_camera_and_keep_the_focus_centred(name: str) -> None:
    cams = trajectory(name, CAMERA, focus_depth_m=3.0, frames=12)
    assert len(cams) == 12
    assert cams[0] is CAMERA  # frame 0 is the photo's camera itself
    moved = [float(torch.linalg.vector_norm(c.position)) for c in cams[1:]]
    assert max(moved) > 0.05  # the camera does move
    focus = torch.tensor([[0.0, 0.0, 3.0]])
    for cam in cams:  # every path keeps looking at the focus point: it stays at the image centre
        p = project(
            focus,
            torch.tensor([[1.0, 0, 0, 0]]),
            torch.full((1, 3), 0.01),
            torch.ones(1),
            torch.ones(1, 3),
            cam,
        )
        assert torch.allclose(p.means2d_px[0], torch.tensor([24.0, 16.0]), atol=1e-3)
        rot = cam.world_to_camera[:3, :3]
        assert torch.allclose(rot @ rot.T, torch.eye(3, dtype=torch.float64), atol=1e-12)
        assert float(torch.det(rot)) == pytest.approx(1.0)
        assert float(rot[1, 1]) > 0.99  # never rolled or upside down


def test_trajectory_shapes() -> None:
    orbit = trajectory("orbit", CAMERA, 3.0, 4)
    # quarter turns on a circle of radius 0.06 * 3 m through the start, rising first (-y is up)
    assert torch.allclose(orbit[1].position[:2], torch.tensor([0.18, -0.18], dtype=torch.float64), atol=1e-9)
    assert torch.allclose(orbit[2].position[:2], torch.tensor([0.0, -0.36], dtype=torch.float64), atol=1e-9)
    dolly = trajectory("dolly", CAMERA, 3.0, 2)
    assert torch.allclose(dolly[1].position, torch.tensor([0.0, 0.0, 0.6], dtype=torch.float64))
    swing = trajectory("swing", CAMERA, 3.0, 4)
    yaw = math.radians(6.0)
    assert float(swing[1].position[0]) == pytest.approx(-3.0 * math.sin(yaw))
    assert float(torch.linalg.vector_norm(swing[1].position - torch.tensor([0, 0, 3.0]))) == pytest.approx(
        3.0
    )
    with pytest.raises(ValueError, match="unknown trajectory"):
        trajectory("spiral", CAMERA, 3.0, 3)
    with pytest.raises(ValueError, match="frames"):
        trajectory("orbit", CAMERA, 3.0, 0)


def test_focus_depth_is_the_median_depth() -> None:
    scene = _blob(0, 0, 2.0)
    scene.means = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 2.0], [0.0, 0.0, 9.0], [0.0, 0.0, -4.0]])
    assert focus_depth_m(scene) == 2.0
