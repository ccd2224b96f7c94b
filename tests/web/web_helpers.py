"""Helpers for the browser tests: a photo-like test image and pixel counting on screenshots."""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

# The viewer's clear colour (gateway/static/viewer.js BACKGROUND = 0x14181f).
VIEWER_BACKGROUND = (0x14, 0x18, 0x1F)


def photo_like_jpeg(width: int = 640, height: int = 480, *, seed: int = 7) -> bytes:
    """A JPEG that looks like a photo to a decoder: sky and ground gradients, a sun, hills, a house
    and a tree, with some blur and texture, so JPEG has real work to do."""
    img = Image.new("RGB", (width, height))
    px = img.load()
    horizon = int(height * 0.55)
    for y in range(height):
        for x in range(width):
            if y < horizon:
                t = y / horizon
                px[x, y] = (int(90 + 120 * t), int(150 + 70 * t), int(235 - 25 * t))
            else:
                t = (y - horizon) / (height - horizon)
                n = int(12 * math.sin(x * 0.21 + seed) * math.cos(y * 0.17))
                px[x, y] = (int(70 + 40 * t) + n, int(140 - 50 * t) + n, int(50 + 10 * t))
    draw = ImageDraw.Draw(img)
    draw.ellipse((width * 0.72, height * 0.08, width * 0.86, height * 0.27), fill=(255, 236, 150))
    draw.polygon(
        [
            (0, horizon),
            (width * 0.25, horizon * 0.62),
            (width * 0.5, horizon),
            (width * 0.8, horizon * 0.7),
            (width, horizon),
        ],
        fill=(70, 110, 80),
    )
    hx, hy = int(width * 0.18), int(height * 0.6)
    draw.rectangle((hx, hy, hx + width * 0.2, hy + height * 0.22), fill=(200, 170, 130), outline=(90, 60, 40))
    draw.polygon(
        [(hx - 10, hy), (hx + width * 0.1, hy - height * 0.12), (hx + width * 0.2 + 10, hy)],
        fill=(150, 40, 35),
    )
    draw.rectangle(
        (hx + width * 0.08, hy + height * 0.1, hx + width * 0.12, hy + height * 0.22), fill=(80, 50, 30)
    )
    tx, ty = int(width * 0.68), int(height * 0.62)
    draw.rectangle((tx, ty, tx + 14, ty + height * 0.2), fill=(100, 70, 40))
    draw.ellipse((tx - 45, ty - 80, tx + 60, ty + 30), fill=(40, 120, 50))
    img = img.filter(ImageFilter.GaussianBlur(0.8))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=90)
    return out.getvalue()


def corrupt_jpeg() -> bytes:
    """Starts like a JPEG (SOI + APP0), then garbage: sniffing says JPEG, decoding fails."""
    return b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01" + bytes(range(256)) * 8


def count_non_background(png: bytes, background=VIEWER_BACKGROUND, tolerance: int = 24) -> tuple[int, int]:
    """(pixels that differ from the background by more than `tolerance` in any channel, all pixels)."""
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)
    diff = np.abs(rgb - np.asarray(background, dtype=np.int16)).max(axis=-1)
    return int((diff > tolerance).sum()), int(diff.size)


def mean_colour(png: bytes, box_fraction: tuple[float, float, float, float]) -> tuple[float, float, float]:
    """Mean RGB inside a box given as fractions (left, top, right, bottom) of the image."""
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float64)
    h, w = rgb.shape[:2]
    left, top, right, bottom = box_fraction
    crop = rgb[int(top * h) : int(bottom * h), int(left * w) : int(right * w)]
    r, g, b = crop.reshape(-1, 3).mean(axis=0)
    return float(r), float(g), float(b)
