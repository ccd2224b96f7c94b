"""Generated ``config.pbtxt`` files: one round trip through Triton's own protobuf schema for every
model and target, then the contract the gateway, the python models and the batcher rely on
(tensor names and dims, instances, batching, accelerators, stamping parameters)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from mlsharp.triton.config import DataType, ModelConfig, Tensor, parse_pbtxt
from mlsharp.triton.models import RepositoryOptions, all_configs

SIZE, GAUSSIANS = 512, 131_072
TEST = {
    "preset": "test", "working_size_px": SIZE, "num_gaussians": GAUSSIANS,
    "model_id": "random-test-seed0", "random_weights": True, "max_batch_size": 8,
}  # fmt: skip
FULL = {
    "preset": "full", "working_size_px": 1536, "num_gaussians": 1_179_648,
    "model_id": "sharp_2572gikvuh", "random_weights": False,
}  # fmt: skip
RAW = {
    "mean_vectors": [GAUSSIANS, 3],
    "singular_values": [GAUSSIANS, 3],
    "quaternions": [GAUSSIANS, 4],
    "colors": [GAUSSIANS, 3],
    "opacities": [GAUSSIANS],
}
REQUEST = {
    "image_bytes": (pb.TYPE_STRING, [1]), "focal_px": (pb.TYPE_FP32, [1]),
    "focal_mm": (pb.TYPE_FP32, [1]), "formats": (pb.TYPE_STRING, [-1]),
}  # fmt: skip
RESPONSE = {"scenes": (pb.TYPE_STRING, [-1]), "metadata": (pb.TYPE_STRING, [1])}


def _options(base: dict[str, object] = TEST, **overrides: object) -> RepositoryOptions:
    return RepositoryOptions(**(base | overrides))


def _parsed(opts: RepositoryOptions) -> dict[str, pb.ModelConfig]:
    return {name: parse_pbtxt(cfg.to_pbtxt()) for name, cfg in all_configs(opts).items()}


def _tensors(tensors) -> dict[str, tuple[int, list[int]]]:
    return {t.name: (t.data_type, list(t.dims)) for t in tensors}


def _parameters(config: pb.ModelConfig) -> dict[str, str]:
    return {key: value.string_value for key, value in config.parameters.items()}


@pytest.mark.parametrize("target", ["cpu", "gpu"])
@pytest.mark.parametrize("base", [TEST, FULL], ids=["test", "full"])
def test_every_config_round_trips_through_tritons_schema(base: dict[str, object], target: str) -> None:
    """The text is protobuf's own rendering of the message built from the typed config: parsing it
    back gives that message, and printing the parsed message gives the same text."""
    opts = _options(base, target=target)
    configs = all_configs(opts)
    assert set(configs) == {"preprocess", "sharp", "postprocess", "mlsharp"}
    for name, config in configs.items():
        text = config.to_pbtxt()
        parsed = text_format.Parse(text, pb.ModelConfig())
        assert parsed == config.to_proto(), name
        assert text_format.MessageToString(parsed) == text, name
        assert parsed.name == name and parsed.max_batch_size == opts.max_batch_size


def test_string_values_survive_quotes_backslashes_and_newlines() -> None:
    """Escaping is protobuf's job now: a parameter value comes back exactly."""
    value = 'say "hi"\\path\nnext\ttab é'
    config = ModelConfig(
        "m", 0, (Tensor("x", DataType.FP32, (1,)),), (), backend="python", parameters={"v": value}
    )
    assert parse_pbtxt(config.to_pbtxt()).parameters["v"].string_value == value


def test_ensemble_exposes_the_documented_contract_and_chains_three_steps() -> None:
    ensemble = _parsed(_options(FULL))["mlsharp"]
    assert ensemble.platform == "ensemble"
    assert _tensors(ensemble.input) == REQUEST
    assert _tensors(ensemble.output) == RESPONSE
    # the gateway reads the model id here on both targets
    assert ensemble.parameters["model_id"].string_value == FULL["model_id"]
    steps = [step.model_name for step in ensemble.ensemble_scheduling.step]
    assert steps == ["preprocess", "sharp", "postprocess"]


KIND = {"cpu": pb.ModelInstanceGroup.KIND_CPU, "gpu": pb.ModelInstanceGroup.KIND_GPU}
#: what the GPU target's python stages add: tensors stay on the GPU (DLPack), device chosen by kind
DEVICE_STAGE = {"cpu": {}, "gpu": {"FORCE_CPU_ONLY_INPUT_TENSORS": "no", "stage_device": "auto"}}


@pytest.mark.parametrize("target", ["cpu", "gpu"])
def test_preprocess_turns_bytes_into_the_network_input(target: str) -> None:
    config = _parsed(_options(target=target, preprocess_instances=3))["preprocess"]
    assert config.backend == "python" and config.max_batch_size == 8
    assert _tensors(config.input) == REQUEST
    assert _tensors(config.output) == {
        "image": (pb.TYPE_FP32, [3, SIZE, SIZE]),
        "disparity_factor": (pb.TYPE_FP32, [1]),
        "camera": (pb.TYPE_FP64, [3]),  # focal_px, width_px, height_px without float32 rounding
        "image_info": (pb.TYPE_STRING, [1]),
    }
    assert [(g.kind, g.count) for g in config.instance_group] == [(KIND[target], 3)]
    assert not config.HasField("dynamic_batching")  # one request per execute: a bad image fails alone
    assert _parameters(config) == {
        "model_id": "random-test-seed0", "random_weights": "true",
        "preset": "test", "working_size_px": str(SIZE),
    } | DEVICE_STAGE[target]  # fmt: skip


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
    assert _tensors(config.output) == RESPONSE
    assert [(g.kind, g.count) for g in config.instance_group] == [(KIND[target], 2)]
    assert _parameters(config)["random_weights"] == "true"
    assert DEVICE_STAGE[target].items() <= _parameters(config).items()
    if target == "gpu":  # packing on the GPU, gzip on the CPU at the measured faster level
        assert _parameters(config)["spz_compresslevel"] == "1"


def test_sharp_outputs_are_the_five_raw_tensors_on_both_targets() -> None:
    cpu, gpu = (_parsed(_options(target=t))["sharp"] for t in ("cpu", "gpu"))
    for config in (cpu, gpu):
        assert _tensors(config.output) == {name: (pb.TYPE_FP32, dims) for name, dims in RAW.items()}
        assert _tensors(config.input)["image"] == (pb.TYPE_FP32, [3, SIZE, SIZE])
        assert list(config.dynamic_batching.preferred_batch_size) == [2, 4, 8]
        assert config.dynamic_batching.max_queue_delay_microseconds == 20_000
    assert gpu.backend == "python" and gpu.parameters["runtime"].string_value == "torch"  # the default
    assert [g.kind for g in gpu.instance_group] == [pb.ModelInstanceGroup.KIND_GPU]
    assert [g.kind for g in cpu.instance_group] == [pb.ModelInstanceGroup.KIND_CPU]


def test_full_preset_sharp_dims_and_default_batch_sizes() -> None:
    sharp = _parsed(_options(FULL, target="gpu"))["sharp"]
    assert list(sharp.dynamic_batching.preferred_batch_size) == [2, 4]  # max_batch_size 4
    assert _tensors(sharp.input)["image"] == (pb.TYPE_FP32, [3, 1536, 1536])
    assert _tensors(sharp.output)["mean_vectors"] == (pb.TYPE_FP32, [1_179_648, 3])


def test_cpu_sharp_is_the_python_runner_with_batching_and_stamping_parameters() -> None:
    sharp = _parsed(_options(FULL, random_weights=True, model_id="random-full-seed0"))["sharp"]
    assert sharp.backend == "python" and not sharp.platform
    assert [group.kind for group in sharp.instance_group] == [pb.ModelInstanceGroup.KIND_CPU]
    assert list(sharp.dynamic_batching.preferred_batch_size) == [2, 4]
    assert sharp.parameters["model_file"].string_value == "model.onnx"
    assert sharp.parameters["random_weights"].string_value == "true"
    assert sharp.parameters["model_id"].string_value == "random-full-seed0"
    disparity = next(tensor for tensor in sharp.input if tensor.name == "disparity_factor")
    assert list(disparity.dims) == [1] and list(disparity.reshape.shape) == []


def test_sharp_queue_is_bounded_and_refuses_beyond_it() -> None:
    """An unbounded queue let direct clients pile up requests without limit; beyond the bound
    Triton refuses at once (REJECT is the policy's default timeout action)."""
    sharp = _parsed(_options())["sharp"]
    policy = sharp.dynamic_batching.default_queue_policy
    assert policy.max_queue_size == 64
    assert policy.timeout_action == pb.ModelQueuePolicy.REJECT
    unbounded = _parsed(_options(max_queue_size=0))["sharp"]
    assert not unbounded.dynamic_batching.HasField("default_queue_policy")


def test_export_refuses_other_working_sizes_listing_the_valid_ones(tmp_path, capsys) -> None:
    from export.__main__ import main

    argv = ["--preset", "test", "--random-weights", "--size", "768", "--out", str(tmp_path)]
    assert main(argv) == 2  # bad arguments, not a failed check
    stderr = capsys.readouterr().err
    assert "768" in stderr and "test: 512" in stderr and "full: 1536" in stderr
    assert not any(tmp_path.iterdir())  # refused before writing anything


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
        assert parse_pbtxt(text).name == name
        assert (repository / name / "1").is_dir()
    assert (repository / "sharp" / "1" / "model.onnx").is_file()
    assert (repository / "sharp" / "1" / "model.py").is_file()  # the CPU target's ORT runner
