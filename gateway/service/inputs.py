"""Checks on an upload before any inference: real image type, byte and pixel limits, parameters.

The type is sniffed from magic bytes (never from the file name or the declared content type);
the pixel count is read from the header only, so a decompression bomb is refused
before a single pixel is decoded, and before it costs a Triton round trip.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.errors import PayloadTooLarge, Unprocessable, UnsupportedMediaType
from gateway.formats import known_formats
from mlsharp.errors import InvalidImageError, InvalidParameterError
from mlsharp.focal import validate_focal_overrides
from mlsharp.imaging import _open_checked, _sniff_format  # the decoder's own header checks


@dataclass(frozen=True)
class PredictParams:
    """Validated request parameters; None means "not set". ``formats``: distinct, in request
    order, at least one; every one comes from the same network run."""

    formats: tuple[str, ...]
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


def parse_formats(values: list[str] | str | None, default: tuple[str, ...]) -> tuple[str, ...]:
    """``format`` may repeat and each value may be a comma-separated list; duplicates collapse."""
    if isinstance(values, str):
        values = [values]
    names = [part.strip().lower() for value in values or [] for part in value.split(",") if part.strip()]
    formats = tuple(dict.fromkeys(names)) or default
    unknown = [fmt for fmt in formats if fmt not in known_formats()]
    if unknown:
        raise InvalidParameterError(
            f"Unknown output format {unknown[0]!r}; choose one of {', '.join(known_formats())}."
        )
    return formats


def check_params(
    formats: list[str] | str | None,
    focal_px: float | None,
    focal_mm: float | None,
    default: tuple[str, ...],
) -> PredictParams:
    """Validate formats and focal overrides with the core package's rules."""
    px, mm = validate_focal_overrides(focal_px, focal_mm)
    return PredictParams(parse_formats(formats, default), px, mm)


_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


def check_flag(name: str, value: str | None) -> bool:
    """A yes/no form field: absent or empty is false; anything but true/false words is a 422
    that names the field and the value, instead of a validator's generic text."""
    word = (value or "").strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE or not word:
        return False
    raise Unprocessable(f"'{name}' must be true or false, got {value!r}.")
