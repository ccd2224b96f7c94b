"""A deterministic photo-like JPEG for numeric checks when no ``--image`` is given.

Why not random noise: noise drives the depth network into extreme disparities where float32
reassociation differences are largest and least representative; a smooth scene with sky, horizon,
textured ground and shaded objects exercises the network like a photo does, while staying
reproducible (seeded) and free of licensing questions.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

_EXIF_IFD = 0x8769
_FOCAL_35MM = 0xA405


def photo_like_rgb(width: int = 640, height: int = 480, seed: int = 0) -> np.ndarray:
    """``(height, width, 3)`` uint8: sky gradient, sun, hills, perspective ground, two shaded balls."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    u, v = x / width, y / height
    horizon = 0.45 + 0.05 * np.sin(6.0 * u + 1.0) + 0.03 * np.sin(17.0 * u)
    sky = np.stack([0.35 + 0.3 * v, 0.55 + 0.25 * v, 0.95 - 0.1 * v], axis=-1)
    sun = np.exp(-(((u - 0.75) ** 2 + (v - 0.18) ** 2) / 0.002))[..., None]
    sky = sky + sun * np.array([0.6, 0.5, 0.2])
    depth = np.clip(v - horizon, 1e-3, None)
    stripes = 0.5 + 0.5 * np.sin((u - 0.5) / depth * 6.0) * np.sin(1.0 / depth * 1.5)
    ground = np.stack([0.25 + 0.2 * stripes, 0.45 + 0.15 * stripes, 0.15 + 0.05 * stripes], axis=-1)
    ground *= (0.6 + 0.4 * np.clip(v - horizon, 0, 1) / (1 - horizon.min()))[..., None]
    img = np.where((v < horizon)[..., None], sky, ground)
    for cx, cy, r, color in ((0.3, 0.68, 0.12, (0.8, 0.2, 0.15)), (0.62, 0.6, 0.07, (0.2, 0.3, 0.85))):
        dx, dy = (u - cx) * width / height, v - cy
        inside = dx**2 + dy**2 < r**2
        nz = np.sqrt(np.clip(1 - (dx**2 + dy**2) / r**2, 0, 1))
        shade = np.clip(0.25 + 0.75 * (nz * 0.7 - dx / r * 0.5 - dy / r * 0.5), 0.1, 1.0)
        img = np.where(inside[..., None], shade[..., None] * np.array(color), img)
    img = img + rng.normal(0.0, 0.015, img.shape)  # sensor noise
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def photo_like_jpeg(width: int = 640, height: int = 480, seed: int = 0, focal_35mm: int | None = 26) -> bytes:
    """The same picture as a JPEG file, with a 35 mm-equivalent focal length in EXIF (phone-like)."""
    image = Image.fromarray(photo_like_rgb(width, height, seed))
    exif = Image.Exif()
    if focal_35mm is not None:
        exif.get_ifd(_EXIF_IFD)[_FOCAL_35MM] = int(focal_35mm)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=92, exif=exif.tobytes())
    return buffer.getvalue()
