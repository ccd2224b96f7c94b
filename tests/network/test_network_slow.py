"""One tiny-preset forward at the real 1536 px geometry (5x5 + 3x3 overlapping tiles)."""

from __future__ import annotations

import pytest
import torch

from mlsharp.checkpoint import load_predictor


@pytest.mark.slow
@torch.no_grad()
def test_tiny_preset_full_geometry_forward():
    model = load_predictor("tiny", random_weights=True, seed=0).model
    image = torch.rand(1, 3, 1536, 1536, generator=torch.Generator().manual_seed(0))
    (means, scales, quats, colors, opac), disparity = model.forward_with_disparity(image, torch.tensor([1.0]))
    assert means.shape == (1, 1_179_648, 3) and quats.shape == (1, 1_179_648, 4)
    assert opac.shape == (1, 1_179_648) and disparity.shape == (1, 2, 1536, 1536)
    for t in (means, scales, quats, colors, opac):
        assert torch.isfinite(t).all()
    assert torch.all(means[..., 2] > 0) and torch.all((opac > 0) & (opac < 1))
