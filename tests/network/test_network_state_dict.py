"""The module tree must accept the official checkpoint strictly (names, shapes, no buffers)."""

from __future__ import annotations

import torch

from mlsharp.network import SharpPredictor
from mlsharp.presets import get_preset

FULL_PARAMETERS = 702_305_169
TINY_PARAMETERS = 1_101_287  # reference-facts.md: "1.10 M parameters"


def test_full_preset_matches_reference_key_list(reference_state_dict):
    with torch.device("meta"):
        model = SharpPredictor(get_preset("full"))
    mine = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    assert len(mine) == 1038
    assert sorted(set(mine) - set(reference_state_dict)) == []
    assert sorted(set(reference_state_dict) - set(mine)) == []
    assert mine == reference_state_dict  # same order too
    assert sum(p.numel() for p in model.parameters()) == FULL_PARAMETERS
    assert list(model.buffers()) == []
    assert all(v.dtype == torch.float32 for v in model.state_dict().values())


def test_full_preset_prefix_inventory():
    with torch.device("meta"):
        keys = list(SharpPredictor(get_preset("full")).state_dict())
    counts = {
        "monodepth_model.monodepth_predictor.encoder.patch_encoder.": 344,
        "monodepth_model.monodepth_predictor.encoder.image_encoder.": 344,
        "monodepth_model.monodepth_predictor.decoder.": 58,
        "monodepth_model.monodepth_predictor.head.": 8,
        "feature_model.": 107,
        "prediction_head.": 4,
        "depth_alignment.scale_map_estimator.": 156,
    }
    for prefix, count in counts.items():
        assert sum(k.startswith(prefix) for k in keys) == count, prefix
    assert "monodepth_model.monodepth_predictor.decoder.convs.0.weight" not in keys
    assert "feature_model.decoder.convs.0.weight" in keys


def test_tiny_preset_size_and_strict_round_trip():
    torch.manual_seed(0)
    model = SharpPredictor(get_preset("tiny"))
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == TINY_PARAMETERS
    assert f"{n_params / 1e6:.2f} M" == "1.10 M"
    assert list(model.buffers()) == []
    assert "monodepth_model.monodepth_predictor.encoder.patch_encoder.head.weight" not in model.state_dict()

    torch.manual_seed(1)
    other = SharpPredictor(get_preset("tiny"))
    result = other.load_state_dict(model.state_dict(), strict=True)
    assert result.missing_keys == [] and result.unexpected_keys == []
    for key, value in model.state_dict().items():
        assert torch.equal(other.state_dict()[key], value), key


def test_reference_init_zeroes_heads():
    model = SharpPredictor(get_preset("test"))
    head = model.prediction_head
    assert torch.count_nonzero(head.geometry_prediction_head.weight) == 0
    assert torch.count_nonzero(head.texture_prediction_head.bias) == 0
    assert torch.count_nonzero(model.monodepth_model.monodepth_predictor.head[4].bias) == 0
    vit = model.monodepth_model.monodepth_predictor.encoder.patch_encoder
    assert torch.all(vit.blocks[0].ls1.gamma == 1e-5)
