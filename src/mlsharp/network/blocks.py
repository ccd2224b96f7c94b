"""Convolutional building blocks shared by the SHARP decoders.

Sequential indices mirror the official module tree (parameter-free layers still occupy an index),
because the state_dict keys depend on them.
"""

from __future__ import annotations

import torch
from torch import nn


class ResidualUnit(nn.Module):
    """DPT residual unit: x + conv(relu(conv(relu(x)))), no shortcut."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.residual = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, 1, 1, bias=True),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, 1, 1, bias=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = x + self.residual(x)
        return out


class FeatureFusionBlock(nn.Module):
    """Adds a skip feature (through resnet1), refines (resnet2), optionally upsamples 2x."""

    def __init__(self, channels: int, upsample: bool) -> None:
        super().__init__()
        self.resnet1 = ResidualUnit(channels)
        self.resnet2 = ResidualUnit(channels)
        # an empty Sequential is an identity without keys, as in the official tree
        self.deconv: nn.Module = (
            nn.ConvTranspose2d(channels, channels, 2, 2, 0, bias=False) if upsample else nn.Sequential()
        )
        self.out_conv = nn.Conv2d(channels, channels, 1, 1, 0, bias=True)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if skip is not None:
            x = x + self.resnet1(skip)
        x = self.resnet2(x)
        x = self.deconv(x)
        out: torch.Tensor = self.out_conv(x)
        return out


class MultiresConvDecoder(nn.Module):
    """DPT decoder: project five encodings to a common width and fuse coarse-to-fine."""

    def __init__(self, dims_encoder: tuple[int, ...], dim_decoder: int) -> None:
        super().__init__()
        convs: list[nn.Module] = [
            nn.Conv2d(dims_encoder[0], dim_decoder, 1, bias=False)
            if dims_encoder[0] != dim_decoder
            else nn.Identity()
        ]
        convs += [nn.Conv2d(d, dim_decoder, 3, 1, 1, bias=False) for d in dims_encoder[1:]]
        self.convs = nn.ModuleList(convs)
        self.fusions = nn.ModuleList(
            FeatureFusionBlock(dim_decoder, upsample=i > 0) for i in range(len(dims_encoder))
        )

    def forward(self, encodings: list[torch.Tensor]) -> torch.Tensor:
        """encodings[0] is the finest; returns (B, dim_decoder, H0, W0)."""
        last = len(encodings) - 1
        x: torch.Tensor = self.fusions[last](self.convs[last](encodings[last]))  # resnet1 unused
        for i in range(last - 1, -1, -1):
            x = self.fusions[i](x, self.convs[i](encodings[i]))
        return x


class PreActResidualBlock(nn.Module):
    """GroupNorm-ReLU-conv residual block with an optional 1x1 shortcut when widths differ."""

    def __init__(self, dim_in: int, dim_out: int, num_groups: int, dim_hidden: int | None = None) -> None:
        super().__init__()
        dim_hidden = dim_out // 2 if dim_hidden is None else dim_hidden
        self.residual = nn.Sequential(
            nn.GroupNorm(num_groups, dim_in),
            nn.ReLU(),
            nn.Conv2d(dim_in, dim_hidden, 3, 1, 1, bias=True),
            nn.GroupNorm(num_groups, dim_hidden),
            nn.ReLU(),
            nn.Conv2d(dim_hidden, dim_out, 3, 1, 1, bias=True),
        )
        self.shortcut = nn.Conv2d(dim_in, dim_out, 1, bias=True) if dim_in != dim_out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base = x if self.shortcut is None else self.shortcut(x)
        out: torch.Tensor = base + self.residual(x)
        return out


def project_upsample(
    dim_in: int, dim_out: int, num_upsample: int, dim_mid: int | None = None
) -> nn.Sequential:
    """1x1 projection followed by `num_upsample` stride-2 transposed convs (each 2x)."""
    dim_mid = dim_out if dim_mid is None else dim_mid
    layers: list[nn.Module] = [nn.Conv2d(dim_in, dim_mid, 1, bias=False)]
    layers += [
        nn.ConvTranspose2d(dim_mid if i == 0 else dim_out, dim_out, 2, 2, 0, bias=False)
        for i in range(num_upsample)
    ]
    return nn.Sequential(*layers)
