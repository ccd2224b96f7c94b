"""All eight EXIF orientations, including the mirrored ones the reference ignores."""

from __future__ import annotations

import io

import numpy as np
import pytest
from imaging_factory import encode, focal_exif, raw_tiff
from PIL import Image, ImageOps

from mlsharp.imaging import apply_orientation, decode_image


def stored_from_upright(upright: np.ndarray, orientation: int) -> np.ndarray:
    """What a camera stores for a scene that should display as ``upright`` (TIFF 6.0 meaning).

    Written per the spec's "0th row / 0th column" wording, independently of the code under test:
    e.g. 6 = stored row 0 is the visual right edge, stored column 0 is the visual top.
    """
    h, w = upright.shape[:2]
    if orientation <= 4:
        stored = np.empty_like(upright)
        for r in range(h):
            for c in range(w):
                vr = r if orientation in (1, 2) else h - 1 - r
                vc = c if orientation in (1, 4) else w - 1 - c
                stored[r, c] = upright[vr, vc]
        return stored
    stored = np.empty((w, h, 3), upright.dtype)
    for r in range(w):  # stored row r is a visual column
        for c in range(h):  # stored column c is a visual row
            vc = r if orientation in (5, 8) else w - 1 - r  # 0th row = left (5, 8) / right (6, 7)
            vr = c if orientation in (5, 6) else h - 1 - c  # 0th col = top (5, 6) / bottom (7, 8)
            stored[r, c] = upright[vr, vc]
    return stored


@pytest.mark.parametrize("orientation", range(1, 9))
def test_png_with_exif_orientation_is_upright(asym_rgb: np.ndarray, orientation: int) -> None:
    stored = stored_from_upright(asym_rgb, orientation)
    data = encode(Image.fromarray(stored), "PNG", exif=focal_exif(orientation=orientation))
    decoded = decode_image(data)
    assert decoded.exif_orientation == orientation
    np.testing.assert_array_equal(decoded.rgb, asym_rgb)
    assert (decoded.width_px, decoded.height_px) == (3, 2)
    assert stored.shape[:2] == ((3, 2) if orientation >= 5 else (2, 3))  # 5-8 swap W and H
    assert decoded.rgb.flags["C_CONTIGUOUS"]


@pytest.mark.parametrize("orientation", range(1, 9))
def test_apply_orientation_matches_pillow_exif_transpose(asym_rgb: np.ndarray, orientation: int) -> None:
    image = Image.fromarray(asym_rgb)
    exif = image.getexif()
    exif[0x0112] = orientation
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(encode(image, "PNG", exif=exif)))))
    np.testing.assert_array_equal(apply_orientation(asym_rgb, orientation), expected)


def test_orientation_6_corner_moves_to_top_right() -> None:
    stored = np.zeros((2, 3, 3), np.uint8)
    stored[0, 0] = (255, 255, 255)  # stored top-left = visual top-right for "rotate 90 CW"
    decoded = decode_image(encode(Image.fromarray(stored), "PNG", exif=focal_exif(orientation=6)))
    assert decoded.rgb.shape == (3, 2, 3)
    assert decoded.rgb[0, 1].tolist() == [255, 255, 255]
    assert int(decoded.rgb.sum()) == 3 * 255


def test_mirrored_orientation_2_flips_left_right() -> None:
    stored = np.zeros((1, 3, 3), np.uint8)
    stored[0, 0] = (10, 20, 30)
    decoded = decode_image(encode(Image.fromarray(stored), "PNG", exif=focal_exif(orientation=2)))
    assert decoded.rgb[0].tolist() == [[0, 0, 0], [0, 0, 0], [10, 20, 30]]


def test_jpeg_orientation_8_with_camera_style_exif() -> None:
    upright = np.zeros((32, 48, 3), np.uint8)
    upright[:16] = (230, 20, 20)  # top half red, bottom half blue
    upright[16:] = (20, 20, 230)
    stored = stored_from_upright(upright, 8)
    decoded = decode_image(
        encode(Image.fromarray(stored), "JPEG", quality=95, exif=focal_exif(orientation=8))
    )
    assert decoded.rgb.shape == (32, 48, 3)
    assert decoded.rgb[4, 24, 0] > 200 and decoded.rgb[4, 24, 2] < 50
    assert decoded.rgb[28, 24, 2] > 200 and decoded.rgb[28, 24, 0] < 50


def test_tiff_native_orientation_tag(asym_rgb: np.ndarray) -> None:
    decoded = decode_image(raw_tiff(stored_from_upright(asym_rgb, 7), photometric=2, orientation=7))
    np.testing.assert_array_equal(decoded.rgb, asym_rgb)


def test_auto_orient_off_keeps_stored_pixels(asym_rgb: np.ndarray) -> None:
    stored = stored_from_upright(asym_rgb, 6)
    decoded = decode_image(
        encode(Image.fromarray(stored), "PNG", exif=focal_exif(orientation=6)), auto_orient=False
    )
    np.testing.assert_array_equal(decoded.rgb, stored)
    assert decoded.exif_orientation == 1


@pytest.mark.parametrize("bogus", [0, 9, 65535])
def test_out_of_range_orientation_is_ignored(asym_rgb: np.ndarray, bogus: int) -> None:
    decoded = decode_image(encode(Image.fromarray(asym_rgb), "PNG", exif=focal_exif(orientation=bogus)))
    np.testing.assert_array_equal(decoded.rgb, asym_rgb)
    assert decoded.exif_orientation == 1


def test_orientation_does_not_change_focal(asym_rgb: np.ndarray) -> None:
    exif = focal_exif(orientation=6, focal_35mm=26)
    decoded = decode_image(encode(Image.fromarray(stored_from_upright(asym_rgb, 6)), "PNG", exif=exif))
    assert decoded.focal_source == "exif_35mm"
    assert decoded.focal_px == pytest.approx(26.0 * np.hypot(3, 2) / np.hypot(36, 24), rel=1e-12)
