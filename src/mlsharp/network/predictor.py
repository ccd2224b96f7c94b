"""`SharpPredictor`: image + disparity factor -> raw Gaussian tensors (the export boundary).

Module attributes are named and registered like the reference `RGBGaussianPredictor`, so the
official checkpoint loads with strict=True and state_dict order matches. The forward is
export-friendly: tensor-only inputs and outputs, a symbolic batch axis, no data-dependent
Python control flow, no in-place ops. Exporting with a symbolic batch needs an example batch
of at least 2: torch.export specialises dimensions of size 1.
"""

from __future__ import annotations

import torch
from torch import nn

from mlsharp.network.alignment import DepthAlignment
from mlsharp.network.composer import GaussianComposer
from mlsharp.network.decoder import DirectPredictionHead, GaussianFeatureDecoder
from mlsharp.network.depth import MonodepthModel
from mlsharp.network.initializer import MultiLayerInitializer
from mlsharp.presets import SharpConfig

RAW_OUTPUT_NAMES: tuple[str, ...] = ("mean_vectors", "singular_values", "quaternions", "colors", "opacities")

DISPARITY_MIN = 1e-4
DISPARITY_MAX = 1e4

RawOutputs = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


class SharpPredictor(nn.Module):
    """SHARP network. `fused_attention` picks SDPA (default) or explicit softmax attention in the ViTs."""

    def __init__(self, config: SharpConfig, fused_attention: bool = True) -> None:
        super().__init__()
        self.config = config
        self.init_model = MultiLayerInitializer(config)
        monodepth = MonodepthModel(config, fused_attention)
        self.feature_model = GaussianFeatureDecoder(config, monodepth.monodepth_predictor.encoder.dims_out)
        self.monodepth_model = monodepth
        self.prediction_head = DirectPredictionHead(config.gaussian_decoder.dim_out, config.num_layers)
        self.gaussian_composer = GaussianComposer()
        self.depth_alignment = DepthAlignment(config.alignment)  # weights only (training-time)

    def forward_with_disparity(
        self, image: torch.Tensor, disparity_factor: torch.Tensor
    ) -> tuple[RawOutputs, torch.Tensor]:
        """Like `forward`, plus the raw depth-head disparity (B, L, S, S) for debugging/depth maps."""
        disparity, encodings = self.monodepth_model(image)  # (B, L, S, S), 5 maps
        phi = disparity_factor.reshape(-1, 1, 1, 1)  # f_px / original width
        depth = phi / torch.clamp(disparity, DISPARITY_MIN, DISPARITY_MAX)  # (B, L, S, S)
        base = self.init_model(image, depth)
        texture, geometry = self.feature_model(encodings, base.feature_input)
        delta = self.prediction_head(texture, geometry)  # (B, 14, L, h, w)
        return self.gaussian_composer(delta, base), disparity

    def forward(self, image: torch.Tensor, disparity_factor: torch.Tensor) -> RawOutputs:
        """image (B, 3, S, S) in [0, 1], disparity_factor (B,) -> the five RAW_OUTPUT_NAMES tensors."""
        outputs, _ = self.forward_with_disparity(image, disparity_factor)
        return outputs
