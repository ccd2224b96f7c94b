"""ml-sharp PLY and clean PLY: plyfile round trip, byte equality with plyfile, encodings."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from gaussians_factory import raw_gaussians
from plyfile import PlyData, PlyElement

from mlsharp.formats import attributes, encode_ply, encode_ply_clean, write_ply, write_ply_clean
from mlsharp.formats.colorspace import linear_to_srgb, srgb_to_linear
from mlsharp.formats.ply import RANDOM_WEIGHTS_COMMENT, VERTEX_PROPERTIES, vertex_array
from mlsharp.gaussians import CameraInfo, Gaussians3D, unproject

CAMERA = CameraInfo(focal_px=3100.5, width_px=4032, height_px=3024)
C0 = 0.28209479177387814


@pytest.fixture(scope="module")
def scene() -> Gaussians3D:
    return unproject(**raw_gaussians(3001, seed=11), camera=CAMERA, working_size_px=512)


def _srgb_np(c: np.ndarray) -> np.ndarray:
    c = c.astype(np.float64)
    return np.where(c <= 0.0031308, c * 12.92, 1.055 * np.maximum(c, 0.0031308) ** (1 / 2.4) - 0.055)


def test_plyfile_reads_back_every_value(scene: Gaussians3D) -> None:
    ply = PlyData.read(io.BytesIO(encode_ply(scene, CAMERA)))
    assert ply.text is False and ply.byte_order == "<"
    names = [e.name for e in ply.elements]
    assert names == [
        "vertex",
        "extrinsic",
        "intrinsic",
        "image_size",
        "frame",
        "disparity",
        "color_space",
        "version",
    ]
    v = ply["vertex"]
    assert [p.name for p in v.properties] == list(VERTEX_PROPERTIES)
    assert all(v.data.dtype[p.name] == np.dtype("<f4") for p in v.properties)

    def col(*names: str) -> np.ndarray:
        return np.stack([v[n] for n in names], axis=1)

    np.testing.assert_array_equal(col("x", "y", "z"), scene.means.numpy())
    sh_dc = (_srgb_np(scene.colors_linear.numpy()) - 0.5) / C0
    np.testing.assert_allclose(col("f_dc_0", "f_dc_1", "f_dc_2"), sh_dc, atol=2e-6)
    a = scene.opacities.numpy().astype(np.float64)
    np.testing.assert_allclose(v["opacity"], np.log(a / (1 - a)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(col("scale_0", "scale_1", "scale_2"), np.log(scene.scales.numpy()), rtol=1e-6)
    np.testing.assert_array_equal(col("rot_0", "rot_1", "rot_2", "rot_3"), scene.quaternions.numpy())

    def one(name: str) -> np.ndarray:
        return ply[name][name]

    np.testing.assert_array_equal(one("extrinsic"), np.eye(4, dtype=np.float32).reshape(-1))
    np.testing.assert_array_equal(one("intrinsic"), np.float32([3100.5, 0, 2016, 0, 3100.5, 1512, 0, 0, 1]))
    assert one("image_size").dtype == np.dtype("<u4") and one("image_size").tolist() == [4032, 3024]
    assert one("frame").dtype == np.dtype("<i4") and one("frame").tolist() == [1, 3001]
    expected = torch.quantile(1.0 / scene.means[:, 2], torch.tensor([0.1, 0.9])).numpy()
    np.testing.assert_array_equal(one("disparity"), expected)  # bit-identical to torch.quantile
    assert one("color_space").dtype == np.uint8 and one("color_space").tolist() == [0]
    assert one("version").dtype == np.uint8 and one("version").tolist() == [1, 5, 0]


@pytest.mark.parametrize("random_weights", [False, True])
def test_bytes_equal_what_plyfile_writes(scene: Gaussians3D, random_weights: bool) -> None:
    ours = encode_ply(scene, CAMERA, random_weights=random_weights)
    vertex = np.empty(scene.num_gaussians, dtype=[(n, "f4") for n in VERTEX_PROPERTIES])
    for i, name in enumerate(VERTEX_PROPERTIES):
        vertex[name] = vertex_array(scene)[:, i]
    lo, hi = attributes.disparity_quantiles(scene.means)
    extras = [
        ("extrinsic", "f4", np.eye(4).reshape(-1)),
        ("intrinsic", "f4", [3100.5, 0, 2016, 0, 3100.5, 1512, 0, 0, 1]),
        ("image_size", "u4", [4032, 3024]),
        ("frame", "i4", [1, scene.num_gaussians]),
        ("disparity", "f4", [lo, hi]),
        ("color_space", "u1", [0]),
        ("version", "u1", [1, 5, 0]),
    ]
    elements = [PlyElement.describe(vertex, "vertex")]
    for name, kind, values in extras:
        arr = np.empty(len(values), dtype=[(name, kind)])
        arr[name] = values
        elements.append(PlyElement.describe(arr, name))
    reference = io.BytesIO()
    PlyData(elements, comments=[RANDOM_WEIGHTS_COMMENT] if random_weights else []).write(reference)
    assert ours == reference.getvalue()
    clean_ref = io.BytesIO()
    PlyData(elements[:1], comments=[RANDOM_WEIGHTS_COMMENT] if random_weights else []).write(clean_ref)
    assert encode_ply_clean(scene, random_weights=random_weights) == clean_ref.getvalue()


def test_random_weights_comment_follows_the_format_line(scene: Gaussians3D) -> None:
    for data in (
        encode_ply(scene, CAMERA, random_weights=True),
        encode_ply_clean(scene, random_weights=True),
    ):
        lines = data[:200].split(b"\n")
        assert lines[:3] == [
            b"ply",
            b"format binary_little_endian 1.0",
            b"comment " + RANDOM_WEIGHTS_COMMENT.encode(),
        ]
    assert b"comment" not in encode_ply(scene, CAMERA)[:2000]


def test_clean_ply_has_only_the_vertex_element(scene: Gaussians3D) -> None:
    ply = PlyData.read(io.BytesIO(encode_ply_clean(scene)))
    assert [e.name for e in ply.elements] == ["vertex"]
    assert ply["vertex"].count == scene.num_gaussians
    full = PlyData.read(io.BytesIO(encode_ply(scene, CAMERA)))
    assert np.array_equal(ply["vertex"].data, full["vertex"].data)


def test_streaming_writers_match_encoders(scene: Gaussians3D) -> None:
    buf = io.BytesIO()
    write_ply(buf, scene, CAMERA, random_weights=True)
    assert buf.getvalue() == encode_ply(scene, CAMERA, random_weights=True)
    buf = io.BytesIO()
    write_ply_clean(buf, scene)
    assert buf.getvalue() == encode_ply_clean(scene)


def test_extreme_opacities_and_scales_stay_finite() -> None:
    alpha = torch.tensor([0.0, 1e-45, 0.5, 1.0 - 2.0**-24, 1.0, 1.5])
    logits = attributes.opacity_logits(alpha)
    assert torch.isfinite(logits).all()
    assert logits[0] == logits[1] == pytest.approx(-87.336544, abs=1e-4)
    assert logits[2] == 0.0
    assert logits[3] == logits[4] == logits[5] == pytest.approx(16.635532, abs=1e-5)
    logs = attributes.log_scales(torch.tensor([[0.0, 1.0, np.e]]))
    assert logs[0, 0] == pytest.approx(-87.336544, abs=1e-4) and logs[0, 1] == 0.0
    assert logs[0, 2] == pytest.approx(1.0)
    # an alpha the reference encodes finitely keeps its exact logit
    a = torch.tensor([0.25, 0.999])
    assert torch.equal(attributes.opacity_logits(a), torch.log(a / (1.0 - a)))


@pytest.mark.parametrize("n", [1, 2, 10, 11, 1000, 12345])
def test_disparity_quantiles_equal_torch_quantile(n: int) -> None:
    z = torch.empty(n).uniform_(1.0, 100.0, generator=torch.Generator().manual_seed(n))
    means = torch.stack([torch.zeros(n), torch.zeros(n), z], dim=1)
    expected = torch.quantile(1.0 / z, torch.tensor([0.1, 0.9]))
    assert attributes.disparity_quantiles(means) == (float(expected[0]), float(expected[1]))


def test_colour_transfer_functions() -> None:
    x = torch.linspace(0, 1, 1001)
    srgb = linear_to_srgb(x)
    np.testing.assert_allclose(srgb.numpy(), _srgb_np(x.numpy()), atol=1e-6)
    torch.testing.assert_close(srgb_to_linear(srgb), x, atol=2e-6, rtol=0)
    assert linear_to_srgb(torch.tensor([0.0, 1.0])).tolist() == pytest.approx([0.0, 1.0], abs=1e-6)
    assert torch.isfinite(linear_to_srgb(torch.tensor([-0.5]))).all()  # linear branch, no NaN
    # same ops as the reference: bit-identical for the same input
    ref = torch.where(x <= 0.0031308, x * 12.92, 1.055 * (x ** (1 / 2.4)) - 0.055)
    assert torch.equal(srgb, ref)
