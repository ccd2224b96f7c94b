"""16-bit and float sample planes to 8 bits, a block of rows at a time.

Wide intermediates (int64 for the clip, float64 for NaN handling) are only ever a block of rows:
a 20 MP float TIFF once cost 625 MiB in image-sized float64 copies.
"""

from __future__ import annotations

import numpy as np

#: rows converted at a time: wide (int64/float64) temporaries stay a few MB, never image-sized
_ROWS_PER_BLOCK = 256


def _row_blocks(height: int) -> range:
    return range(0, height, _ROWS_PER_BLOCK)


def scale_16bit(values: np.ndarray) -> np.ndarray:
    """Map 0..65535 onto 0..255 by keeping the high byte (65535 -> 255, 257*k -> k).

    This is what Pillow itself does for 16-bit RGB(A) and LA files, so a 16-bit grey image and
    the same picture stored as 16-bit RGB give identical 8-bit values. Converted a block of rows
    at a time (a 50 MP plane once took an int64 copy of 400 MB, and another for the clip).
    """
    out = np.empty(values.shape, dtype=np.uint8)
    for top in _row_blocks(values.shape[0]):
        block = values[top : top + _ROWS_PER_BLOCK]
        if block.dtype.kind != "u":  # mode "I" is int32: negatives clip to 0
            block = np.clip(block, 0, 65535)
        out[top : top + _ROWS_PER_BLOCK] = block >> 8
    return out


def _finite_block(block: np.ndarray) -> np.ndarray:
    return np.nan_to_num(block.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)


def scale_float(values: np.ndarray) -> np.ndarray:
    """Float images: [0, 1] data is scaled to 0..255; anything brighter is read as 0..255 already.

    Two passes over blocks of rows (peak, then scale) in float64, so results are those of a
    whole-image float64 conversion without its image-sized copies."""
    height = values.shape[0]
    peak = 0.0
    for top in _row_blocks(height):
        finite = _finite_block(values[top : top + _ROWS_PER_BLOCK])
        if finite.size:
            peak = max(peak, float(finite.max()))
    scale = 255.0 if peak <= 1.0 else 1.0
    out = np.empty(values.shape, dtype=np.uint8)
    for top in _row_blocks(height):
        finite = _finite_block(values[top : top + _ROWS_PER_BLOCK])
        out[top : top + _ROWS_PER_BLOCK] = np.clip(np.rint(finite * scale), 0, 255)
    return out
