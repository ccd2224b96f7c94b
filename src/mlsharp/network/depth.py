"""Monocular depth network: SPN encoder, DPT decoder and a two-layer disparity head.

Wrapped as `monodepth_model.monodepth_predictor` to keep the official state_dict names. The
predictor also returns the five encoder maps, which the Gaussian decoder consumes.
"""

from __future__ import annotations

import torch
from torch import nn

from mlsharp.network.blocks import MultiresConvDecoder
from mlsharp.network.encoder import SlidingPyramidEncoder
from mlsharp.presets import SharpConfig


class MonodepthPredictor(nn.Module):
    """Image in [0, 1] -> (disparity (B, L, S, S) >= 0, encodings)."""

    def __init__(self, config: SharpConfig, fused_attention: bool = True) -> None:
        super().__init__()
        dim = config.depth.decoder_dim
        hidden = config.depth.head_hidden_dim
        self.encoder = SlidingPyramidEncoder(config, fused_attention)
        self.decoder = MultiresConvDecoder(self.encoder.dims_out, dim)
        # no activation between head.0, head.1 and head.2 (reference layout)
        last = nn.Conv2d(hidden, config.num_layers, 1, 1, 0)
        self.head = nn.Sequential(
            nn.Conv2d(dim, dim // 2, 3, 1, 1),
            nn.ConvTranspose2d(dim // 2, dim // 2, 2, 2, 0, bias=True),
            nn.Conv2d(dim // 2, hidden, 3, 1, 1),
            nn.ReLU(),
            last,
            nn.ReLU(),
        )
        assert last.bias is not None  # built with bias=True (the default)
        nn.init.zeros_(last.bias)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = image * 2.0 + -1.0  # [0, 1] -> [-1, 1]; no ImageNet normalisation
        encodings = self.encoder(x)
        disparity = self.head(self.decoder(encodings))  # (B, L, S, S)
        return disparity, encodings


class MonodepthModel(nn.Module):
    """Name-keeping wrapper (`monodepth_model.monodepth_predictor.*`)."""

    def __init__(self, config: SharpConfig, fused_attention: bool = True) -> None:
        super().__init__()
        self.monodepth_predictor = MonodepthPredictor(config, fused_attention)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        out: tuple[torch.Tensor, list[torch.Tensor]] = self.monodepth_predictor(image)
        return out
