"""sRGB <-> linear transfer functions, evaluated with the reference's exact float32 ops.

Why exact ops: SHARP predicts linear RGB, and the reference PLY writer converts it back to sRGB
before the SH encoding; using the same torch expressions (same constants, same ``x ** (1 / 2.4)``)
makes our f_dc values bit-identical to the reference's for the same colours.
"""

from __future__ import annotations

import torch
from torch import Tensor

SRGB_TO_LINEAR_THRESHOLD = 0.04045
LINEAR_TO_SRGB_THRESHOLD = 0.0031308


def linear_to_srgb(linear: Tensor) -> Tensor:
    """Linear RGB -> sRGB (IEC 61966-2-1), elementwise, any shape, a new tensor.

    The power branch is evaluated for every element and the linear branch selected where it
    applies (values below the threshold, including negatives, whose NaN power is discarded):
    the plain piecewise formula, with the reference's float32 ops and rounding.
    """
    power = (linear ** (1 / 2.4)).mul_(1.055).sub_(0.055)  # same roundings as 1.055 * x**e - 0.055
    return torch.where(linear <= LINEAR_TO_SRGB_THRESHOLD, linear * 12.92, power)


def srgb_to_linear(srgb: Tensor) -> Tensor:
    """sRGB -> linear RGB, elementwise, any shape (inverse of :func:`linear_to_srgb`)."""
    low = srgb <= SRGB_TO_LINEAR_THRESHOLD
    safe = torch.where(low, SRGB_TO_LINEAR_THRESHOLD, srgb)
    return torch.where(low, srgb / 12.92, ((safe + 0.055) / 1.055) ** 2.4)
