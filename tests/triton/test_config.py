"""Generated config.pbtxt files parsed back through Triton's own protobuf schema."""

from __future__ import annotations

import subprocess
import sys

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from mlsharp.triton.models import RepositoryOptions, all_configs


def _options(target: str, **overrides: object) -> RepositoryOptions:
    values = {
        "preset": "full", "working_size_px": 1536, "num_gaussians": 1_179_648,
        "model_id": "sharp_2572gikvuh", "random_weights": False, "target": target,
    } | overrides  # fmt: skip
    return RepositoryOptions(**values)


def _parse(text: str) -> pb.ModelConfig:
    return text_format.Parse(text, pb.ModelConfig())


@pytest.mark.parametrize("target", ["cpu", "gpu"])
def test_every_generated_config_parses_through_triton_protobuf(target: str) -> None:
    configs = {name: _parse(cfg.to_pbtxt()) for name, cfg in all_configs(_options(target)).items()}
    assert set(configs) == {"preprocess", "sharp", "postprocess", "mlsharp"}
    for name, parsed in configs.items():
        assert parsed.name == name
        assert parsed.max_batch_size == 4


def test_gpu_sharp_is_onnxruntime_on_gpu_with_tensorrt_fp16() -> None:
    sharp = _parse(all_configs(_options("gpu", precision="fp16"))["sharp"].to_pbtxt())
    assert sharp.platform == "onnxruntime_onnx"
    assert [group.kind for group in sharp.instance_group] == [pb.ModelInstanceGroup.KIND_GPU]
    accelerator = sharp.optimization.execution_accelerators.gpu_execution_accelerator[0]
    assert accelerator.name == "tensorrt"
    assert accelerator.parameters["precision_mode"] == "FP16"
    assert list(sharp.dynamic_batching.preferred_batch_size) == [2, 4]
    assert sharp.dynamic_batching.max_queue_delay_microseconds == 20_000
    image = next(tensor for tensor in sharp.input if tensor.name == "image")
    assert image.data_type == pb.TYPE_FP32 and list(image.dims) == [3, 1536, 1536]
    means = next(tensor for tensor in sharp.output if tensor.name == "mean_vectors")
    assert list(means.dims) == [1_179_648, 3]


def test_cpu_sharp_is_the_python_runner_with_batching_and_stamping_parameters() -> None:
    sharp = _parse(
        all_configs(_options("cpu", random_weights=True, model_id="random-full-seed0"))["sharp"].to_pbtxt()
    )
    assert sharp.backend == "python" and not sharp.platform
    assert [group.kind for group in sharp.instance_group] == [pb.ModelInstanceGroup.KIND_CPU]
    assert list(sharp.dynamic_batching.preferred_batch_size) == [2, 4]
    assert sharp.parameters["onnx_file"].string_value == "model.onnx"
    assert sharp.parameters["random_weights"].string_value == "true"
    assert sharp.parameters["model_id"].string_value == "random-full-seed0"
    disparity = next(tensor for tensor in sharp.input if tensor.name == "disparity_factor")
    assert list(disparity.dims) == [1] and list(disparity.reshape.shape) == []


def test_ensemble_exposes_the_documented_contract_and_chains_three_steps() -> None:
    ensemble = _parse(all_configs(_options("cpu"))["mlsharp"].to_pbtxt())
    assert ensemble.platform == "ensemble"
    inputs = {tensor.name: (tensor.data_type, list(tensor.dims)) for tensor in ensemble.input}
    assert inputs == {
        "image_bytes": (pb.TYPE_STRING, [1]), "focal_px": (pb.TYPE_FP32, [1]),
        "focal_mm": (pb.TYPE_FP32, [1]), "formats": (pb.TYPE_STRING, [-1]),
    }  # fmt: skip
    outputs = {tensor.name: (tensor.data_type, list(tensor.dims)) for tensor in ensemble.output}
    assert outputs == {"scenes": (pb.TYPE_STRING, [-1]), "metadata": (pb.TYPE_STRING, [1])}
    # the gateway reads the model id here on both targets
    assert ensemble.parameters["model_id"].string_value == _options("cpu").model_id
    steps = [step.model_name for step in ensemble.ensemble_scheduling.step]
    assert steps == ["preprocess", "sharp", "postprocess"]


def test_python_models_run_several_preprocess_instances() -> None:
    preprocess = _parse(all_configs(_options("cpu", preprocess_instances=3))["preprocess"].to_pbtxt())
    assert sum(group.count for group in preprocess.instance_group) == 3


def test_export_refuses_other_working_sizes_listing_the_valid_ones(tmp_path) -> None:
    command = [sys.executable, "-m", "export", "--preset", "test", "--random-weights", "--size", "768",
               "--out", str(tmp_path)]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "768" in result.stderr and "test: 512" in result.stderr and "full: 1536" in result.stderr
