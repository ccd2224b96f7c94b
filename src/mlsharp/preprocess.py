"""Turn decoded RGB images into the exact tensors the SHARP network expects.

Bit-compatibility with the reference (``architecture.md`` §1.3, §6 items 1-2) hinges on small
details kept here on purpose: uint8 -> float32 then a true division by 255.0, channels-first,
bilinear resize with ``align_corners=True`` and *no* antialiasing (aspect ratio is not kept; the
stretch is undone in unprojection), and ``disparity_factor = focal_px / width_px`` computed in
float64 before the float32 cast. Torch-only, so it runs on whichever device it is given.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from mlsharp.errors import InvalidParameterError

if TYPE_CHECKING:
    from mlsharp.imaging import DecodedImage


def _check_rgb(rgb: np.ndarray) -> None:
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8:
        kind = rgb.dtype if isinstance(rgb, np.ndarray) else type(rgb).__name__
        raise InvalidParameterError(f"Expected a uint8 numpy array, got {kind}.")
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise InvalidParameterError(f"Expected an (H, W, 3) RGB array, got shape {rgb.shape}.")


def _check_working_size(working_size_px: int) -> None:
    integral = isinstance(working_size_px, numbers.Integral) and not isinstance(working_size_px, bool)
    if not integral or working_size_px < 1:
        raise InvalidParameterError(f"working_size_px must be a positive integer, got {working_size_px!r}.")


def disparity_factor(focal_px: float, width_px: int) -> float:
    """``focal_px / width_px`` in float64 (the network's only notion of the field of view)."""
    focal = float(focal_px)
    if not math.isfinite(focal) or focal <= 0.0:
        raise InvalidParameterError(f"focal_px must be a positive finite number, got {focal_px!r}.")
    if width_px < 1:
        raise InvalidParameterError(f"width_px must be positive, got {width_px!r}.")
    return focal / float(width_px)


def to_network_input(
    rgb: np.ndarray,
    focal_px: float,
    working_size_px: int,
    *,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(image[1, 3, S, S] float32 in [0, 1], disparity_factor[1] float32)``.

    The uint8 pixels travel to ``device`` first (4x less traffic than float32); the division
    and resize then run there.
    """
    _check_rgb(rgb)
    _check_working_size(working_size_px)
    factor = disparity_factor(focal_px, rgb.shape[1])
    pixels = torch.from_numpy(np.require(rgb, np.uint8, ["C_CONTIGUOUS", "WRITEABLE"])).to(device=device)
    image = pixels.to(torch.float32).permute(2, 0, 1).unsqueeze(0) / 255.0
    size_px = int(working_size_px)
    image = F.interpolate(
        image,
        size=(size_px, size_px),
        mode="bilinear",
        align_corners=True,
        antialias=False,
    )
    factor_tensor = torch.tensor([factor], dtype=torch.float32, device=image.device)
    return image.contiguous(), factor_tensor


def batch_network_inputs(
    images: Sequence[DecodedImage],
    working_size_px: int,
    *,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack several decoded images into ``(image[B, 3, S, S], disparity_factor[B])``.

    Each item is resized on its own, so mixed sizes and aspect ratios batch fine.
    """
    if len(images) == 0:
        raise InvalidParameterError("Cannot build a batch from zero images.")
    pairs = [to_network_input(item.rgb, item.focal_px, working_size_px, device=device) for item in images]
    return torch.cat([p[0] for p in pairs], dim=0), torch.cat([p[1] for p in pairs], dim=0)
