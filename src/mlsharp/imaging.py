"""Decode untrusted image bytes into 8-bit RGB plus a focal length, failing with typed errors.

Uploads are hostile until proven otherwise: the pixel count is checked from the header before
any pixel is decoded, only a fixed set of raster formats is accepted, and every Pillow/libheif
failure becomes :class:`InvalidImageError` or :class:`ImageTooLargeError` with a message a user
can act on (raw exception text is kept only as the ``__cause__`` for logs).

Deviations from the reference loader (``architecture.md`` §1.1), all deliberate:
- palette, CMYK, 16-bit and float images are converted to 8-bit RGB (the reference feeds raw
  palette indices / CMYK bytes to the network); 16-bit samples keep their high byte (v >> 8);
- mirrored EXIF orientations 2, 4, 5, 7 are applied (the reference ignores them);
- alpha is dropped keeping the stored RGB values, exactly like the reference (no compositing).
Like the reference, embedded ICC profiles are not applied: pixels are taken as sRGB.
"""

from __future__ import annotations

import io
import logging
import numbers
import os
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import ExifTags, Image, TiffTags, UnidentifiedImageError

from mlsharp.errors import ImageTooLargeError, InvalidImageError, InvalidParameterError, MLSharpError
from mlsharp.focal import resolve_focal, validate_focal_overrides
from mlsharp.pixels import scale_16bit, scale_float

logger = logging.getLogger(__name__)

#: default pixel budget (50 MP): above every phone camera, far below a decompression bomb
DEFAULT_MAX_PIXELS: int = 50_000_000

#: Pillow format ids we are willing to parse; everything else (EPS, PSD, ICO...) is refused
ALLOWED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "HEIF", "AVIF", "TIFF", "BMP", "GIF")
_FORMAT_ALIASES = {"MPO": "JPEG"}  # multi-picture JPEGs from cameras are still JPEGs to users
_SUPPORTED_TEXT = "JPEG, PNG, WebP, HEIC/HEIF, AVIF, TIFF, BMP or GIF"

_EXIF_SUB_IFD = 0x8769
_ORIENTATION_TAG = 0x0112

_heif_lock = threading.Lock()
_heif_registered = False


@dataclass(frozen=True, eq=False)
class DecodedImage:
    """An upright 8-bit RGB image with the focal length the network will be told."""

    rgb: np.ndarray  # (height_px, width_px, 3) uint8, C-contiguous, owned and writable
    width_px: int
    height_px: int
    focal_px: float
    focal_source: str
    source_format: str
    exif_orientation: int = 1  # the EXIF orientation that was applied (1 = none)


def _register_heif_once() -> None:
    """Teach Pillow HEIC/HEIF on first use (import cost and global plugin state only if needed)."""
    global _heif_registered
    if _heif_registered:
        return
    with _heif_lock:
        if _heif_registered:
            return
        try:
            import pillow_heif

            pillow_heif.register_heif_opener()
        except Exception:  # missing or broken wheel: HEIC simply stays unsupported
            logger.warning("pillow-heif unavailable; HEIC/HEIF uploads will be rejected", exc_info=True)
        _heif_registered = True


# ---------------------------------------------------------------------------------------------
# Human-readable failure messages


def _sniff_format(data: bytes) -> str | None:
    """Guess the container from magic bytes, only to word error messages well."""
    head = data[:32]
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "WebP"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "TIFF"
    if head.startswith(b"BM"):
        return "BMP"
    if head[4:8] == b"ftyp":
        return "AVIF" if head[8:12] in (b"avif", b"avis") else "HEIF"
    return None


def _declared_size(data: bytes, sniffed: str) -> tuple[int, int] | None:
    """Width and height from a PNG IHDR or GIF screen descriptor, which Pillow rejects when 0."""
    if sniffed == "PNG" and len(data) >= 24 and data[12:16] == b"IHDR":
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if sniffed == "GIF" and len(data) >= 10:
        return int.from_bytes(data[6:8], "little"), int.from_bytes(data[8:10], "little")
    return None


#: how decode_image names its data by default: the gateway's 4xx messages speak of "the upload"
UPLOAD = "The upload"


def _send(subject: str) -> str:
    """What the person should do with a supported file: send it (upload) or use it (local file)."""
    return "send" if subject == UPLOAD else "use"


def _describe_non_image(data: bytes, subject: str = UPLOAD) -> str:
    """Explain what bytes Pillow could not identify look like."""
    sniffed = _sniff_format(data)
    if sniffed is not None:
        size = _declared_size(data, sniffed)
        if size is not None and 0 in size:
            return f"The image has no pixels ({size[0]}x{size[1]} declared in its {sniffed} header)."
        return f"{subject} is not a readable image (truncated or corrupt {sniffed} data)."
    head = data[:512].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or b"<html" in head:
        return f"{subject} is an HTML document, not an image (did you save a web page instead of the photo?)."
    if head.startswith((b"<?xml", b"<svg")) or b"<svg" in head:
        return f"{subject} is an XML/SVG document, not a raster image; {_send(subject)} {_SUPPORTED_TEXT}."
    if head.startswith((b"{", b"[")):
        return f"{subject} looks like JSON text, not an image."
    try:
        data[:4096].decode("utf-8")
    except UnicodeDecodeError:
        return f"{subject} is not a readable image; supported formats are {_SUPPORTED_TEXT}."
    return f"{subject} is plain text, not an image."


def _decode_failure(exc: BaseException, fmt: str, subject: str = UPLOAD) -> InvalidImageError:
    text = str(exc).lower()
    if isinstance(exc, EOFError) or "truncated" in text or "end of file" in text or "eof" in text:
        return InvalidImageError(f"{subject} is not a readable image (truncated {fmt} data).")
    return InvalidImageError(f"{subject} is not a readable image (corrupt {fmt} data).")


def _too_large(width_px: int, height_px: int, max_pixels: int) -> ImageTooLargeError:
    return ImageTooLargeError(
        f"The image is too large: {width_px}x{height_px} = {width_px * height_px:,} pixels exceeds "
        f"the limit of {max_pixels:,} pixels. Downscale it and try again."
    )


# ---------------------------------------------------------------------------------------------
# EXIF


def gather_exif(image: Image.Image) -> tuple[dict[str, Any], int]:
    """Return (flat EXIF name->value dict, raw orientation) like the reference.

    Exif sub-IFD tags are named via ``ExifTags.TAGS``, IFD0 tags via ``TiffTags.TAGS_V2``; on a
    name clash IFD0 wins. Broken EXIF never fails the decode: it is treated as absent.
    """
    try:
        exif = image.getexif()
        ifd0 = dict(exif.items())
        sub_ifd = dict(exif.get_ifd(_EXIF_SUB_IFD).items())
    except Exception:  # malformed EXIF blocks are common; the pixels may still be fine
        logger.debug("ignoring unreadable EXIF", exc_info=True)
        return {}, 1
    named: dict[str, Any] = {}
    for tag, value in sub_ifd.items():
        name = ExifTags.TAGS.get(tag)
        if name is not None:
            named[name] = value
    for tag, value in ifd0.items():
        info = TiffTags.TAGS_V2.get(tag)
        if info is not None:
            named[info.name] = value
    return named, _orientation_value(ifd0.get(_ORIENTATION_TAG))


def _orientation_value(value: Any) -> int:
    if isinstance(value, tuple | list) and value:
        value = value[0]
    try:
        orientation = int(value)
    except (TypeError, ValueError, OverflowError):
        return 1
    if orientation not in range(1, 9):
        logger.debug("ignoring invalid EXIF orientation %r", value)
        return 1
    return orientation


def apply_orientation(rgb: np.ndarray, orientation: int) -> np.ndarray:
    """Turn the stored (H, W, C) array upright per EXIF orientation 1-8 (TIFF 6.0 semantics).

    Same result as ``PIL.ImageOps.exif_transpose``; 5-8 swap width and height.
    """
    if orientation == 2:  # mirrored left-right
        out = rgb[:, ::-1]
    elif orientation == 3:  # rotated 180
        out = rgb[::-1, ::-1]
    elif orientation == 4:  # mirrored top-bottom
        out = rgb[::-1, :]
    elif orientation == 5:  # transposed about the main diagonal
        out = rgb.transpose(1, 0, 2)
    elif orientation == 6:  # stored rotated 90 CCW -> rotate 90 clockwise
        out = np.rot90(rgb, k=-1)
    elif orientation == 7:  # transposed about the anti-diagonal
        out = rgb.transpose(1, 0, 2)[::-1, ::-1]
    elif orientation == 8:  # stored rotated 90 CW -> rotate 90 counter-clockwise
        out = np.rot90(rgb, k=1)
    else:
        out = rgb
    return np.ascontiguousarray(out)


# ---------------------------------------------------------------------------------------------
# Pixel conversion


def to_rgb8(image: Image.Image) -> np.ndarray:
    """Convert any decoded Pillow mode to a (H, W, 3) uint8 array, dropping alpha."""
    mode = image.mode
    if mode == "RGB":
        return np.asarray(image, dtype=np.uint8)
    if mode.startswith("I;16") or mode in ("I", "F"):
        plane = np.asarray(image)
        if plane.ndim == 3:  # defensive: some decoders give (H, W, 1)
            plane = plane[..., 0]
        gray = scale_float(plane) if mode == "F" else scale_16bit(plane)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode in ("P", "PA"):
        # Through RGBA so that palette transparency is honoured, then keep the RGB values.
        return np.asarray(image.convert("RGBA"), dtype=np.uint8)[:, :, :3]
    if mode in ("RGBA", "RGBX", "RGBa"):
        return np.asarray(image, dtype=np.uint8)[:, :, :3]
    if mode in ("1", "L", "LA", "La"):
        gray = np.asarray(image.convert("L"), dtype=np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    # CMYK (R = (255-C)(255-K)/255 ...), YCbCr and other Pillow-convertible modes.
    try:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except ValueError as exc:
        raise InvalidImageError(f"Images with colour mode {mode} are not supported.") from exc


# ---------------------------------------------------------------------------------------------
# Public entry points


def _is_integer(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_limits(data: bytes, max_pixels: int, max_bytes: int | None, subject: str = UPLOAD) -> None:
    if not _is_integer(max_pixels) or max_pixels <= 0:
        raise InvalidParameterError(f"max_pixels must be a positive integer, got {max_pixels!r}.")
    if max_bytes is not None and (not _is_integer(max_bytes) or max_bytes < 0):
        raise InvalidParameterError(f"max_bytes must be a non-negative integer or None, got {max_bytes!r}.")
    if len(data) == 0:
        raise InvalidImageError(f"{subject} is empty (0 bytes); {_send(subject)} an image file.")
    if max_bytes is not None and len(data) > max_bytes:
        raise ImageTooLargeError(
            f"{subject} is too large: {len(data):,} bytes exceeds the limit of {max_bytes:,} bytes."
        )


def _open_checked(data: bytes, max_pixels: int, subject: str = UPLOAD) -> Image.Image:
    """Identify the format and check dimensions from the header; no pixel data is decoded."""
    _register_heif_once()
    try:
        image = Image.open(io.BytesIO(data), formats=list(ALLOWED_FORMATS))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(
            "The image header declares more pixels than the decompression-bomb guard allows; "
            "it is too large to decode."
        ) from exc
    except UnidentifiedImageError as exc:
        raise InvalidImageError(_describe_non_image(data, subject)) from exc
    except Exception as exc:  # plugin errors while reading the header
        raise _decode_failure(exc, _sniff_format(data) or "image", subject) from exc
    width_px, height_px = image.size
    if width_px <= 0 or height_px <= 0 or width_px * height_px > max_pixels:
        image.close()
        if width_px <= 0 or height_px <= 0:
            raise InvalidImageError(f"The image has no pixels ({width_px}x{height_px}).")
        raise _too_large(width_px, height_px, max_pixels)
    return image


def decode_image(
    data: bytes | bytearray | memoryview,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int | None = None,
    focal_px: float | None = None,
    focal_mm: float | None = None,
    auto_orient: bool = True,
    subject: str = UPLOAD,
) -> DecodedImage:
    """Decode an uploaded image file into upright 8-bit RGB and its focal length in pixels.

    Animated/multi-page files yield their first frame. ``focal_px`` / ``focal_mm`` (35 mm
    equivalent) override EXIF and are mutually exclusive. ``subject`` names the data in error
    messages: the gateway's clients sent an upload, the CLI's user named an image file.

    Raises:
        InvalidImageError: empty, truncated, corrupt, non-image or unsupported data.
        ImageTooLargeError: more than ``max_bytes`` bytes or ``max_pixels`` pixels.
        InvalidParameterError: bad focal override or limit.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InvalidParameterError(f"Image data must be bytes, got {type(data).__name__}.")
    data = bytes(data)
    _check_limits(data, max_pixels, max_bytes, subject)
    validate_focal_overrides(focal_px, focal_mm)  # fail fast, before spending time decoding

    image = _open_checked(data, max_pixels, subject)
    fmt = _FORMAT_ALIASES.get(image.format or "", image.format or "image")
    try:
        with image:
            image.load()
            exif, orientation = gather_exif(image)
            rgb = to_rgb8(image)
    except MLSharpError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError("The image is too large to decode (decompression-bomb guard).") from exc
    except MemoryError as exc:
        raise ImageTooLargeError("The image is too large to decode in the available memory.") from exc
    except Exception as exc:  # OSError, ValueError, SyntaxError, struct.error, libheif errors...
        raise _decode_failure(exc, fmt, subject) from exc

    if not auto_orient:
        orientation = 1
    # Own, writable, C-contiguous: Pillow's array view is read-only, which torch.from_numpy warns on.
    rgb = np.require(apply_orientation(rgb, orientation), np.uint8, ["C_CONTIGUOUS", "WRITEABLE", "OWNDATA"])
    height_px, width_px = rgb.shape[:2]
    focal = resolve_focal(exif, width_px, height_px, focal_px=focal_px, focal_mm=focal_mm)
    return DecodedImage(
        rgb=rgb,
        width_px=int(width_px),
        height_px=int(height_px),
        focal_px=focal.focal_px,
        focal_source=focal.focal_source,
        source_format=fmt,
        exif_orientation=orientation,
    )


def load_image(path: str | os.PathLike[str], **kwargs: Any) -> DecodedImage:
    """Read a file and :func:`decode_image` it; the byte limit is checked before reading it all."""
    max_bytes = kwargs.get("max_bytes")
    try:
        if max_bytes is not None and os.path.getsize(path) > max_bytes:
            raise ImageTooLargeError(
                f"The file is too large: {os.path.getsize(path):,} bytes exceeds the limit of "
                f"{max_bytes:,} bytes."
            )
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise InvalidImageError(f"Cannot read image file {os.fspath(path)!r}: {exc.strerror}.") from exc
    kwargs.setdefault("subject", f"The image file {os.fspath(path)!r}")
    return decode_image(data, **kwargs)
