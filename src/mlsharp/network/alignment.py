"""Learned depth-alignment UNet: weights only.

The reference runs this module only when ground-truth depth is supplied (training), so at
inference it is an identity; it exists here purely so the official checkpoint loads strictly.
Its forward is deliberately not implemented.
"""

from __future__ import annotations

import itertools

from torch import nn

from mlsharp.network.blocks import PreActResidualBlock
from mlsharp.presets import AlignmentConfig


class UNetEncoder(nn.Module):
    """conv_in then `steps` x (avg-pool, two residual blocks doubling the width)."""

    def __init__(self, widths: list[int], num_groups: int) -> None:
        super().__init__()
        # registered before conv_in, matching the official state_dict order
        self.convs_down = nn.ModuleList(
            nn.Sequential(
                nn.AvgPool2d(2, 2),
                PreActResidualBlock(w_in, w_out, num_groups),
                PreActResidualBlock(w_out, w_out, num_groups),
            )
            for w_in, w_out in itertools.pairwise(widths)
        )
        self.conv_in = nn.Sequential(
            nn.Conv2d(2, widths[0], 3, 1, 1, bias=True), nn.GroupNorm(num_groups, widths[0]), nn.ReLU()
        )


class UNetDecoder(nn.Module):
    """`steps` x (upsample, two residual blocks); later steps take concatenated skips (2x width)."""

    def __init__(self, widths: list[int], num_groups: int) -> None:
        super().__init__()
        rev = widths[::-1]  # coarsest first
        ups = []
        for i, (w_in, w_out) in enumerate(itertools.pairwise(rev)):
            dim_in = w_in if i == 0 else 2 * w_in
            ups.append(
                nn.Sequential(
                    nn.Upsample(scale_factor=2, mode="nearest"),
                    PreActResidualBlock(dim_in, w_out, num_groups),
                    PreActResidualBlock(w_out, w_out, num_groups),
                )
            )
        self.convs_up = nn.ModuleList(ups)
        self.conv_out = nn.Sequential(
            nn.GroupNorm(num_groups, 2 * widths[0]),
            nn.ReLU(),
            nn.Conv2d(2 * widths[0], widths[0], 1, bias=True),
            nn.GroupNorm(num_groups, widths[0]),
            nn.ReLU(),
        )


class LearnedAlignment(nn.Module):
    """UNet predicting a log scale map from [mono disparity, GT disparity] (training only)."""

    def __init__(self, cfg: AlignmentConfig) -> None:
        super().__init__()
        widths = [cfg.base_width * 2**i for i in range(cfg.steps + 1)]
        self.encoder = UNetEncoder(widths, cfg.norm_num_groups)
        self.decoder = UNetDecoder(widths, cfg.norm_num_groups)
        self.conv_out = nn.Conv2d(widths[0], 1, 1, bias=True)
        assert self.conv_out.bias is not None  # built with bias=True
        nn.init.zeros_(self.conv_out.bias)  # exp activation: identity scale at start


class DepthAlignment(nn.Module):
    """Name-keeping wrapper (`depth_alignment.scale_map_estimator.*`); identity at inference."""

    def __init__(self, cfg: AlignmentConfig) -> None:
        super().__init__()
        self.scale_map_estimator = LearnedAlignment(cfg)
