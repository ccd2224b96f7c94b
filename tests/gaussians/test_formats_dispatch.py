"""encode_scene/write_scene dispatch, FORMAT_INFO, and the metadata JSON."""

from __future__ import annotations

import io
import json
import math

import pytest
import torch
from gaussians_factory import raw_gaussians

from mlsharp.errors import InvalidParameterError
from mlsharp.formats import (
    FORMAT_INFO,
    OUTPUT_FORMATS,
    build_metadata,
    encode_ply,
    encode_ply_clean,
    encode_scene,
    encode_splat,
    encode_spz,
    metadata_json_bytes,
    write_scene,
)
from mlsharp.gaussians import CameraInfo, Gaussians3D, unproject

CAMERA = CameraInfo(focal_px=1000.0, width_px=640, height_px=480)


@pytest.fixture(scope="module")
def scene() -> Gaussians3D:
    return unproject(**raw_gaussians(800, seed=31), camera=CAMERA, working_size_px=512)


def test_formats_and_their_info() -> None:
    assert OUTPUT_FORMATS == ("ply", "ply-clean", "spz", "splat")
    assert set(FORMAT_INFO) == set(OUTPUT_FORMATS)
    assert [FORMAT_INFO[f].extension for f in OUTPUT_FORMATS] == [".ply", ".ply", ".spz", ".splat"]
    assert all("/" in FORMAT_INFO[f].media_type for f in OUTPUT_FORMATS)


def test_dispatch_matches_the_writers(scene: Gaussians3D) -> None:
    expected = {
        "ply": encode_ply(scene, CAMERA, random_weights=True),
        "ply-clean": encode_ply_clean(scene, random_weights=True),
        "spz": encode_spz(scene),
        "splat": encode_splat(scene),
    }
    for fmt in OUTPUT_FORMATS:
        data = encode_scene(fmt, scene, CAMERA, random_weights=True)
        assert data == expected[fmt], fmt
        buf = io.BytesIO()
        write_scene(buf, fmt, scene, CAMERA, random_weights=True)
        assert buf.getvalue() == data, fmt


def test_unknown_format_lists_the_valid_ones(scene: Gaussians3D) -> None:
    with pytest.raises(InvalidParameterError) as info:
        encode_scene("obj", scene, CAMERA)
    assert info.value.code == "invalid_parameter"
    assert "'obj'" in str(info.value) and all(f in str(info.value) for f in OUTPUT_FORMATS)
    with pytest.raises(InvalidParameterError):
        write_scene(io.BytesIO(), "PLY", scene, CAMERA)


def test_metadata_values(scene: Gaussians3D) -> None:
    meta = build_metadata(
        scene,
        CAMERA,
        model_id="sharp_2572gikvuh",
        random_weights=True,
        working_size_px=512,
        extra={"seed": 3},
    )
    assert meta["model_id"] == "sharp_2572gikvuh" and meta["random_weights"] is True
    assert meta["num_gaussians"] == 800 and meta["working_size_px"] == 512 and meta["seed"] == 3
    assert meta["image_size"] == {"width_px": 640, "height_px": 480}
    assert meta["intrinsics"] == {
        "focal_px": 1000.0,
        "cx_px": 320.0,
        "cy_px": 240.0,
        "matrix": [[1000.0, 0.0, 320.0], [0.0, 1000.0, 240.0], [0.0, 0.0, 1.0]],
    }
    assert meta["vertical_fov_deg"] == pytest.approx(math.degrees(2 * math.atan(0.24)))
    q = torch.quantile(1.0 / scene.means[:, 2], torch.tensor([0.1, 0.9]))
    assert meta["disparity_quantiles"] == {"q10": float(q[0]), "q90": float(q[1])}
    assert meta["coordinate_frame"] == "opencv: x right, y down, z forward"
    assert meta["color_space"] == "srgb" and meta["ply_layout_version"] == [1, 5, 0]
    assert meta["metadata_version"] == 1
    assert json.loads(metadata_json_bytes(meta).decode("utf-8")) == meta
    plain = build_metadata(scene, CAMERA, model_id="m", random_weights=False)
    assert plain["random_weights"] is False and "working_size_px" not in plain


def test_metadata_json_has_no_nan(scene: Gaussians3D) -> None:
    broken = Gaussians3D(
        means=torch.full((4, 3), float("nan")),
        scales=scene.scales[:4],
        quaternions=scene.quaternions[:4],
        colors_linear=scene.colors_linear[:4],
        opacities=scene.opacities[:4],
    )
    meta = build_metadata(broken, CAMERA, model_id="m", random_weights=False)
    assert meta["disparity_quantiles"] == {"q10": None, "q90": None}
    json.loads(metadata_json_bytes(meta))
