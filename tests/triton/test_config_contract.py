"""The python models' tensor contract, the GPU target's CUDA/fp16 form, and the exported repository's
files, all parsed through Triton's protobuf schema (test_config.py covers the ensemble and ``sharp``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from mlsharp.triton.models import RepositoryOptions, all_configs

SIZE, GAUSSIANS = 512, 131_072
RAW = {
    "mean_vectors": [GAUSSIANS, 3],
    "singular_values": [GAUSSIANS, 3],
    "quaternions": [GAUSSIANS, 4],
    "colors": [GAUSSIANS, 3],
    "opacities": [GAUSSIANS],
}


def _options(**overrides: object) -> RepositoryOptions:
    values = {
        "preset": "test", "working_size_px": SIZE, "num_gaussians": GAUSSIANS,
        "model_id": "random-test-seed0", "random_weights": True, "max_batch_size": 8,
    } | overrides  # fmt: skip
    return RepositoryOptions(**values)


def _parsed(opts: RepositoryOptions) -> dict[str, pb.ModelConfig]:
    return {
        name: text_format.Parse(cfg.to_pbtxt(), pb.ModelConfig()) for name, cfg in all_configs(opts).items()
    }


def _tensors(tensors) -> dict[str, tuple[int, list[int]]]:
    return {t.name: (t.data_type, list(t.dims)) for t in tensors}


def _parameters(config: pb.ModelConfig) -> dict[str, str]:
    return {key: value.string_value for key, value in config.parameters.items()}


@pytest.mark.parametrize("target", ["cpu", "gpu"])
def test_preprocess_turns_bytes_into_the_network_input_on_cpu_instances(target: str) -> None:
    config = _parsed(_options(target=target, preprocess_instances=3))["preprocess"]
    assert config.backend == "python" and config.max_batch_size == 8
    assert _tensors(config.input) == {
        "image_bytes": (pb.TYPE_STRING, [1]), "focal_px": (pb.TYPE_FP32, [1]),
        "focal_mm": (pb.TYPE_FP32, [1]), "formats": (pb.TYPE_STRING, [-1]),
    }  # fmt: skip
    assert _tensors(config.output) == {
        "image": (pb.TYPE_FP32, [3, SIZE, SIZE]),
        "disparity_factor": (pb.TYPE_FP32, [1]),
        "camera": (pb.TYPE_FP64, [3]),  # focal_px, width_px, height_px without float32 rounding
        "image_info": (pb.TYPE_STRING, [1]),
    }
    assert [(g.kind, g.count) for g in config.instance_group] == [(pb.ModelInstanceGroup.KIND_CPU, 3)]
    assert not config.HasField("dynamic_batching")  # one request per execute: a bad image fails alone
    assert _parameters(config) == {
        "model_id": "random-test-seed0", "random_weights": "true",
        "preset": "test", "working_size_px": str(SIZE),
    }  # fmt: skip


@pytest.mark.parametrize("target", ["cpu", "gpu"])
def test_postprocess_takes_the_raw_outputs_and_returns_scene_and_metadata(target: str) -> None:
    config = _parsed(_options(target=target, postprocess_instances=2))["postprocess"]
    assert config.backend == "python"
    assert _tensors(config.input) == {
        **{name: (pb.TYPE_FP32, dims) for name, dims in RAW.items()},
        "camera": (pb.TYPE_FP64, [3]),
        "image_info": (pb.TYPE_STRING, [1]),
        "formats": (pb.TYPE_STRING, [-1]),
    }
    assert _tensors(config.output) == {"scenes": (pb.TYPE_STRING, [-1]), "metadata": (pb.TYPE_STRING, [1])}
    assert [(g.kind, g.count) for g in config.instance_group] == [(pb.ModelInstanceGroup.KIND_CPU, 2)]
    assert _parameters(config)["random_weights"] == "true"


def test_sharp_outputs_are_the_five_raw_tensors_on_both_targets() -> None:
    cpu, gpu = (_parsed(_options(target=t))["sharp"] for t in ("cpu", "gpu"))
    for config in (cpu, gpu):
        assert _tensors(config.output) == {name: (pb.TYPE_FP32, dims) for name, dims in RAW.items()}
        assert _tensors(config.input)["image"] == (pb.TYPE_FP32, [3, SIZE, SIZE])
        assert list(config.dynamic_batching.preferred_batch_size) == [2, 4, 8]
        assert config.dynamic_batching.max_queue_delay_microseconds == 20_000
    assert gpu.platform == "onnxruntime_onnx" and not gpu.backend
    assert [g.kind for g in gpu.instance_group] == [pb.ModelInstanceGroup.KIND_GPU]
    assert [g.kind for g in cpu.instance_group] == [pb.ModelInstanceGroup.KIND_CPU]


def test_sharp_queue_is_bounded_and_refuses_beyond_it() -> None:
    """An unbounded queue let direct clients pile up requests without limit; beyond the bound
    Triton refuses at once (REJECT is the policy's default timeout action)."""
    sharp = _parsed(_options())["sharp"]
    policy = sharp.dynamic_batching.default_queue_policy
    assert policy.max_queue_size == 64
    assert policy.timeout_action == pb.ModelQueuePolicy.REJECT
    unbounded = _parsed(_options(max_queue_size=0))["sharp"]
    assert not unbounded.dynamic_batching.HasField("default_queue_policy")


def test_gpu_tensorrt_fp32_and_cuda_fp16_options() -> None:
    trt = _parsed(_options(target="gpu"))["sharp"]
    (accelerator,) = trt.optimization.execution_accelerators.gpu_execution_accelerator
    assert accelerator.name == "tensorrt"
    assert dict(accelerator.parameters) == {
        "precision_mode": "FP32",
        "max_workspace_size_bytes": str(4 << 30),
        "trt_engine_cache_enable": "1",
        "trt_engine_cache_path": "/tmp/mlsharp-trt-cache",
        "trt_layer_norm_fp32_fallback": "1",
    }
    assert trt.default_model_filename == ""  # TensorRT's FP16 mode runs on the fp32 file
    cuda = _parsed(_options(target="gpu", gpu_accelerator="cuda", precision="fp16"))["sharp"]
    (accelerator,) = cuda.optimization.execution_accelerators.gpu_execution_accelerator
    assert accelerator.name == "cuda" and accelerator.parameters["cudnn_conv_use_max_workspace"] == "1"
    assert cuda.default_model_filename == "model.fp16.onnx"  # the CUDA EP needs the converted graph


def test_exported_repository_files_are_the_typed_configs(triton_export_dir: Path) -> None:
    """Never hand-edited: every config.pbtxt on disk is the rendering of the manifest's options."""
    manifest_path = triton_export_dir / "export_manifest.json"
    if not manifest_path.is_file():
        pytest.skip(f"no export manifest beside the given repository ({manifest_path})")
    manifest = json.loads(manifest_path.read_text())
    repository = triton_export_dir / "model_repository"
    configs = all_configs(RepositoryOptions(**manifest["repository_options"]))
    assert sorted(p.parent.name for p in repository.glob("*/config.pbtxt")) == sorted(configs)
    for name, config in configs.items():
        text = (repository / name / "config.pbtxt").read_text()
        assert text == config.to_pbtxt(), name
        assert text_format.Parse(text, pb.ModelConfig()).name == name
        assert (repository / name / "1").is_dir()
    assert (repository / "sharp" / "1" / "model.onnx").is_file()
    assert (repository / "sharp" / "1" / "model.py").is_file()  # the CPU target's ORT runner
