"""Base ("initial") Gaussians from the predicted depth, before any learned delta.

One Gaussian per layer per stride x stride cell: at the nearest surface of the cell (max-pooled
disparity), at the cell centre in NDC, sized to cover the cell, coloured with the cell mean,
half opaque. Depth is normalised per image so that the nearest point is at ~1; the removed
global scale is returned and re-applied by the composer. Formulas and their evaluation order
follow architecture.md §4.4-4.6 (they matter for bit-compatibility).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from mlsharp.presets import SharpConfig

DEPTH_MIN_EPS = 1e-6
MAX_NORMALIZED_DEPTH = 100.0
#: the initializer's own disparity constant (not the focal-derived network input)
FEATURE_DISPARITY_FACTOR = 1.0
SCALE_FACTOR = 1.0


class BaseGaussians(NamedTuple):
    """Base values on the (h, w) = (S/stride, S/stride) grid; 5-D tensors are (B, C, L, h, w)."""

    x_ndc: torch.Tensor  # (1, 1, 1, 1, w)
    y_ndc: torch.Tensor  # (1, 1, 1, h, 1)
    surface_disparity: torch.Tensor  # (B, 1, L, h, w), in [0.01, ~1]
    scales: torch.Tensor  # (B, 1, L, h, w)
    colors: torch.Tensor  # (B, 3, L, h, w), sRGB-encoded in [0, 1]
    global_scale: torch.Tensor  # (B,)
    feature_input: torch.Tensor  # (B, 3 + L, S, S) in [-1, 1]


class MultiLayerInitializer(nn.Module):
    """Parameter-free: (image, metric depth) -> BaseGaussians."""

    def __init__(self, config: SharpConfig) -> None:
        super().__init__()
        self.stride = config.stride
        self.num_layers = config.num_layers
        self.size_px = config.working_size_px
        # sigma0 = (1 / D) * 2 * scale_factor * stride / S  (= (1/D) / 384 at 1536 px)
        self.scale_per_disparity = 2.0 * SCALE_FACTOR * self.stride / self.size_px

    def _ndc_centres(self, device: torch.device) -> torch.Tensor:
        """Cell-centre NDC coordinates (h,): 2 * (1, 3, ..., S-1) / S - 1 for stride 2."""
        half = self.stride / 2
        v = torch.arange(half, self.size_px, self.stride, dtype=torch.float32, device=device)
        return 2.0 * v / self.size_px - 1.0

    def forward(self, image: torch.Tensor, depth: torch.Tensor) -> BaseGaussians:
        """image (B, 3, S, S) in [0, 1]; depth (B, L, S, S) metric, > 0."""
        depth_min = depth.amin(dim=(1, 2, 3), keepdim=True)  # (B, 1, 1, 1), over both layers
        inv_scale = 1.0 / (depth_min + DEPTH_MIN_EPS)
        depth_norm = torch.clamp(depth * inv_scale, max=MAX_NORMALIZED_DEPTH)  # (B, L, S, S)
        global_scale = (1.0 / inv_scale).reshape(-1)  # (B,)

        disparity = 1.0 / depth_norm  # (B, L, S, S), by division (not a min-pool of depth)
        surface = F.max_pool2d(disparity, self.stride, self.stride).unsqueeze(1)  # (B, 1, L, h, w)
        scales = torch.ones_like(surface) / surface * self.scale_per_disparity

        centres = self._ndc_centres(image.device)
        n = centres.shape[0]
        x_ndc = centres.reshape(1, 1, 1, 1, n)
        y_ndc = centres.reshape(1, 1, 1, n, 1)

        cell_rgb = F.avg_pool2d(image, self.stride, self.stride)  # (B, 3, h, w)
        colors = cell_rgb.unsqueeze(2).expand(-1, -1, self.num_layers, -1, -1)  # (B, 3, L, h, w)

        feature_disparity = FEATURE_DISPARITY_FACTOR / depth_norm  # (B, L, S, S)
        feature_input = 2.0 * torch.cat([image, feature_disparity], dim=1) - 1.0

        return BaseGaussians(x_ndc, y_ndc, surface, scales, colors, global_scale, feature_input)
