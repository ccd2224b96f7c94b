"""Gaussian feature decoder (`feature_model`) and the 1x1 prediction heads.

The decoder fuses the SPN encodings with a stride-2 embedding of [image, disparities] and
produces per-cell texture and geometry features; the prediction heads turn them into the
14 x L delta channels that the composer applies to the base Gaussians.
"""

from __future__ import annotations

import torch
from torch import nn

from mlsharp.network.blocks import FeatureFusionBlock, MultiresConvDecoder, PreActResidualBlock
from mlsharp.presets import SharpConfig

#: delta channels per layer: mean (3), scale (3), quaternion (4), colour (3), opacity (1)
NUM_GEOMETRY_CHANNELS = 3
NUM_TEXTURE_CHANNELS = 11


class SkipConvEncoder(nn.Module):
    """Stride-2 2x2 conv embedding of the 5-channel feature input (`image_encoder.conv`)."""

    def __init__(self, dim_in: int, dim_out: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim_in, dim_out, kernel_size=stride, stride=stride, padding=0, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.conv(x)
        return out


def _feature_head(dim: int, dim_out: int, num_groups: int) -> nn.Sequential:
    return nn.Sequential(
        PreActResidualBlock(dim, dim, num_groups),
        PreActResidualBlock(dim, dim, num_groups),
        nn.ReLU(),
        nn.Conv2d(dim, dim_out, 1, bias=True),
        nn.ReLU(),
    )


class GaussianFeatureDecoder(nn.Module):
    """(encodings, feature input (B, 5, S, S)) -> texture, geometry features (B, dim_out, S/2, S/2)."""

    def __init__(self, config: SharpConfig, dims_encoder: tuple[int, ...]) -> None:
        super().__init__()
        cfg = config.gaussian_decoder
        self.decoder = MultiresConvDecoder(dims_encoder, cfg.decoder_dim)
        self.image_encoder = SkipConvEncoder(5, cfg.decoder_dim, config.stride)
        self.fusion = FeatureFusionBlock(cfg.decoder_dim, upsample=False)
        # decoder stride (2) equals the encodings' finest stride, so no upsampling is needed
        self.upsample = nn.Identity()
        self.texture_head = _feature_head(cfg.decoder_dim, cfg.dim_out, cfg.norm_num_groups)
        self.geometry_head = _feature_head(cfg.decoder_dim, cfg.dim_out, cfg.norm_num_groups)

    def forward(
        self, encodings: list[torch.Tensor], feature_input: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.upsample(self.decoder(encodings))  # (B, Dg, S/2, S/2)
        skip = self.image_encoder(feature_input)  # (B, Dg, S/2, S/2)
        fused = self.fusion(features, skip)
        return self.texture_head(fused), self.geometry_head(fused)


class DirectPredictionHead(nn.Module):
    """1x1 convs to per-layer deltas; zero-initialised so an untrained model yields the base Gaussians."""

    def __init__(self, dim_in: int, num_layers: int) -> None:
        super().__init__()
        self.num_layers = num_layers
        self.geometry_prediction_head = nn.Conv2d(dim_in, NUM_GEOMETRY_CHANNELS * num_layers, 1)
        self.texture_prediction_head = nn.Conv2d(dim_in, NUM_TEXTURE_CHANNELS * num_layers, 1)
        for conv in (self.geometry_prediction_head, self.texture_prediction_head):
            nn.init.zeros_(conv.weight)
            assert conv.bias is not None  # built with bias=True (the default)
            nn.init.zeros_(conv.bias)

    def forward(self, texture: torch.Tensor, geometry: torch.Tensor) -> torch.Tensor:
        """-> delta (B, 14, L, h, w); channel k of a head maps to (attribute k // L, layer k % L)."""
        geo = self.geometry_prediction_head(geometry).unflatten(1, (NUM_GEOMETRY_CHANNELS, self.num_layers))
        tex = self.texture_prediction_head(texture).unflatten(1, (NUM_TEXTURE_CHANNELS, self.num_layers))
        return torch.cat([geo, tex], dim=1)
