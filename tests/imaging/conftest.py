"""Shared fixtures for the imaging tests: small asymmetric images and an optional HEIC encoder."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image

from tests.requires import missing, require_module


@pytest.fixture
def asym_rgb() -> np.ndarray:
    """A 2 x 3 image where every pixel differs, so flips and rotations show."""
    from imaging_factory import asymmetric_rgb

    return asymmetric_rgb(2, 3)


@pytest.fixture(scope="session")
def heic_encoder() -> Callable[[np.ndarray], bytes]:
    """Lossless HEIC encoder (identity matrix, 4:4:4); libheif must be able to encode."""
    pillow_heif = require_module("pillow_heif", "a core dependency: pip install pillow-heif")
    if not pillow_heif.libheif_info().get("HEIF"):
        missing("this libheif build has no HEVC encoder")

    def encode(rgb: np.ndarray) -> bytes:
        buffer = io.BytesIO()
        heif = pillow_heif.from_pillow(Image.fromarray(rgb))
        heif.save(buffer, quality=-1, chroma=444, matrix_coefficients=0)
        return buffer.getvalue()

    return encode
