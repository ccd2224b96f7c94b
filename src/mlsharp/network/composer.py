"""Composer: apply the predicted deltas to the base Gaussians and flatten them.

Every constant is a Python float fixed at import (no `.item()` in forward) so traced and
exported graphs contain plain constants. Formulas and evaluation order: architecture.md §4.7.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mlsharp.network.initializer import BaseGaussians

# delta factors (reference `DeltaFactor` defaults)
DELTA_XY = 0.001
DELTA_Z = 0.001
DELTA_COLOR = 0.1
DELTA_OPACITY = 1.0
DELTA_SCALE = 1.0
DELTA_QUATERNION = 1.0

MAX_SCALE = 10.0
MIN_SCALE = 0.0
#: slope (M - m) / ((1 - m)(M - 1)) = 10/9, so the activation has derivative 1 at delta 0
SCALE_ACT_A = 1.1111111111111112
#: logit((1 - m) / (M - m)) = logit(0.1) evaluated in float32 (not the float64 -2.1972245773362196)
SCALE_ACT_B = -2.1972246170043945

DEPTH_EPS = 1e-3  # z = 1 / (rho + 1e-3)
INV_SOFTPLUS_MIN = 1e-6
COLOR_MIN, COLOR_MAX = 0.01, 0.99
BASE_OPACITY = 0.5  # min(1 / L, 0.5) for L = 2
BASE_OPACITY_LOGIT = math.log(BASE_OPACITY / (1.0 - BASE_OPACITY))  # exactly 0.0


def logit(t: torch.Tensor) -> torch.Tensor:
    """ln(t / (1 - t)), literally (as the reference evaluates it)."""
    return torch.log(t / (1.0 - t))


def inverse_softplus(t: torch.Tensor) -> torch.Tensor:
    """ln(e^t - 1) via the sigmoid ratio, with t clamped to >= 1e-6 (reference formula)."""
    t = torch.clamp(t, min=INV_SOFTPLUS_MIN)
    s = torch.sigmoid(-t)
    return t + torch.log(1.0 - s / (1.0 - s))


def srgb_to_linear(v: torch.Tensor) -> torch.Tensor:
    """sRGB transfer function inverse; the power branch never sees linear-branch inputs."""
    is_linear = v <= 0.04045
    power_in = torch.where(is_linear, torch.full_like(v, 0.04045), v)
    return torch.where(is_linear, v / 12.92, ((power_in + 0.055) / 1.055) ** 2.4)


def scale_activation(delta: torch.Tensor) -> torch.Tensor:
    """Multiplicative scale factor in (0, 10); exactly ~1 at delta 0."""
    return (MAX_SCALE - MIN_SCALE) * torch.sigmoid(SCALE_ACT_A * delta + SCALE_ACT_B) + MIN_SCALE


def _flatten(x: torch.Tensor) -> torch.Tensor:
    """(B, C, L, h, w) -> (B, L*h*w, C); Gaussian index = layer, row, column."""
    return x.permute(0, 2, 3, 4, 1).flatten(1, 3)


class GaussianComposer(nn.Module):
    """delta (B, 14, L, h, w) + BaseGaussians -> the five raw output tensors."""

    def forward(
        self, delta: torch.Tensor, base: BaseGaussians
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        x = base.x_ndc + DELTA_XY * delta[:, 0:1]  # (B, 1, L, h, w)
        y = base.y_ndc + DELTA_XY * delta[:, 1:2]
        rho = F.softplus(inverse_softplus(base.surface_disparity) + DELTA_Z * delta[:, 2:3])
        z = 1.0 / (rho + DEPTH_EPS)
        means = torch.cat([z * x, z * y, z], dim=1)  # (B, 3, L, h, w), scaled NDC

        base_scales = (base.scales * base.surface_disparity) * z  # follows the predicted depth
        scales = base_scales * scale_activation(DELTA_SCALE * delta[:, 3:6])  # (B, 3, L, h, w)

        quaternions = torch.cat(
            [1.0 + DELTA_QUATERNION * delta[:, 6:7], DELTA_QUATERNION * delta[:, 7:10]], dim=1
        )  # (B, 4, L, h, w) wxyz, unnormalised

        base_colors = torch.clamp(base.colors, COLOR_MIN, COLOR_MAX)
        colors_srgb = torch.sigmoid(logit(base_colors) + DELTA_COLOR * delta[:, 10:13])
        colors = srgb_to_linear(colors_srgb)  # (B, 3, L, h, w) linear RGB

        opacities = torch.sigmoid(BASE_OPACITY_LOGIT + DELTA_OPACITY * delta[:, 13])  # (B, L, h, w)

        g = base.global_scale.reshape(-1, 1, 1)  # (B, 1, 1)
        return (
            g * _flatten(means),
            g * _flatten(scales),
            _flatten(quaternions),
            _flatten(colors),
            opacities.flatten(1),
        )
