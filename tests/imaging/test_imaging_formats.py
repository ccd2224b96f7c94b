"""Every supported container and colour mode ends up as exact 8-bit RGB."""

from __future__ import annotations

import numpy as np
import pytest
from imaging_factory import asymmetric_rgb, encode, png16, raw_tiff
from PIL import Image, features

from mlsharp.imaging import DecodedImage, decode_image, load_image
from tests.requires import missing

# Two flat halves survive lossy codecs almost exactly, so lossy round trips can be checked tightly.
_HALVES = np.zeros((16, 32, 3), np.uint8)
_HALVES[:, :16] = (200, 40, 30)
_HALVES[:, 16:] = (20, 90, 220)


def _assert_rgb_contract(decoded: DecodedImage, width_px: int, height_px: int) -> None:
    assert decoded.rgb.dtype == np.uint8
    assert decoded.rgb.shape == (height_px, width_px, 3)
    assert decoded.rgb.flags["C_CONTIGUOUS"]
    assert decoded.rgb.flags["WRITEABLE"] and decoded.rgb.flags["OWNDATA"]
    assert (decoded.width_px, decoded.height_px) == (width_px, height_px)


@pytest.mark.parametrize(
    ("fmt", "save_kwargs", "expected_format"),
    [
        ("PNG", {}, "PNG"),
        ("BMP", {}, "BMP"),
        ("TIFF", {}, "TIFF"),
        ("WEBP", {"lossless": True}, "WEBP"),
    ],
)
def test_lossless_round_trip_is_exact(fmt: str, save_kwargs: dict, expected_format: str) -> None:
    rgb = asymmetric_rgb(5, 7)
    decoded = decode_image(encode(Image.fromarray(rgb), fmt, **save_kwargs))
    _assert_rgb_contract(decoded, 7, 5)
    assert decoded.source_format == expected_format
    np.testing.assert_array_equal(decoded.rgb, rgb)


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP", "AVIF"])
def test_lossy_round_trip_keeps_colours(fmt: str) -> None:
    if fmt == "AVIF" and not features.check("avif"):
        missing("this Pillow build has no AVIF codec")
    decoded = decode_image(encode(Image.fromarray(_HALVES), fmt, quality=95))
    _assert_rgb_contract(decoded, 32, 16)
    assert decoded.source_format == fmt
    # centres of the halves, away from the chroma-subsampled edge
    assert np.abs(decoded.rgb[8, 4].astype(int) - (200, 40, 30)).max() <= 6
    assert np.abs(decoded.rgb[8, 28].astype(int) - (20, 90, 220)).max() <= 6


def test_heic_round_trip_is_exact(heic_encoder) -> None:
    rgb = asymmetric_rgb(6, 10)
    decoded = decode_image(heic_encoder(rgb))
    assert decoded.source_format == "HEIF"
    _assert_rgb_contract(decoded, 10, 6)
    np.testing.assert_array_equal(decoded.rgb, rgb)


def test_grayscale_becomes_three_equal_channels() -> None:
    gray = np.array([[0, 17, 255], [128, 64, 1]], np.uint8)
    decoded = decode_image(encode(Image.fromarray(gray), "PNG"))
    for channel in range(3):
        np.testing.assert_array_equal(decoded.rgb[:, :, channel], gray)


def test_bilevel_image_maps_to_black_and_white() -> None:
    image = Image.new("1", (2, 1))
    image.putpixel((1, 0), 1)
    decoded = decode_image(encode(image, "PNG"))
    assert decoded.rgb.tolist() == [[[0, 0, 0], [255, 255, 255]]]


def test_palette_with_transparency_keeps_palette_colours() -> None:
    image = Image.new("P", (3, 1))
    image.putpalette([250, 10, 10, 10, 250, 10, 10, 10, 250] + [0] * 759)
    for x in range(3):
        image.putpixel((x, 0), x)
    decoded = decode_image(encode(image, "PNG", transparency=1))  # index 1 fully transparent
    # The reference would feed indices 0, 1, 2 as grey; we keep the colours (alpha dropped).
    assert decoded.rgb.tolist() == [[[250, 10, 10], [10, 250, 10], [10, 10, 250]]]


def test_gray_alpha_drops_alpha_and_keeps_gray() -> None:
    la = np.array([[[10, 0], [200, 255]]], np.uint8)
    decoded = decode_image(encode(Image.fromarray(la, "LA"), "PNG"))
    assert decoded.rgb.tolist() == [[[10, 10, 10], [200, 200, 200]]]


def test_rgba_drops_alpha_without_compositing() -> None:
    rgba = np.array([[[255, 0, 0, 0], [0, 255, 0, 128], [1, 2, 3, 255]]], np.uint8)
    decoded = decode_image(encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    # Fully transparent red stays red: same as the reference, which keeps the first 3 channels.
    assert decoded.rgb.tolist() == [[[255, 0, 0], [0, 255, 0], [1, 2, 3]]]


def test_cmyk_tiff_converts_to_known_rgb() -> None:
    cmyk = np.array([[[0, 255, 255, 0], [0, 0, 0, 128], [100, 50, 0, 60], [0, 0, 0, 255]]], np.uint8)
    decoded = decode_image(raw_tiff(cmyk, photometric=5))
    # R = (255 - C)(255 - K) / 255 etc.: pure red, mid grey, a steel blue, black
    assert decoded.rgb.tolist() == [[[255, 0, 0], [127, 127, 127], [119, 157, 195], [0, 0, 0]]]


def test_cmyk_jpeg_is_red_not_garbage() -> None:
    image = Image.new("CMYK", (16, 16), (0, 255, 255, 0))
    decoded = decode_image(encode(image, "JPEG", quality=95))
    assert decoded.source_format == "JPEG"
    assert np.abs(decoded.rgb[8, 8].astype(int) - (255, 0, 0)).max() <= 3


def test_16bit_grayscale_png_is_scaled_not_clipped() -> None:
    samples = np.array([[0, 257, 32896, 65535], [255, 256, 40000, 65280]], np.uint16)
    decoded = decode_image(png16(samples))
    # high byte: 257k -> k; clipping would have made everything above 255 white
    expected = [[0, 1, 128, 255], [0, 1, 156, 255]]
    assert decoded.rgb[:, :, 0].tolist() == expected
    assert (decoded.rgb[:, :, 0] == decoded.rgb[:, :, 2]).all()


def test_16bit_rgb_tiff_and_png_are_scaled_like_grey() -> None:
    samples = np.array([[[0, 32896, 65535], [257 * 7, 40000, 65280]]], np.uint16)
    from_tiff = decode_image(raw_tiff(samples, photometric=2))
    from_png = decode_image(png16(samples))
    expected = [[[0, 128, 255], [7, 156, 255]]]
    assert from_tiff.rgb.tolist() == expected
    assert from_png.rgb.tolist() == expected
    grey = decode_image(png16(samples[:, :, 1]))  # same rule whether grey or colour
    assert grey.rgb[:, :, 0].tolist() == [[128, 156]]


def test_32bit_int_and_float_tiffs() -> None:
    ints = Image.fromarray(np.array([[0, 1000, 65535, 70000]], np.int32))
    assert decode_image(encode(ints, "TIFF")).rgb[0, :, 0].tolist() == [0, 3, 255, 255]
    floats = Image.fromarray(np.array([[0.0, 0.5, 1.0, np.nan]], np.float32))
    assert decode_image(encode(floats, "TIFF")).rgb[0, :, 1].tolist() == [0, 128, 255, 0]


def test_animated_gif_yields_first_frame() -> None:
    frames = [Image.new("RGB", (4, 4), colour) for colour in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    assert Image.open(__import__("io").BytesIO(data)).n_frames == 3
    decoded = decode_image(data)
    assert decoded.source_format == "GIF"
    assert (decoded.rgb == np.array([255, 0, 0], np.uint8)).all()


def test_one_pixel_image() -> None:
    decoded = decode_image(encode(Image.new("RGB", (1, 1), (9, 8, 7)), "PNG"))
    _assert_rgb_contract(decoded, 1, 1)
    assert decoded.rgb.tolist() == [[[9, 8, 7]]]
    assert decoded.focal_px == pytest.approx(30.0 * np.sqrt(2.0) / np.sqrt(36.0**2 + 24.0**2))


def test_wide_panorama_keeps_aspect_and_focal_uses_diagonal() -> None:
    rgb = np.zeros((20, 200, 3), np.uint8)
    rgb[:, :, 0] = np.arange(200, dtype=np.uint8)[None, :]
    decoded = decode_image(encode(Image.fromarray(rgb), "PNG"))
    _assert_rgb_contract(decoded, 200, 20)
    np.testing.assert_array_equal(decoded.rgb, rgb)
    assert decoded.focal_px == pytest.approx(30.0 * np.hypot(200, 20) / np.hypot(36, 24), rel=1e-12)


def test_load_image_reads_file(tmp_path) -> None:
    path = tmp_path / "photo.PNG"
    path.write_bytes(encode(Image.fromarray(asymmetric_rgb(2, 3)), "PNG"))
    np.testing.assert_array_equal(load_image(path).rgb, asymmetric_rgb(2, 3))


def test_10bit_heic_is_reduced_to_8bit(heic_encoder) -> None:
    import io

    import pillow_heif

    samples = np.zeros((8, 8, 3), np.uint16)
    samples[..., 0], samples[..., 1] = 65535, 32896
    heif = pillow_heif.from_bytes(mode="RGB;16", size=(8, 8), data=samples.tobytes())
    buffer = io.BytesIO()
    heif.save(buffer, quality=-1, chroma=444, matrix_coefficients=0)  # stored with 10 bits
    decoded = decode_image(buffer.getvalue())
    assert decoded.rgb.dtype == np.uint8
    assert np.abs(decoded.rgb[4, 4].astype(int) - (255, 128, 0)).max() <= 1


def test_multi_picture_jpeg_reports_jpeg_and_first_picture() -> None:
    first, second = Image.new("RGB", (8, 6), (200, 10, 10)), Image.new("RGB", (8, 6), (10, 10, 200))
    decoded = decode_image(encode(first, "MPO", save_all=True, append_images=[second]))
    assert decoded.source_format == "JPEG"  # Pillow says "MPO"; users sent a JPEG
    assert np.abs(decoded.rgb[3, 3].astype(int) - (200, 10, 10)).max() <= 4
