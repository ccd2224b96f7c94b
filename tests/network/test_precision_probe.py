"""The precision probe on the `test` preset (CPU): fp32 activation maxima per layer type, and the
local bf16/fp16-vs-fp32 error per layer type plus the five outputs' end-to-end error."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from mlsharp.checkpoint import load_predictor
from mlsharp.network import RAW_OUTPUT_NAMES, SharpPredictor
from mlsharp.network.precision_probe import (
    FP16_MARGIN,
    FP16_MAX,
    PrecisionReport,
    activation_maxima,
    precision_deviation,
)

LAYER_TYPES = ("Conv2d", "ConvTranspose2d", "Linear", "LayerNorm", "GroupNorm")


@pytest.fixture(scope="module")
def model() -> SharpPredictor:
    return load_predictor("test", random_weights=True, seed=0).model.eval()


@pytest.fixture(scope="module")
def inputs(test_image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return test_image, torch.tensor([1.0])


@pytest.fixture(scope="module")
def bf16_report(model: SharpPredictor, inputs: tuple[torch.Tensor, torch.Tensor]) -> PrecisionReport:
    return precision_deviation(model, *inputs, torch.bfloat16)


def _count(model: nn.Module, kind: type[nn.Module]) -> int:
    return sum(isinstance(m, kind) for m in model.modules())


def test_activation_maxima_are_finite_and_positive(
    model: SharpPredictor, inputs: tuple[torch.Tensor, torch.Tensor]
) -> None:
    maxima = activation_maxima(model, *inputs)
    for layer_type in LAYER_TYPES:
        stats = maxima[layer_type]
        assert stats.finite and 0.0 < stats.max_abs_fp32 < FP16_MARGIN * FP16_MAX, stats
        assert not stats.fp16_near_overflow
    # every ViT Linear and LayerNorm runs once (2 ViTs x 4 blocks; no classifier head in `test`)
    assert maxima["Linear"].modules == _count(model, nn.Linear) == 32
    assert maxima["LayerNorm"].modules == _count(model, nn.LayerNorm) == 18
    # the depth-alignment UNet never runs at inference: fewer Conv2d ran than exist
    assert 0 < maxima["Conv2d"].modules < _count(model, nn.Conv2d)
    assert "Identity" not in maxima and "Sequential" not in maxima
    assert all(not m._forward_hooks for m in model.modules()), "hooks left behind"


def test_bf16_deviation_is_nonzero_and_small(bf16_report: PrecisionReport, model: SharpPredictor) -> None:
    assert bf16_report.dtype == "bfloat16" and bf16_report.device == "cpu"
    for layer_type in ("Conv2d", "ConvTranspose2d", "Linear", "LayerNorm"):
        deviation = bf16_report.layers[layer_type]
        # bf16 keeps 8 mantissa bits (roundoff 3.9e-3): a few roundoffs of the layer's range, not 0
        assert deviation.finite and 0.0 < deviation.max_rel_diff < 2e-2, deviation
    assert bf16_report.layers["ReLU"].max_abs_diff == 0.0  # exact in any precision
    assert list(bf16_report.outputs) == list(RAW_OUTPUT_NAMES)
    assert all(d.finite and d.max_abs_diff > 0 for d in bf16_report.outputs.values())
    assert all(p.dtype == torch.float32 for p in model.parameters()), "the probe changed the model"
    assert all(not m._forward_hooks for m in model.modules()), "hooks left behind"


def test_fp16_is_closer_than_bf16_per_layer(
    model: SharpPredictor, inputs: tuple[torch.Tensor, torch.Tensor], bf16_report: PrecisionReport
) -> None:
    """fp16 has 3 more mantissa bits than bf16: its local error per matmul/conv layer is smaller.
    (fp16 runs on this CPU torch; on a device without Half kernels the GPU check covers it.)"""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    cuda_model = model.to(device)
    try:
        fp16 = precision_deviation(cuda_model, *(t.to(device) for t in inputs), torch.float16)
    finally:
        model.to("cpu")
    for layer_type in ("Conv2d", "Linear"):
        assert 0.0 < fp16.layers[layer_type].max_rel_diff < bf16_report.layers[layer_type].max_rel_diff


def test_report_json_round_trips(bf16_report: PrecisionReport) -> None:
    data = json.loads(json.dumps(bf16_report.to_json()))
    assert data["fp16_flagged"] == [] and set(data["maxima"]) >= set(LAYER_TYPES)
    assert PrecisionReport.from_json(data) == bf16_report


class _Loud(nn.Module):
    """Two outputs' worth of network whose Linear overshoots fp16's range (1e5 x the input)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4, bias=False)
        self.norm = nn.LayerNorm(4)
        nn.init.constant_(self.fc.weight, 1e5 / 4)

    def forward(self, image: torch.Tensor, factor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.fc(image)  # (B, 4)
        return x, self.norm(x) * factor.reshape(-1, 1)


def test_layer_types_beyond_fp16_are_flagged() -> None:
    maxima = activation_maxima(_Loud(), torch.ones(1, 4), torch.ones(1))
    assert maxima["Linear"].max_abs_fp32 == pytest.approx(1e5)
    assert maxima["Linear"].fp16_overflow and maxima["Linear"].fp16_near_overflow
    assert not maxima["LayerNorm"].fp16_near_overflow
    report = PrecisionReport("float16", "cpu", maxima=maxima)
    assert report.fp16_flagged == ["Linear"] == report.to_json()["fp16_flagged"]
