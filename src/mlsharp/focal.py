"""Focal length in pixels: EXIF rules of the reference, plus explicit user overrides.

SHARP conditions its depth on ``disparity_factor = focal_px / width_px``, so a wrong focal length
silently scales the whole scene. The EXIF rules below restate the reference implementation
(``architecture.md`` §1.2) in float64; the only deliberate deviation is that malformed rationals
(zero denominator, NaN, inf, negative or zero values) fall through to the next rule instead of
producing NaN or a zero focal length.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mlsharp.errors import InvalidParameterError

#: diagonal of a 36 x 24 mm full-frame sensor, in millimetres (43.2666...)
FULL_FRAME_DIAGONAL_MM: float = math.sqrt(36.0**2 + 24.0**2)
#: 35 mm-equivalent focal length used when EXIF says nothing usable (reference default)
DEFAULT_FOCAL_35MM_MM: float = 30.0
#: physical focal lengths below this are assumed to come from a phone sensor
PHONE_FOCAL_THRESHOLD_MM: float = 10.0
#: the reference's crude phone crop factor applied below the threshold
PHONE_CROP_FACTOR: float = 8.4

#: accepted range of a 35 mm-equivalent override (fisheye-ish to extreme telephoto)
FOCAL_MM_MIN: float = 1.0
FOCAL_MM_MAX: float = 5000.0
#: accepted range of a pixel override: (0, FOCAL_PX_MAX]
FOCAL_PX_MAX: float = 1.0e6

#: the values ``FocalEstimate.focal_source`` can take
FOCAL_SOURCES: tuple[str, ...] = (
    "exif_35mm",
    "exif_physical_x8.4",
    "exif_physical",
    "default_30mm",
    "override_px",
    "override_mm",
)

_EXIF_35MM_NAMES: tuple[str, ...] = ("FocalLengthIn35mmFilm", "FocalLenIn35mmFilm")
_EXIF_PHYSICAL_NAME = "FocalLength"


@dataclass(frozen=True)
class FocalEstimate:
    """A focal length in pixels and where it came from (for metadata and debugging)."""

    focal_px: float
    focal_source: str
    #: the 35 mm-equivalent focal length used, or None for a pixel override
    focal_35mm_mm: float | None


def exif_number(value: Any) -> float | None:
    """Read an EXIF scalar or rational as a finite float; None when missing or malformed.

    Accepts Pillow's ``IFDRational``, ``(numerator, denominator)`` pairs, plain numbers and
    one-element sequences. A zero denominator, NaN or inf yields None (the reference yields NaN).
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, tuple | list):
        if len(value) == 2 and all(isinstance(v, int) for v in value):
            numerator, denominator = value
            return None if denominator == 0 else exif_number(numerator / denominator)
        return exif_number(value[0]) if len(value) == 1 else None
    denominator = getattr(value, "denominator", None)
    if denominator is not None and not isinstance(value, float) and denominator == 0:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError, ZeroDivisionError):
        return None
    return number if math.isfinite(number) else None


def focal_35mm_from_exif(exif: Mapping[str, Any]) -> tuple[float, str]:
    """Pick the 35 mm-equivalent focal length (mm) from EXIF names, reference rule order."""
    f35_mm: float | None = None
    for name in _EXIF_35MM_NAMES:
        if name in exif:
            f35_mm = exif_number(exif[name])
            break
    if f35_mm is not None and f35_mm >= 1.0:
        return f35_mm, "exif_35mm"

    physical_mm = exif_number(exif.get(_EXIF_PHYSICAL_NAME))
    if physical_mm is None or physical_mm <= 0.0:
        # The reference would use 0 (or NaN) here; a zero focal length is never meaningful.
        return DEFAULT_FOCAL_35MM_MM, "default_30mm"
    if physical_mm < PHONE_FOCAL_THRESHOLD_MM:
        return physical_mm * PHONE_CROP_FACTOR, "exif_physical_x8.4"
    return physical_mm, "exif_physical"


def focal_35mm_to_px(focal_35mm_mm: float, width_px: int, height_px: int) -> float:
    """Convert a 35 mm-equivalent focal length to pixels via the image diagonal (float64)."""
    diagonal_px = math.sqrt(float(width_px) ** 2 + float(height_px) ** 2)
    return float(focal_35mm_mm) * diagonal_px / FULL_FRAME_DIAGONAL_MM


def _as_override(value: Any, name: str) -> float:
    if isinstance(value, bool):
        raise InvalidParameterError(f"{name} must be a number, not a boolean.")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise InvalidParameterError(f"{name} must be a number, got {value!r}.") from None
    if not math.isfinite(number):
        raise InvalidParameterError(f"{name} must be a finite number, got {value!r}.")
    return number


def validate_focal_overrides(
    focal_px: float | None = None, focal_mm: float | None = None
) -> tuple[float | None, float | None]:
    """Check explicit overrides early (before any decoding) and return them as floats.

    ``None`` means "not set". Setting both is ambiguous and rejected rather than silently
    preferring one.
    """
    if focal_px is not None and focal_mm is not None:
        raise InvalidParameterError(
            "Give either focal_px (pixels) or focal_mm (35 mm-equivalent millimetres), not both."
        )
    px = None if focal_px is None else _as_override(focal_px, "focal_px")
    mm = None if focal_mm is None else _as_override(focal_mm, "focal_mm")
    if px is not None and not 0.0 < px <= FOCAL_PX_MAX:
        raise InvalidParameterError(
            f"focal_px must be greater than 0 and at most {FOCAL_PX_MAX:g} pixels, got {px:g}."
        )
    if mm is not None and not FOCAL_MM_MIN <= mm <= FOCAL_MM_MAX:
        raise InvalidParameterError(
            f"focal_mm (35 mm-equivalent) must be between {FOCAL_MM_MIN:g} and {FOCAL_MM_MAX:g} mm, "
            f"got {mm:g}."
        )
    return px, mm


def resolve_focal(
    exif: Mapping[str, Any],
    width_px: int,
    height_px: int,
    *,
    focal_px: float | None = None,
    focal_mm: float | None = None,
) -> FocalEstimate:
    """Focal length in pixels for an image of ``width_px`` x ``height_px`` (after orientation).

    An explicit override wins over EXIF; otherwise the reference EXIF rules apply.
    """
    if width_px <= 0 or height_px <= 0:
        raise InvalidParameterError(f"Image size must be positive, got {width_px}x{height_px} px.")
    px, mm = validate_focal_overrides(focal_px, focal_mm)
    if px is not None:
        return FocalEstimate(focal_px=px, focal_source="override_px", focal_35mm_mm=None)
    if mm is not None:
        return FocalEstimate(focal_35mm_to_px(mm, width_px, height_px), "override_mm", mm)
    f35_mm, source = focal_35mm_from_exif(exif)
    return FocalEstimate(focal_35mm_to_px(f35_mm, width_px, height_px), source, f35_mm)
