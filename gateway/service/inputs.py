"""Checks on an upload before any inference: real image type, byte and pixel limits, parameters.

The type is sniffed from magic bytes (the seed trusted the name and saved everything as
``input.jpg``); the pixel count is read from the header only, so a decompression bomb is refused
before a single pixel is decoded, and before it costs a Triton round trip.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image

from gateway.errors import PayloadTooLarge, UnsupportedMediaType
from gateway.formats import known_formats
from mlsharp.errors import ImageTooLargeError, InvalidImageError, InvalidParameterError
from mlsharp.focal import validate_focal_overrides

_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"\xff\xd8\xff", 0, "jpeg"),
    (b"\x89PNG\r\n\x1a\n", 0, "png"),
    (b"GIF87a", 0, "gif"),
    (b"GIF89a", 0, "gif"),
    (b"II*\x00", 0, "tiff"),
    (b"MM\x00*", 0, "tiff"),
    (b"BM", 0, "bmp"),
    (b"ftyp", 4, "heif"),
)


@dataclass(frozen=True)
class PredictParams:
    """Validated request parameters; None means "not set"."""

    fmt: str
    focal_px: float | None = None
    focal_mm: float | None = None


def sniff_image_type(data: bytes) -> str | None:
    """Image container from magic bytes, or None when the bytes are no image we accept."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    for magic, offset, kind in _MAGIC:
        if data[offset : offset + len(magic)] == magic:
            return kind
    return None


def check_image(data: bytes, *, max_bytes: int, max_pixels: int) -> str:
    """Raise the typed error for an unusable upload; return the sniffed type otherwise."""
    if not data:
        raise InvalidImageError("The upload is empty (0 bytes); send an image file.")
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"The upload is {len(data):,} bytes; the limit is {max_bytes:,} bytes.")
    kind = sniff_image_type(data)
    if kind is None:
        raise UnsupportedMediaType(
            "The upload is not a supported image (JPEG, PNG, WebP, HEIC/HEIF, AVIF, TIFF, BMP or GIF); "
            "its content was checked, not its name or content type."
        )
    if kind != "heif":  # Pillow needs a plugin for HEIF headers; the decoder checks those
        _check_pixels(data, max_pixels)
    return kind


def _check_pixels(data: bytes, max_pixels: int) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
    except Image.DecompressionBombError:
        raise ImageTooLargeError(
            "The image declares more pixels than the decompression-bomb guard allows."
        ) from None
    except Exception:
        raise InvalidImageError("The upload is not a readable image (truncated or corrupt header).") from None
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"The image is too large: {width}x{height} = {width * height:,} pixels exceeds the limit of "
            f"{max_pixels:,} pixels. Downscale it and try again."
        )


def check_params(
    fmt: str | None, focal_px: float | None, focal_mm: float | None, default_fmt: str
) -> PredictParams:
    """Validate format and focal overrides with the core package's rules."""
    fmt = (fmt or default_fmt).strip().lower()
    if fmt not in known_formats():
        raise InvalidParameterError(
            f"Unknown output format {fmt!r}; choose one of {', '.join(known_formats())}."
        )
    px, mm = validate_focal_overrides(focal_px, focal_mm)
    return PredictParams(fmt, px, mm)
