"""Network input tensors: layout, value scaling, align_corners resize and disparity factor."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from imaging_factory import asymmetric_rgb

from mlsharp.errors import InvalidParameterError
from mlsharp.imaging import DecodedImage
from mlsharp.preprocess import batch_network_inputs, disparity_factor, to_network_input


def _bilinear_align_corners(image: np.ndarray, size: int) -> np.ndarray:
    """float64 bilinear resize of (H, W, C) with corner pixels mapped onto corner pixels."""
    h, w = image.shape[:2]
    ys = np.arange(size) * ((h - 1) / (size - 1)) if size > 1 else np.zeros(1)
    xs = np.arange(size) * ((w - 1) / (size - 1)) if size > 1 else np.zeros(1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    wy, wx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    top = image[y0][:, x0] * (1 - wx) + image[y0][:, x1] * wx
    bottom = image[y1][:, x0] * (1 - wx) + image[y1][:, x1] * wx
    return top * (1 - wy) + bottom * wy


def test_shapes_dtypes_and_range() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (30, 50, 3), dtype=np.uint8)
    image, factor = to_network_input(rgb, focal_px=40.0, working_size_px=16)
    assert image.shape == (1, 3, 16, 16) and image.dtype == torch.float32
    assert factor.shape == (1,) and factor.dtype == torch.float32
    assert image.is_contiguous()
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0


def test_same_size_is_exact_true_division_channels_first() -> None:
    values = np.arange(256, dtype=np.uint8).reshape(16, 16)
    rgb = np.stack([values, values[::-1], values.T], axis=-1)
    image, _ = to_network_input(rgb, 10.0, working_size_px=16)
    expected = rgb.astype(np.float32).transpose(2, 0, 1) / np.float32(255.0)
    np.testing.assert_array_equal(image[0].numpy(), expected)  # bit-exact, not x * (1/255)


def test_align_corners_keeps_corner_pixels(asym_rgb: np.ndarray) -> None:
    image, _ = to_network_input(asym_rgb, 10.0, working_size_px=7)
    out = image[0].numpy().transpose(1, 2, 0)
    corners_in = asym_rgb[[0, 0, -1, -1], [0, -1, 0, -1]].astype(np.float32) / 255.0
    corners_out = out[[0, 0, -1, -1], [0, -1, 0, -1]]
    np.testing.assert_allclose(corners_out, corners_in, rtol=0, atol=1e-7)


def test_matches_reference_bilinear_formula() -> None:
    rgb = np.random.default_rng(1).integers(0, 256, (3, 5, 3), dtype=np.uint8)
    image, _ = to_network_input(rgb, 10.0, working_size_px=4)
    expected = _bilinear_align_corners(rgb.astype(np.float64) / 255.0, 4)
    np.testing.assert_allclose(image[0].numpy().transpose(1, 2, 0), expected, rtol=0, atol=1e-6)


def test_downscale_has_no_antialiasing() -> None:
    checker = ((np.indices((8, 8)).sum(axis=0) % 2) * 255).astype(np.uint8)
    rgb = np.repeat(checker[:, :, None], 3, axis=2)
    image, _ = to_network_input(rgb, 10.0, working_size_px=2)
    # align_corners=True samples input pixels 0 and 7 exactly; an antialiased resize would give ~0.5
    assert image[0, 0].tolist() == [[0.0, 1.0], [1.0, 0.0]]


def test_non_square_input_is_stretched_not_padded() -> None:
    rgb = np.zeros((2, 8, 3), np.uint8)
    rgb[:, 4:] = 255
    image, _ = to_network_input(rgb, 10.0, working_size_px=8)
    assert image.shape == (1, 3, 8, 8)
    assert image[0, 0, :, 0].tolist() == [0.0] * 8 and image[0, 0, :, 7].tolist() == [1.0] * 8


def test_disparity_factor_is_float64_division_then_float32() -> None:
    focal_px = 3028.6630713897507
    rgb = np.zeros((3024 // 504, 4032 // 504, 3), np.uint8)  # 6 x 8, only the width matters
    _, factor = to_network_input(rgb, focal_px, working_size_px=4)
    assert factor.item() == np.float32(focal_px / 8)
    assert disparity_factor(focal_px, 4032) == focal_px / 4032


def test_read_only_and_strided_arrays_are_accepted_silently() -> None:
    rgb = asymmetric_rgb(4, 6)[:, ::-1]  # negative stride
    rgb.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch.from_numpy warns on read-only arrays
        image, _ = to_network_input(rgb, 10.0, working_size_px=4)
    assert image[0, 0, 0, 0].item() == pytest.approx(rgb[0, 0, 0] / 255.0)


def test_batch_stacks_mixed_sizes() -> None:
    first = DecodedImage(asymmetric_rgb(2, 3), 3, 2, 5.0, "override_px", "PNG")
    second = DecodedImage(asymmetric_rgb(9, 4), 4, 9, 8.0, "override_px", "PNG")
    images, factors = batch_network_inputs([first, second], working_size_px=5)
    assert images.shape == (2, 3, 5, 5)
    assert factors.tolist() == [pytest.approx(5.0 / 3), 2.0]
    alone, _ = to_network_input(second.rgb, second.focal_px, 5)
    assert torch.equal(images[1:], alone)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu() -> None:
    rgb = np.random.default_rng(2).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    cpu_image, cpu_factor = to_network_input(rgb, 41.0, 32)
    gpu_image, gpu_factor = to_network_input(rgb, 41.0, 32, device="cuda")
    assert gpu_image.device.type == "cuda" and gpu_factor.device.type == "cuda"
    torch.testing.assert_close(gpu_image.cpu(), cpu_image, rtol=0, atol=1e-6)
    assert torch.equal(gpu_factor.cpu(), cpu_factor)


@pytest.mark.parametrize(
    ("rgb", "message"),
    [
        (np.zeros((4, 4, 3), np.float32), "uint8"),
        (np.zeros((4, 4), np.uint8), r"\(H, W, 3\)"),
        (np.zeros((4, 4, 4), np.uint8), r"\(H, W, 3\)"),
        (np.zeros((0, 4, 3), np.uint8), r"\(H, W, 3\)"),
        ([[0, 0, 0]], "uint8"),
    ],
)
def test_bad_arrays(rgb, message: str) -> None:
    with pytest.raises(InvalidParameterError, match=message):
        to_network_input(rgb, 10.0, 4)


@pytest.mark.parametrize("focal_px", [0.0, -3.0, float("nan"), float("inf")])
def test_bad_focal(focal_px: float) -> None:
    with pytest.raises(InvalidParameterError, match="positive finite"):
        to_network_input(asymmetric_rgb(), focal_px, 4)


@pytest.mark.parametrize("size", [0, -1, 2.0, True])
def test_bad_working_size(size) -> None:
    with pytest.raises(InvalidParameterError, match="working_size_px must be a positive integer"):
        to_network_input(asymmetric_rgb(), 10.0, size)


def test_empty_batch() -> None:
    with pytest.raises(InvalidParameterError, match="zero images"):
        batch_network_inputs([], 4)
