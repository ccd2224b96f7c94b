"""Checks on an upload before any inference: real image type, byte and pixel limits, parameters.

The type is sniffed from magic bytes (the seed trusted the name and saved everything as
``input.jpg``); the pixel count is read from the header only, so a decompression bomb is refused
before a single pixel is decoded, and before it costs a Triton round trip.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.errors import PayloadTooLarge, UnsupportedMediaType
from gateway.formats import known_formats
from mlsharp.errors import InvalidImageError, InvalidParameterError
from mlsharp.focal import validate_focal_overrides
from mlsharp.imaging import _open_checked, _sniff_format  # the decoder's own header checks


@dataclass(frozen=True)
class PredictParams:
    """Validated request parameters; None means "not set"."""

    fmt: str
    focal_px: float | None = None
    focal_mm: float | None = None


def check_image(data: bytes, *, max_bytes: int, max_pixels: int) -> str:
    """Raise the typed error for an unusable upload; return the container format otherwise.

    Uses the core decoder's own magic-byte sniffing and header-only open, so the gateway accepts
    exactly what the decoder (local or in Triton) accepts, with the same messages.
    """
    if not data:
        raise InvalidImageError("The upload is empty (0 bytes); send an image file.")
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"The upload is {len(data):,} bytes; the limit is {max_bytes:,} bytes.")
    kind = _sniff_format(data)
    if kind is None:
        raise UnsupportedMediaType(
            "The upload is not a supported image (JPEG, PNG, WebP, HEIC/HEIF, AVIF, TIFF, BMP or GIF); "
            "its content was checked, not its name or content type."
        )
    with _open_checked(data, max_pixels):  # header only: no pixel is decoded here
        pass
    return kind


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
