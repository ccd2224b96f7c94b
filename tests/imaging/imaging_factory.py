"""Build test images in code: Pillow-encoded files plus hand-made PNG/TIFF/EXIF byte streams.

Hand-made streams let tests say things Pillow refuses to write: zero denominators, 16-bit RGB,
zero-width or 100000 x 100000 headers without pixel data.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Sequence

import numpy as np
from PIL import Image

# TIFF field types: (struct code per value, values per item)
SHORT, LONG, RATIONAL, SRATIONAL, ASCII, UNDEFINED = 3, 4, 5, 10, 2, 7
_TYPE_CODES = {SHORT: "H", LONG: "I", RATIONAL: "II", SRATIONAL: "ii"}

Entry = tuple[int, int, Sequence]  # (tag, field type, values; bytes for ASCII/UNDEFINED)

TAG_ORIENTATION = 0x0112
TAG_EXIF_IFD = 0x8769
TAG_FOCAL_LENGTH = 0x920A
TAG_FOCAL_35MM = 0xA405


def encode(image: Image.Image, fmt: str, **save_kwargs) -> bytes:
    """Encode with Pillow into bytes."""
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save_kwargs)
    return buffer.getvalue()


def asymmetric_rgb(height_px: int = 2, width_px: int = 3) -> np.ndarray:
    """Every pixel a different colour, so any flip or rotation is visible."""
    ys, xs = np.mgrid[0:height_px, 0:width_px]
    rgb = np.stack([40 + 60 * xs, 30 + 90 * ys, 200 - 20 * (xs + ys)], axis=-1)
    return rgb.astype(np.uint8)


def _pack_values(field_type: int, values: Sequence) -> bytes:
    if field_type in (ASCII, UNDEFINED):
        return bytes(values)
    code = _TYPE_CODES[field_type]
    flat: list[int] = []
    for value in values:
        flat.extend(value if isinstance(value, tuple) else (value,))
    return struct.pack("<" + code * len(values), *flat)


def _ifd_block(entries: Sequence[Entry], start: int) -> bytes:
    """One IFD at file offset ``start``, followed by its out-of-line values."""
    entries = sorted(entries, key=lambda e: e[0])
    overflow_at = start + 2 + 12 * len(entries) + 4
    table, overflow = b"", b""
    for tag, field_type, values in entries:
        payload = _pack_values(field_type, values)
        count = len(values) if field_type not in (ASCII, UNDEFINED) else len(payload)
        if len(payload) <= 4:
            inline = payload.ljust(4, b"\x00")
        else:
            inline = struct.pack("<I", overflow_at + len(overflow))
            overflow += payload + (b"\x00" if len(payload) % 2 else b"")
        table += struct.pack("<HHI", tag, field_type, count) + inline
    return struct.pack("<H", len(entries)) + table + struct.pack("<I", 0) + overflow


def tiff_bytes(ifd0: Sequence[Entry], exif_ifd: Sequence[Entry] | None = None, trailer: bytes = b"") -> bytes:
    """Little-endian TIFF: IFD0, optional Exif sub-IFD, then ``trailer`` (e.g. pixel data).

    Entries with tag 273 (StripOffsets) get the trailer's offset filled in.
    """
    header = b"II" + struct.pack("<HI", 42, 8)

    def layout(sub_at: int, data_at: int) -> tuple[bytes, bytes]:
        entries = [e for e in ifd0 if e[0] not in (TAG_EXIF_IFD, 273)]
        if exif_ifd is not None:
            entries.append((TAG_EXIF_IFD, LONG, [sub_at]))
        if any(e[0] == 273 for e in ifd0):
            entries.append((273, LONG, [data_at]))
        block0 = _ifd_block(entries, 8)
        block1 = _ifd_block(exif_ifd, sub_at) if exif_ifd is not None else b""
        return block0, block1

    block0, block1 = layout(0, 0)  # pointer values do not change block sizes
    sub_at = 8 + len(block0)
    block0, block1 = layout(sub_at, sub_at + len(block1))
    return header + block0 + block1 + trailer


def exif_block(ifd0: Sequence[Entry] = (), exif_ifd: Sequence[Entry] | None = None) -> bytes:
    """An APP1/eXIf payload: ``Exif\\0\\0`` + TIFF structure (Pillow's ``exif=`` format)."""
    return b"Exif\x00\x00" + tiff_bytes(ifd0, exif_ifd)


def focal_exif(
    *,
    focal_35mm: int | None = None,
    focal_mm: tuple[int, int] | None = None,
    orientation: int | None = None,
) -> bytes:
    """EXIF with the focal tags in the Exif sub-IFD (where cameras put them)."""
    sub: list[Entry] = []
    if focal_35mm is not None:
        sub.append((TAG_FOCAL_35MM, SHORT, [focal_35mm]))
    if focal_mm is not None:
        sub.append((TAG_FOCAL_LENGTH, RATIONAL, [focal_mm]))
    ifd0: list[Entry] = [(TAG_ORIENTATION, SHORT, [orientation])] if orientation is not None else []
    return exif_block(ifd0, sub)


def raw_tiff(pixels: np.ndarray, photometric: int, *, orientation: int | None = None) -> bytes:
    """Uncompressed single-strip TIFF from (H, W[, C]) uint8/uint16 samples (2=RGB, 5=CMYK, 1=gray)."""
    samples = pixels if pixels.ndim == 3 else pixels[:, :, None]
    height, width, channels = samples.shape
    bits = 8 * samples.dtype.itemsize
    data = samples.astype(samples.dtype.newbyteorder("<")).tobytes()
    entries: list[Entry] = [
        (256, LONG, [width]),
        (257, LONG, [height]),
        (258, SHORT, [bits] * channels),
        (259, SHORT, [1]),
        (262, SHORT, [photometric]),
        (273, LONG, [0]),
        (277, SHORT, [channels]),
        (278, LONG, [height]),
        (279, LONG, [len(data)]),
        (284, SHORT, [1]),
    ]
    if orientation is not None:
        entries.append((TAG_ORIENTATION, SHORT, [orientation]))
    return tiff_bytes(entries, trailer=data)


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def raw_png(
    width_px: int,
    height_px: int,
    *,
    bit_depth: int = 8,
    color_type: int = 2,
    rows: bytes | None = None,
) -> bytes:
    """A PNG whose IHDR says anything; ``rows`` are unfiltered scanlines (omitted: no IDAT)."""
    ihdr = struct.pack(">IIBBBBB", width_px, height_px, bit_depth, color_type, 0, 0, 0)
    body = _png_chunk(b"IHDR", ihdr)
    if rows is not None:
        row_len = len(rows) // max(height_px, 1)
        filtered = b"".join(b"\x00" + rows[i * row_len : (i + 1) * row_len] for i in range(height_px))
        body += _png_chunk(b"IDAT", zlib.compress(filtered))
    return b"\x89PNG\r\n\x1a\n" + body + _png_chunk(b"IEND", b"")


def png16(pixels: np.ndarray) -> bytes:
    """16-bit PNG (gray if 2-D, RGB if 3-D) from uint16 samples, big-endian as PNG requires."""
    height, width = pixels.shape[:2]
    color_type = 0 if pixels.ndim == 2 else 2
    rows = pixels.astype(">u2").tobytes()
    return raw_png(width, height, bit_depth=16, color_type=color_type, rows=rows)
