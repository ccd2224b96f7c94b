"""The mixed-precision fp16 graph: heads, LayerNormalization and nodes reading constants outside
fp16's range stay fp32, the I/O stays FP32, and the export's fp16 check still passes.

Reuses the session's test-preset export (``triton_export_dir``) where it holds the same weights;
converting is a second, the trace is what costs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from export import graphs, verify
from export.fp16_islands import (
    FP16_MIN_NORMAL,
    HEAD_MODULES,
    fp32_islands,
    fp32_weight_bytes,
    module_path,
    recorded_islands,
    weight_bytes,
)
from mlsharp.checkpoint import load_predictor
from mlsharp.sample_image import photo_like_jpeg
from tests.conftest import EXPORT_ENV, REPOSITORY_ENV, TRITON_TEST_SEED, reusable_onnx

FLOAT, FLOAT16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16


def _triton_installed() -> bool:
    from mlsharp.triton import paths

    try:
        paths.find_triton()
    except paths.TritonNotInstalledError:
        return False
    return True


@pytest.fixture(scope="module")
def fp32_graph(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session export's ``model.onnx`` when it has the test preset's seed-0 weights, else a
    fresh ONNX-only trace (no tritonserver needed for these tests)."""
    if _triton_installed() or os.environ.get(EXPORT_ENV) or os.environ.get(REPOSITORY_ENV):
        export_dir: Path = request.getfixturevalue("triton_export_dir")
        if reusable_onnx(export_dir):
            # a private copy: ONNX refuses external data hard-linked into the model repository
            private = tmp_path_factory.mktemp("fp32-graph")
            for name in ("model.onnx", "model.onnx.data"):
                shutil.copyfile(export_dir / "onnx" / name, private / name)
            return private / "model.onnx"
    model = load_predictor("test", random_weights=True, seed=TRITON_TEST_SEED).model
    return graphs.export_onnx(model, 512, tmp_path_factory.mktemp("fp16-islands") / "model.onnx")


@pytest.fixture(scope="module")
def fp16_graph(fp32_graph: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return graphs.convert_fp16(fp32_graph, tmp_path_factory.mktemp("fp16") / "model.fp16.onnx")


@pytest.fixture(scope="module")
def fp32_model(fp32_graph: Path) -> onnx.ModelProto:
    return onnx.load(str(fp32_graph))


def _in_heads(path: str | None) -> bool:
    return path is not None and any(path == h or (h and path.startswith(h + ".")) for h in HEAD_MODULES)


def test_islands_cover_heads_layer_norms_and_tiny_constants(fp32_model: onnx.ModelProto) -> None:
    islands = fp32_islands(fp32_model)
    nodes = fp32_model.graph.node
    heads = [n.name for n in nodes if _in_heads(module_path(n))]
    assert len(heads) > 50 and all(islands[name].startswith("head") for name in heads)
    assert any(module_path(n) == "gaussian_composer" for n in nodes)  # the namespace is parsed
    norms = [n.name for n in nodes if n.op_type == "LayerNormalization"]
    assert len(norms) == 18 and all(islands[name].startswith("LayerNormalization") for name in norms)
    # the 1e-6 clamp floor / epsilon (composer, initializer): every reader is an island
    tiny = {
        t.name
        for t in fp32_model.graph.initializer
        if t.data_type == FLOAT and np.prod(t.dims) == 1 and 0 < abs(onnx.numpy_helper.to_array(t)) < 6.1e-5
    }
    assert tiny, "expected the 1e-6 clamp floor among the scalar constants"
    assert all(n.name in islands for n in nodes if set(n.input) & tiny)
    # the bulk of the network is not an island: ordinary convolutions and matmuls stay fp16
    body = [n for n in nodes if n.op_type in ("Conv", "MatMul") and not _in_heads(module_path(n))]
    assert body and not any(n.name in islands for n in body)


def test_converted_graph_keeps_every_island_fp32(fp32_model: onnx.ModelProto, fp16_graph: Path) -> None:
    converted = onnx.load(str(fp16_graph))
    islands = recorded_islands(converted)
    assert islands == fp32_islands(fp32_model)
    graph = onnx.shape_inference.infer_shapes(converted, strict_mode=True).graph
    assert [v.type.tensor_type.elem_type for v in (*graph.input, *graph.output)] == [FLOAT] * 7
    types = {v.name: v.type.tensor_type.elem_type for v in (*graph.value_info, *graph.input, *graph.output)}
    types |= {t.name: t.data_type for t in graph.initializer}
    names = {n.name for n in graph.node}
    assert set(islands) <= names, "an island node was renamed or dropped"
    for node in graph.node:
        if node.name in islands:
            fp16_edges = [x for x in (*node.input, *node.output) if x and types.get(x) == FLOAT16]
            assert not fp16_edges, (node.name, node.op_type, fp16_edges)
    # no fp16 -> fp32 round trip left between islands or at the outputs
    producer = {o: n for n in graph.node for o in n.output}
    for node in graph.node:
        up = producer.get(node.input[0]) if node.op_type == "Cast" else None
        if up is not None and up.op_type == "Cast":
            assert types.get(up.input[0]) != FLOAT, (up.name, node.name)


def test_no_fp16_clamp_floor_underflows(fp16_graph: Path) -> None:
    """Scalars (clamp floors, epsilons) in fp16 are all normal numbers; the 1e-6 stays fp32 exact."""
    graph = onnx.load(str(fp16_graph)).graph
    scalars = [(t, onnx.numpy_helper.to_array(t)) for t in graph.initializer if np.prod(t.dims) == 1]
    fp16_tiny = [
        t.name for t, v in scalars if t.data_type == FLOAT16 and 0 < abs(float(v.item())) < FP16_MIN_NORMAL
    ]
    assert fp16_tiny == []
    assert any(t.data_type == FLOAT and float(v.item()) == np.float32(1e-6) for t, v in scalars)


def test_fp32_weight_bytes_estimate_matches_the_converted_graph(
    fp32_model: onnx.ModelProto, fp16_graph: Path
) -> None:
    islands = fp32_islands(fp32_model)
    estimate = fp32_weight_bytes(fp32_model, islands)
    sizes = weight_bytes(onnx.load(str(fp16_graph), load_external_data=False))
    assert sizes["FLOAT"] == estimate > 0
    total_fp32 = weight_bytes(fp32_model)["FLOAT"]
    # the fp32 share is small: the converted weights are close to half the fp32 graph's
    assert estimate < 0.05 * total_fp32
    assert sizes["FLOAT"] + sizes["FLOAT16"] < 0.55 * total_fp32


def test_mixed_graph_passes_the_fp16_check_closer_than_a_plain_conversion(
    fp32_graph: Path, fp16_graph: Path, tmp_path: Path
) -> None:
    from onnxconverter_common import float16

    from export.__main__ import _check_inputs

    model = load_predictor("test", random_weights=True, seed=TRITON_TEST_SEED).model.eval()
    image, factor = _check_inputs(photo_like_jpeg(), 512, 2)
    reference, _ = verify.eager_outputs(model, image, factor)
    mixed = verify.check_onnx(fp16_graph, "fp16", image, factor, reference)
    assert mixed.ok, "\n".join(mixed.lines())
    plain_path = tmp_path / "plain.onnx"
    with pytest.warns(UserWarning):  # tiny constants truncated to 1e-7
        plain_model = float16.convert_float_to_float16_model_path(str(fp32_graph), keep_io_types=True)
    onnx.save_model(plain_model, str(plain_path), save_as_external_data=True, location="plain.onnx.data")
    plain = verify.check_onnx(plain_path, "fp16", image, factor, reference)
    by_name = {d.name: d.max_abs_diff for d in plain.diffs}
    # the heads in fp32: means (1 / (rho + 1e-3) x global scale) are > 10x closer to eager fp32
    mean = next(d for d in mixed.diffs if d.name == "mean_vectors")
    assert mean.max_abs_diff < 0.1 * by_name["mean_vectors"], (mean, by_name)
    assert torch.isfinite(torch.tensor([d.max_abs_diff for d in mixed.diffs])).all()


def test_precision_record_combines_islands_maxima_and_deviation(fp16_graph: Path) -> None:
    import json

    from export.precision import precision_record

    model = load_predictor("test", random_weights=True, seed=TRITON_TEST_SEED).model.eval()
    image = torch.rand(1, 3, 512, 512, generator=torch.Generator().manual_seed(0))
    record = precision_record(model, image, torch.ones(1), fp16_graph, dtypes=(torch.bfloat16,))
    islands = record["islands"]
    assert islands["count"] == len(islands["nodes"]) > 0
    assert {"head", "LayerNormalization"} <= set(islands["by_reason"])
    assert islands["fp32_weight_bytes"] == islands["weight_bytes"]["FLOAT"]
    assert 0 < islands["fp32_weight_share"] < 0.05
    assert record["activation_maxima"]["Linear"]["max_abs_fp32"] > 0 and record["fp16_flagged"] == []
    bf16 = record["deviation"]["bfloat16"]
    assert set(bf16["outputs"]) == {"mean_vectors", "singular_values", "quaternions", "colors", "opacities"}
    assert bf16["layers"]["Conv2d"]["max_rel_diff"] > 0
    json.dumps(record, allow_nan=False)  # the manifest stays strict JSON
