"""SPZ and .splat: round trips within their quantisation bounds, exact bit layouts, ordering."""

from __future__ import annotations

import gzip
import io
import struct

import numpy as np
import pytest
import torch
from gaussians_factory import raw_gaussians

from mlsharp.formats import (
    attributes,
    decode_splat,
    decode_spz,
    encode_splat,
    encode_spz,
    write_splat,
    write_spz,
)
from mlsharp.formats.spz import spz_payload
from mlsharp.gaussians import CameraInfo, Gaussians3D, unproject


@pytest.fixture(scope="module")
def scene() -> Gaussians3D:
    cam = CameraInfo(focal_px=900.0, width_px=1200, height_px=800)
    return unproject(**raw_gaussians(5000, seed=21), camera=cam, working_size_px=512)


def _same_rotation_err(q1: np.ndarray, q2: np.ndarray) -> np.ndarray:
    """1 - |<q1, q2>| per row (0 for the same rotation, sign-invariant)."""
    return 1.0 - np.abs(np.sum(q1.astype(np.float64) * q2, axis=1))


def test_spz_round_trip_within_quantisation(scene: Gaussians3D) -> None:
    data = encode_spz(scene)
    assert data[:2] == b"\x1f\x8b"  # the whole file is one gzip stream
    raw = gzip.decompress(data)
    assert struct.unpack_from("<IIIBBBB", raw) == (0x5053474E, 3, 5000, 0, 12, 0, 0)
    assert len(raw) == 16 + 5000 * (9 + 1 + 3 + 3 + 4)
    got = decode_spz(data)
    assert (got.version, got.fractional_bits, got.flags) == (3, 12, 0)
    means = scene.means.numpy()
    assert np.abs(got.means - means).max() <= 0.5 / 4096 + 1e-6 * np.abs(means).max()
    assert np.abs(got.opacities - scene.opacities.numpy()).max() <= 0.5 / 255 + 1e-6
    sh = attributes.sh_dc_from_linear(scene.colors_linear).numpy()
    assert np.abs(got.sh_dc - sh).max() <= 0.5 / (0.15 * 255) + 1e-5
    logs = attributes.log_scales(scene.scales).numpy()
    assert logs.min() > -10 and logs.max() < 5.9  # inside the u8 range: error bounded by half a step
    assert np.abs(got.log_scales - logs).max() <= 0.5 / 16 + 1e-5
    # 9-bit smallest-three: each stored component within sqrt(1/2) / 511 / 2
    assert _same_rotation_err(got.quaternions, scene.quaternions.numpy()).max() < 2e-6
    np.testing.assert_allclose(np.linalg.norm(got.quaternions, axis=1), 1.0, atol=1e-6)


def test_spz_exact_bit_layout() -> None:
    g = Gaussians3D(
        means=torch.tensor([[1.0, -1.0 / 4096, 0.0], [5000.0, -5000.0, 2.5]]),
        scales=torch.tensor([[1.0, np.exp(-10.0), 1e-30], [np.exp(0.5), 1.0, 1.0]], dtype=torch.float32),
        quaternions=torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.6, -0.8]]),
        colors_linear=torch.tensor([[0.214041, 0.0, 1.0], [0.5, 0.5, 0.5]]),
        opacities=torch.tensor([1.0, 0.5]),
    )
    raw = spz_payload(g)[16:]
    pos, alpha, color = raw[:18], raw[18:20], raw[20:26]
    scale, rot = raw[26:32], raw[32:40]
    assert pos[:9] == bytes([0x00, 0x10, 0x00, 0xFF, 0xFF, 0xFF, 0, 0, 0])  # 4096, -1, 0
    assert pos[9:15] == bytes([0xFF, 0xFF, 0x7F, 0x00, 0x00, 0x80])  # clamped to +-2^23
    assert alpha == bytes([255, 128])  # rint(127.5) = 128 (round half to even)
    # u8 = f_dc * 0.15 * 255 + 127.5 with f_dc = (sRGB - 0.5) / C0: sRGB 0 -> 59.70, 1 -> 195.30
    assert color[1:3] == bytes([60, 195])
    assert color[0] in (127, 128)  # linear 0.214041 is sRGB 0.5 to 6 digits
    assert scale[:3] == bytes([160, 0, 0]) and scale[3] == 168  # (ln s + 10) * 16, clamped
    assert rot[:4] == (3 << 30).to_bytes(4, "little")  # identity: largest is w (index 3), rest 0
    # (x, y, z, w) = (0, 0.6, -0.8, 0): largest is z (index 2) and negative, so the stored signs
    # are (q_i < 0) xor 1 (zeros included, as in the reference), in index order x, y, w.
    mag = int(np.float32(511) * (np.float32(0.6) / np.float32(np.sqrt(0.5))) + np.float32(0.5))
    word = ((((2 << 10) | 512) << 10 | 512 | mag) << 10) | 512
    assert rot[4:] == word.to_bytes(4, "little")
    back = decode_spz(encode_spz(g))
    assert _same_rotation_err(back.quaternions, g.quaternions.numpy()).max() < 2e-6


def test_spz_streaming_and_determinism(scene: Gaussians3D) -> None:
    buf = io.BytesIO()
    write_spz(buf, scene)
    assert buf.getvalue() == encode_spz(scene) == encode_spz(scene)
    assert len(encode_spz(scene, compresslevel=1)) > 0
    with pytest.raises(ValueError, match="magic"):
        decode_spz(gzip.compress(b"\0" * 16))


def test_spz_reads_version_2_rotations() -> None:
    # v2 stores x, y, z as u8 (q * 127.5 + 127.5) with w >= 0 derived
    header = struct.pack("<IIIBBBB", 0x5053474E, 2, 1, 0, 12, 0, 0)
    body = bytes(9) + bytes([255]) + bytes([128] * 3) + bytes([160] * 3) + bytes([128, 128, 255])
    got = decode_spz(gzip.compress(header + body))
    assert got.version == 2
    np.testing.assert_allclose(got.quaternions[0], [0.0, 0.0039, 0.0039, 1.0], atol=1e-3)


def test_splat_round_trip_and_order(scene: Gaussians3D) -> None:
    data = encode_splat(scene)
    assert len(data) == 32 * scene.num_gaussians
    got = decode_splat(data)
    scales = scene.scales.numpy()
    alphas = scene.opacities.numpy()
    key = scales.astype(np.float64).prod(axis=1) * alphas
    order = np.argsort(-key, kind="stable")
    file_key = got.scales.astype(np.float64).prod(axis=1) * got.opacities
    assert np.all(np.diff(key[order]) <= 0)
    np.testing.assert_array_equal(got.means, scene.means.numpy()[order])
    np.testing.assert_allclose(got.scales, scales[order], rtol=1e-6)
    assert np.abs(got.opacities - alphas[order]).max() <= 0.5 / 255 + 1e-6
    assert np.corrcoef(file_key, key[order])[0, 1] > 0.99
    srgb = (attributes.sh_dc_from_linear(scene.colors_linear).numpy() * 0.28209479177387814 + 0.5)[order]
    assert np.abs(got.colors_srgb - srgb).max() <= 0.5 / 255 + 1e-6
    # 8-bit components: |error| <= 1/256 each, before renormalisation
    assert _same_rotation_err(got.quaternions, scene.quaternions.numpy()[order]).max() < 2e-4
    buf = io.BytesIO()
    write_splat(buf, scene)
    assert buf.getvalue() == data


def test_splat_rejects_truncated_files() -> None:
    with pytest.raises(ValueError, match="multiple of 32"):
        decode_splat(b"\0" * 33)
