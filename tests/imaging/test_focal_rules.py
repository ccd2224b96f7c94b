"""Focal length: every EXIF path of the reference rule, malformed rationals, and overrides."""

from __future__ import annotations

import io
import math
from fractions import Fraction

import pytest
from imaging_factory import (
    RATIONAL,
    SHORT,
    SRATIONAL,
    TAG_FOCAL_35MM,
    TAG_FOCAL_LENGTH,
    TAG_ORIENTATION,
    encode,
    exif_block,
    focal_exif,
)
from PIL import Image
from PIL.TiffImagePlugin import IFDRational

from mlsharp.errors import InvalidParameterError
from mlsharp.focal import (
    FOCAL_SOURCES,
    FULL_FRAME_DIAGONAL_MM,
    exif_number,
    focal_35mm_from_exif,
    focal_35mm_to_px,
    resolve_focal,
)
from mlsharp.imaging import decode_image, gather_exif

# 4032 x 3024 is an iPhone main-camera frame; its diagonal is exactly 5040 px.
_WIDTH_PX, _HEIGHT_PX = 4032, 3024
_PX_PER_MM = 5040.0 / FULL_FRAME_DIAGONAL_MM


def _jpeg_with(exif: bytes, size: tuple[int, int] = (40, 30)) -> bytes:
    return encode(Image.new("RGB", size, (90, 90, 90)), "JPEG", exif=exif)


def test_full_frame_diagonal_constant() -> None:
    assert abs(FULL_FRAME_DIAGONAL_MM - 43.266615305567875) <= 1e-15


@pytest.mark.parametrize(
    ("exif", "expected_f35_mm", "source"),
    [
        ({"FocalLengthIn35mmFilm": 26}, 26.0, "exif_35mm"),
        ({"FocalLenIn35mmFilm": 50}, 50.0, "exif_35mm"),  # alternative tag name
        ({"FocalLengthIn35mmFilm": 0, "FocalLength": IFDRational(57, 10)}, 5.7 * 8.4, "exif_physical_x8.4"),
        ({"FocalLength": IFDRational(4, 1)}, 4.0 * 8.4, "exif_physical_x8.4"),
        ({"FocalLength": IFDRational(10, 1)}, 10.0, "exif_physical"),  # threshold is < 10
        ({"FocalLength": (85, 1)}, 85.0, "exif_physical"),
        ({"FocalLength": Fraction(9999, 1000)}, 9.999 * 8.4, "exif_physical_x8.4"),
        ({}, 30.0, "default_30mm"),
        ({"FocalLengthIn35mmFilm": 0.5}, 30.0, "default_30mm"),  # < 1 and no physical length
    ],
)
def test_exif_rule_order(exif: dict, expected_f35_mm: float, source: str) -> None:
    f35_mm, got_source = focal_35mm_from_exif(exif)
    assert got_source == source
    assert f35_mm == pytest.approx(expected_f35_mm, rel=1e-15)
    estimate = resolve_focal(exif, _WIDTH_PX, _HEIGHT_PX)
    assert estimate.focal_px == pytest.approx(expected_f35_mm * _PX_PER_MM, rel=1e-15)
    assert estimate.focal_source in FOCAL_SOURCES


def test_iphone_example_value() -> None:
    # 26 mm-equivalent on a 4032 x 3024 frame: 26 * 5040 / 43.2666... = 3028.663... px
    focal_px = focal_35mm_to_px(26.0, _WIDTH_PX, _HEIGHT_PX)
    assert focal_px == pytest.approx(3028.6630713897507, abs=1e-9)
    assert isinstance(focal_px, float)


@pytest.mark.parametrize(
    "bad",
    [IFDRational(4, 0), IFDRational(0, 0), (4, 0), float("nan"), float("inf"), -4.2, 0, "4.2mm", None],
)
def test_malformed_physical_focal_falls_back_to_default(bad) -> None:
    # The reference would produce NaN (zero denominator) or a zero focal length here.
    assert focal_35mm_from_exif({"FocalLength": bad}) == (30.0, "default_30mm")


def test_exif_number_parsing() -> None:
    assert exif_number(IFDRational(57, 10)) == pytest.approx(5.7)
    assert exif_number((7, 2)) == 3.5
    assert exif_number((26,)) == 26.0
    assert exif_number(26) == 26.0
    assert exif_number((4, 0)) is None
    assert exif_number(True) is None
    assert exif_number(b"\x00") is None


@pytest.mark.parametrize(
    ("exif", "expected_f35_mm", "source"),
    [
        (focal_exif(focal_35mm=26, focal_mm=(57, 10)), 26.0, "exif_35mm"),
        (focal_exif(focal_35mm=0, focal_mm=(57, 10)), 5.7 * 8.4, "exif_physical_x8.4"),
        (focal_exif(focal_mm=(50, 1)), 50.0, "exif_physical"),
        (focal_exif(focal_mm=(4, 0)), 30.0, "default_30mm"),  # zero-denominator rational on disk
        (exif_block(exif_ifd=[(TAG_FOCAL_LENGTH, SRATIONAL, [(-4, 1)])]), 30.0, "default_30mm"),
        (b"", 30.0, "default_30mm"),
    ],
)
def test_focal_from_real_exif_blocks(exif: bytes, expected_f35_mm: float, source: str) -> None:
    decoded = decode_image(_jpeg_with(exif))
    assert decoded.focal_source == source
    expected_px = expected_f35_mm * math.hypot(40, 30) / FULL_FRAME_DIAGONAL_MM
    assert decoded.focal_px == pytest.approx(expected_px, rel=1e-12)
    assert math.isfinite(decoded.focal_px)


def test_ifd0_wins_over_exif_sub_ifd_on_name_clash() -> None:
    exif = exif_block(
        ifd0=[(TAG_ORIENTATION, SHORT, [6])],
        exif_ifd=[(TAG_ORIENTATION, SHORT, [3]), (TAG_FOCAL_LENGTH, RATIONAL, [(50, 1)])],
    )
    with Image.open(io.BytesIO(_jpeg_with(exif))) as image:
        named, orientation = gather_exif(image)
    assert named["Orientation"] == 6
    assert orientation == 6
    assert float(named["FocalLength"]) == 50.0


def test_focal_tag_misplaced_in_ifd0_is_ignored_like_the_reference() -> None:
    # IFD0 tags are named through TiffTags.TAGS_V2, which has no FocalLengthIn35mmFilm entry.
    exif = exif_block(
        ifd0=[(TAG_FOCAL_35MM, SHORT, [70])], exif_ifd=[(TAG_FOCAL_LENGTH, RATIONAL, [(50, 1)])]
    )
    decoded = decode_image(_jpeg_with(exif))
    assert decoded.focal_source == "exif_physical"
    assert decoded.focal_px == pytest.approx(50.0 * 50.0 / FULL_FRAME_DIAGONAL_MM, rel=1e-12)


@pytest.mark.filterwarnings("ignore:Corrupt EXIF")
def test_garbage_exif_block_does_not_fail_the_decode() -> None:
    decoded = decode_image(_jpeg_with(b"Exif\x00\x00II*\x00\xff\xff\xff\x7f garbage"))
    assert decoded.focal_source == "default_30mm"
    assert decoded.rgb.shape == (30, 40, 3)


def test_override_px_wins_over_exif() -> None:
    decoded = decode_image(_jpeg_with(focal_exif(focal_35mm=26)), focal_px=1234.5)
    assert (decoded.focal_px, decoded.focal_source) == (1234.5, "override_px")


def test_override_mm_is_35mm_equivalent() -> None:
    decoded = decode_image(_jpeg_with(focal_exif(focal_35mm=26)), focal_mm=50)
    assert decoded.focal_source == "override_mm"
    assert decoded.focal_px == pytest.approx(50.0 * 50.0 / FULL_FRAME_DIAGONAL_MM, rel=1e-12)


def test_overrides_are_mutually_exclusive() -> None:
    with pytest.raises(InvalidParameterError, match=r"either focal_px .* or focal_mm .*not both"):
        resolve_focal({}, 10, 10, focal_px=100.0, focal_mm=26.0)


@pytest.mark.parametrize("focal_px", [0.0, -1.0, 1e6 + 1, float("inf"), float("nan"), "wide", True])
def test_override_px_out_of_range(focal_px) -> None:
    with pytest.raises(InvalidParameterError, match="focal_px must be"):
        resolve_focal({}, 10, 10, focal_px=focal_px)


@pytest.mark.parametrize("focal_mm", [0.0, 0.99, 5000.5, -26.0, float("nan")])
def test_override_mm_out_of_range(focal_mm) -> None:
    with pytest.raises(InvalidParameterError, match="focal_mm"):
        resolve_focal({}, 10, 10, focal_mm=focal_mm)


@pytest.mark.parametrize(("focal_mm", "focal_px"), [(1.0, None), (5000.0, None), (None, 1e6), (None, 1e-3)])
def test_override_bounds_are_inclusive(focal_mm, focal_px) -> None:
    estimate = resolve_focal({}, 10, 10, focal_mm=focal_mm, focal_px=focal_px)
    assert estimate.focal_px > 0


def test_numeric_strings_are_accepted_as_overrides() -> None:
    assert resolve_focal({}, 10, 10, focal_px="1500").focal_px == 1500.0
