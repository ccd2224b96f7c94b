"""Issue 13 item 7: 16-bit and float images decode without image-sized int64/float64 copies.

A 20 MP float TIFF once cost 625 MiB (float64 copy + nan_to_num copy). tracemalloc sees numpy's
buffers; the budget per pixel below holds the source plane, the grey plane and the RGB result.
"""

from __future__ import annotations

import io
import tracemalloc

import numpy as np
import pytest
from PIL import Image

from mlsharp.imaging import decode_image

W, H = 2000, 1500


def encode(array: np.ndarray, mode: str | None, fmt: str) -> bytes:
    buffer = io.BytesIO()
    (Image.fromarray(array, mode=mode) if mode else Image.fromarray(array)).save(buffer, format=fmt)
    return buffer.getvalue()


def peak_bytes_per_pixel(data: bytes) -> tuple[float, np.ndarray]:
    tracemalloc.start()
    try:
        decoded = decode_image(data, max_pixels=10**8)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / (W * H), decoded.rgb


def test_16bit_png_without_wide_copies() -> None:
    plane = (np.arange(W * H, dtype=np.uint32).reshape(H, W) * 7 % 65536).astype(np.uint16)
    per_pixel, rgb = peak_bytes_per_pixel(encode(plane, None, "PNG"))
    assert per_pixel < 9.0, per_pixel  # was 19 bytes per pixel
    assert np.array_equal(rgb[..., 0], (plane >> 8).astype(np.uint8))
    assert np.array_equal(rgb[..., 0], rgb[..., 2])


@pytest.mark.parametrize("bright", [False, True])
def test_float_tiff_without_wide_copies(bright: bool) -> None:
    plane = np.linspace(-0.1, 1.0, W * H, dtype=np.float32).reshape(H, W) * (300.0 if bright else 1.0)
    plane[0, :3] = [np.nan, np.inf, -np.inf]
    per_pixel, rgb = peak_bytes_per_pixel(encode(plane, "F", "TIFF"))
    assert per_pixel < 13.0, per_pixel  # was 28 bytes per pixel
    wide = np.nan_to_num(plane.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    expected = np.clip(np.rint(wide * (1.0 if bright else 255.0)), 0, 255).astype(np.uint8)
    assert np.array_equal(rgb[..., 1], expected)


def test_32bit_int_plane_clips_negatives() -> None:
    plane = (np.arange(W * H, dtype=np.int64).reshape(H, W) * 13 % 90000 - 10000).astype(np.int32)
    per_pixel, rgb = peak_bytes_per_pixel(encode(plane, "I", "TIFF"))
    assert per_pixel < 11.0, per_pixel
    assert np.array_equal(rgb[..., 0], (np.clip(plane, 0, 65535) >> 8).astype(np.uint8))
