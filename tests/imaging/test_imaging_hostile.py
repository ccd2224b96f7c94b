"""Hostile and broken uploads fail with one typed error and a message a person can act on."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from imaging_factory import asymmetric_rgb, encode, raw_png
from PIL import Image

from mlsharp.errors import ImageTooLargeError, InvalidImageError, InvalidParameterError, MLSharpError
from mlsharp.imaging import decode_image, load_image


def _photo(fmt: str) -> bytes:
    rng = np.random.default_rng(7)
    return encode(Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)), fmt)


def test_empty_bytes() -> None:
    with pytest.raises(InvalidImageError, match=r"empty \(0 bytes\)"):
        decode_image(b"")


def test_random_bytes() -> None:
    noise = np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    with pytest.raises(InvalidImageError, match="supported formats are JPEG, PNG"):
        decode_image(noise)


@pytest.mark.parametrize("fraction", [0.5, 0.9])
def test_truncated_jpeg(fraction: float) -> None:
    data = _photo("JPEG")
    with pytest.raises(InvalidImageError, match=r"truncated JPEG data"):
        decode_image(data[: int(len(data) * fraction)])


def test_jpeg_cut_inside_header() -> None:
    with pytest.raises(InvalidImageError, match=r"truncated .*JPEG data"):
        decode_image(_photo("JPEG")[:300])


def test_truncated_png() -> None:
    data = _photo("PNG")
    with pytest.raises(InvalidImageError, match=r"truncated PNG data"):
        decode_image(data[: len(data) // 2])


def test_png_cut_inside_header() -> None:
    with pytest.raises(InvalidImageError, match=r"truncated or corrupt PNG data"):
        decode_image(_photo("PNG")[:30])


def test_text_file() -> None:
    with pytest.raises(InvalidImageError, match="plain text, not an image"):
        decode_image(b"Dear team,\nplease find the photo attached.\n")


def test_html_saved_as_jpg() -> None:
    page = b"<!DOCTYPE html>\n<html><head><title>photo.jpg</title></head><body><img src=x></body></html>"
    with pytest.raises(InvalidImageError, match="HTML document, not an image"):
        decode_image(page)


def test_svg_is_refused_with_hint() -> None:
    svg = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>'
    with pytest.raises(InvalidImageError, match="not a raster image"):
        decode_image(svg)


@pytest.mark.parametrize("fmt", ["ICO", "PPM", "TGA"])
def test_formats_outside_the_allow_list(fmt: str) -> None:
    data = encode(Image.fromarray(asymmetric_rgb(16, 16)), fmt)
    with pytest.raises(InvalidImageError, match="supported formats are"):
        decode_image(data)


def test_decompression_bomb_header_is_refused_before_decoding() -> None:
    bomb = raw_png(100_000, 100_000)  # header only: 10^10 pixels, no pixel data at all
    assert len(bomb) < 100
    with pytest.raises(ImageTooLargeError, match="too large"):
        decode_image(bomb)


def test_our_pixel_limit_applies_below_pillows_bomb_limit() -> None:
    header = raw_png(8000, 8000)  # 64 MP: under Pillow's 89 MP warning, over our 50 MP default
    with pytest.raises(
        ImageTooLargeError, match=r"8000x8000 = 64,000,000 pixels exceeds the limit of 50,000,000"
    ):
        decode_image(header)


def test_custom_pixel_limit() -> None:
    data = encode(Image.new("RGB", (20, 10)), "PNG")
    assert decode_image(data, max_pixels=200).width_px == 20
    with pytest.raises(ImageTooLargeError, match="20x10 = 200 pixels exceeds the limit of 199"):
        decode_image(data, max_pixels=199)


def test_byte_limit() -> None:
    data = encode(Image.new("RGB", (20, 10)), "PNG")
    with pytest.raises(ImageTooLargeError, match="bytes exceeds the limit of 10 bytes"):
        decode_image(data, max_bytes=10)
    assert decode_image(data, max_bytes=len(data)).height_px == 10


@pytest.mark.parametrize(("width_px", "height_px"), [(0, 10), (10, 0)])
def test_zero_size_image(width_px: int, height_px: int) -> None:
    with pytest.raises(InvalidImageError, match=rf"has no pixels \({width_px}x{height_px} declared"):
        decode_image(raw_png(width_px, height_px, rows=b""))


def test_zero_width_gif() -> None:
    screen = struct.pack("<HHBBB", 0, 5, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    frame = b"," + struct.pack("<HHHHB", 0, 0, 0, 5, 0) + b"\x02\x02\x44\x01\x00"
    with pytest.raises(InvalidImageError, match=r"has no pixels \(0x5 declared in its GIF header\)"):
        decode_image(b"GIF89a" + screen + frame + b";")


def test_corrupt_pixel_data_inside_valid_png_header() -> None:
    rows = b"\x00" * (3 * 4 * 4)
    data = bytearray(raw_png(4, 4, rows=rows))
    idat = data.index(b"IDAT")
    data[idat + 4 : idat + 10] = b"\xff" * 6  # smash the zlib stream
    with pytest.raises(InvalidImageError, match="not a readable image"):
        decode_image(bytes(data))


def test_bit_flipped_jpegs_never_leak_raw_errors() -> None:
    clean = _photo("JPEG")
    rng = np.random.default_rng(3)
    outcomes = set()
    for _ in range(25):
        data = bytearray(clean)
        for index in rng.integers(2, len(data), 12):
            data[index] ^= 0xFF
        try:
            decoded = decode_image(bytes(data))
            assert decoded.rgb.shape == (64, 64, 3)
            outcomes.add("decoded")
        except MLSharpError as exc:
            assert isinstance(exc, InvalidImageError | ImageTooLargeError)
            assert str(exc).startswith("The ")
            outcomes.add(type(exc).__name__)
    assert outcomes  # ran; any mix of decoded / typed errors is fine


def test_non_bytes_input_is_a_parameter_error() -> None:
    with pytest.raises(InvalidParameterError, match="must be bytes"):
        decode_image("photo.jpg")  # type: ignore[arg-type]


@pytest.mark.parametrize("max_pixels", [0, -1, 1.5, True])
def test_bad_pixel_limit(max_pixels) -> None:
    with pytest.raises(InvalidParameterError, match="max_pixels must be a positive integer"):
        decode_image(_photo("PNG"), max_pixels=max_pixels)


def test_numpy_integer_limits_are_accepted() -> None:
    assert decode_image(_photo("PNG"), max_pixels=np.int64(4096), max_bytes=np.uint32(10**6)).width_px == 64


def test_negative_byte_limit_is_rejected() -> None:
    with pytest.raises(InvalidParameterError, match="max_bytes must be a non-negative integer"):
        decode_image(_photo("PNG"), max_bytes=-1)


def test_focal_conflict_is_reported_before_decoding() -> None:
    with pytest.raises(InvalidParameterError, match="not both"):
        decode_image(b"not even an image", focal_px=1000.0, focal_mm=26.0)


def test_bytearray_and_memoryview_are_accepted() -> None:
    data = encode(Image.fromarray(asymmetric_rgb()), "PNG")
    assert decode_image(bytearray(data)).width_px == 3
    assert decode_image(memoryview(data)).width_px == 3


def test_missing_file(tmp_path) -> None:
    with pytest.raises(InvalidImageError, match="Cannot read image file"):
        load_image(tmp_path / "nope.jpg")


def test_load_image_checks_size_before_reading(tmp_path) -> None:
    path = tmp_path / "big.png"
    path.write_bytes(_photo("PNG"))
    with pytest.raises(ImageTooLargeError, match="exceeds the limit of 100 bytes"):
        load_image(path, max_bytes=100)
