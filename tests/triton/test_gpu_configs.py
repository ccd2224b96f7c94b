"""The GPU target's generated configs, parsed back through Triton's protobuf schema (issue 15):
profiles, a warm-up per batch size, the engine cache named after the served graph's sha256, the
TensorRT batch ceiling, model-id parameters on every model, and pool sizes from the tensor sizes."""

from __future__ import annotations

import pytest
from tritonclient.grpc import model_config_pb2 as pb

from mlsharp.triton import gpu_target
from mlsharp.triton.config import parse_pbtxt
from mlsharp.triton.models import RepositoryOptions, all_configs

SHA = "ab" * 32
FULL = {
    "preset": "full", "working_size_px": 1536, "num_gaussians": 1_179_648, "model_id": "sharp_2572gikvuh",
    "random_weights": False, "target": "gpu", "max_batch_size": 4, "served_sha256": SHA,
}  # fmt: skip


def _options(**overrides: object) -> RepositoryOptions:
    return RepositoryOptions(**(FULL | overrides))  # type: ignore[arg-type]


def _parsed(opts: RepositoryOptions) -> dict[str, pb.ModelConfig]:
    return {name: parse_pbtxt(config.to_pbtxt()) for name, config in all_configs(opts).items()}


def _accelerator(config: pb.ModelConfig) -> pb.ModelOptimizationPolicy.ExecutionAccelerators.Accelerator:
    (accelerator,) = config.optimization.execution_accelerators.gpu_execution_accelerator
    return accelerator


def test_tensorrt_serves_the_mixed_fp16_graph_with_one_explicit_profile() -> None:
    sharp = _parsed(_options(gpu_runtime="tensorrt", precision="fp16"))["sharp"]
    assert sharp.platform == "onnxruntime_onnx" and sharp.default_model_filename == "model.fp16.onnx"
    params = dict(_accelerator(sharp).parameters)
    assert _accelerator(sharp).name == "tensorrt"
    assert params["precision_mode"] == "FP16"
    assert params["trt_profile_min_shapes"] == "image:1x3x1536x1536,disparity_factor:1"
    assert params["trt_profile_opt_shapes"] == "image:2x3x1536x1536,disparity_factor:2"
    assert params["trt_profile_max_shapes"] == "image:4x3x1536x1536,disparity_factor:4"
    # Triton 24.10's backend refuses the model for any parameter it does not know
    assert set(params) <= gpu_target.TRITON_2410_TENSORRT_PARAMETERS
    assert "trt_layer_norm_fp32_fallback" not in params  # no effect on LayerNormalization nodes


def test_engine_and_timing_caches_live_in_a_folder_named_after_the_graph_and_tensorrt() -> None:
    params = dict(
        _accelerator(_parsed(_options(gpu_runtime="tensorrt", precision="fp16"))["sharp"]).parameters
    )
    folder = f"/tmp/mlsharp-trt-cache/{SHA[:16]}-trt{gpu_target.TENSORRT_VERSION}"
    assert params["trt_engine_cache_enable"] == "1" and params["trt_engine_cache_path"] == folder
    assert params["trt_timing_cache_enable"] == "1" and params["trt_timing_cache_path"] == folder
    other = _options(gpu_runtime="tensorrt", precision="fp16", served_sha256="cd" * 32)
    other_params = dict(_accelerator(_parsed(other)["sharp"]).parameters)
    assert other_params["trt_engine_cache_path"] != folder  # other weights never meet this engine
    with pytest.raises(ValueError, match="sha256"):
        all_configs(_options(gpu_runtime="tensorrt", precision="fp16", served_sha256=""))


@pytest.mark.parametrize("runtime", ["tensorrt", "cuda"])
def test_every_batch_size_is_warmed_up_before_ready(runtime: str) -> None:
    sharp = _parsed(_options(gpu_runtime=runtime, precision="fp16"))["sharp"]
    assert [w.batch_size for w in sharp.model_warmup] == [1, 2, 3, 4]
    for warmup in sharp.model_warmup:
        image, factor = warmup.inputs["image"], warmup.inputs["disparity_factor"]
        assert image.data_type == pb.TYPE_FP32 and list(image.dims) == [3, 1536, 1536] and image.random_data
        assert factor.data_type == pb.TYPE_FP32 and list(factor.dims) == [1]
        assert warmup.count == 1


def test_tensorrt_caps_the_batch_at_four_and_refuses_fp32() -> None:
    with pytest.raises(ValueError, match="up to 4"):
        all_configs(_options(gpu_runtime="tensorrt", precision="fp16", max_batch_size=8))
    with pytest.raises(ValueError, match="2 GiB"):
        all_configs(_options(gpu_runtime="tensorrt", precision="fp32"))
    for runtime in ("torch", "cuda"):  # no 2^31-element tensor limit there
        assert (
            _parsed(_options(gpu_runtime=runtime, precision="fp16", max_batch_size=8))["sharp"].max_batch_size
            == 8
        )


def test_cuda_fallback_searches_convolutions_by_heuristic_even_with_model_parameters() -> None:
    sharp = _parsed(_options(gpu_runtime="cuda", precision="fp16"))["sharp"]
    accelerator = _accelerator(sharp)
    assert accelerator.name == "cuda" and accelerator.parameters["cudnn_conv_algo_search"] == "HEURISTIC"
    # the backend re-reads these from the model parameters (and defaults them to EXHAUSTIVE) whenever
    # the model has parameters at all; ours always does, so they are set there as its enums too
    assert sharp.parameters["cudnn_conv_algo_search"].string_value == "1"
    assert sharp.parameters["arena_extend_strategy"].string_value == "1"
    fp32 = _parsed(_options(gpu_runtime="cuda", precision="fp32"))["sharp"]
    assert fp32.default_model_filename == ""  # the fp32 graph, model.onnx


def test_pytorch_target_is_the_python_runner_on_gpu_instances() -> None:
    sharp = _parsed(_options(gpu_runtime="torch", precision="fp16", compile_mode="reduce-overhead"))["sharp"]
    assert sharp.backend == "python"
    assert [(g.kind, g.count) for g in sharp.instance_group] == [(pb.ModelInstanceGroup.KIND_GPU, 1)]
    params = {k: v.string_value for k, v in sharp.parameters.items()}
    assert params["model_id"] == "sharp_2572gikvuh" and params["preset"] == "full"
    assert {k: params[k] for k in ("runtime", "weights_file", "precision", "compile_mode")} == {
        "runtime": "torch", "weights_file": "model.fp16.pt", "precision": "fp16",
        "compile_mode": "reduce-overhead",
    }  # fmt: skip
    assert params["warmup_batch_sizes"] == "1,2,3,4" and params["max_batch_size"] == "4"
    assert params["FORCE_CPU_ONLY_INPUT_TENSORS"] == "no"
    assert not sharp.model_warmup  # the runner warms up in initialize(), before READY
    with pytest.raises(ValueError, match="int8 is a CPU-target option"):
        all_configs(_options(gpu_runtime="torch", precision="int8"))


@pytest.mark.parametrize("runtime", ["torch", "tensorrt", "cuda"])
def test_every_model_of_every_gpu_target_carries_the_model_id(runtime: str) -> None:
    configs = _parsed(
        _options(gpu_runtime=runtime, precision="fp16", random_weights=True, model_id="random-full-seed0")
    )
    for name, config in configs.items():
        assert config.parameters["model_id"].string_value == "random-full-seed0", name
        assert config.parameters["random_weights"].string_value == "true", name
    for name in ("preprocess", "postprocess"):
        assert [g.kind for g in configs[name].instance_group] == [pb.ModelInstanceGroup.KIND_GPU]
        assert configs[name].parameters["FORCE_CPU_ONLY_INPUT_TENSORS"].string_value == "no"


def test_pool_sizes_follow_the_tensor_sizes() -> None:
    memory = gpu_target.server_memory(_options())
    image_item, raw_item = 3 * 1536 * 1536 * 4, 14 * 1_179_648 * 4
    assert (image_item, raw_item) == (28_311_552, 66_060_288)
    batch_in_out = 4 * (image_item + raw_item)  # 377 MB: above the old 256 MB pinned pool
    assert batch_in_out > 256 << 20
    assert memory.pinned_bytes == 720 << 20 >= 2 * batch_in_out
    assert memory.cuda_pool_bytes == 912 << 20 >= 2 * batch_in_out + 2 * image_item + 2 * raw_item
    assert memory.python_shm_default_bytes == memory.python_shm_growth_bytes == 64 << 20 >= raw_item
    assert all(value % (16 << 20) == 0 for value in vars(memory).values())
    test_preset = gpu_target.server_memory(
        RepositoryOptions("test", 512, 131_072, "random-test-seed0", True, target="gpu", max_batch_size=8)
    )
    assert test_preset.pinned_bytes < memory.pinned_bytes  # sized per repository, not a constant
    assert "TRITON_CUDA_MEMORY_POOL_BYTES=956301312" in memory.env_file().decode()


def test_ci_can_put_the_gpu_targets_code_on_cpu_instances() -> None:
    configs = _parsed(_options(gpu_runtime="torch", precision="fp32", gpu_code_on_cpu=True))
    for name in ("preprocess", "sharp", "postprocess"):
        assert [g.kind for g in configs[name].instance_group] == [pb.ModelInstanceGroup.KIND_CPU], name
    for name in ("preprocess", "postprocess"):
        assert configs[name].parameters["stage_device"].string_value == "cpu-torch"
    assert configs["sharp"].parameters["runtime"].string_value == "torch"
