"""The PyTorch ``sharp`` runner on CPU torch: the code the GPU target serves, without a GPU or a server.

Checks: fp32 equals eager exactly, requests batched in one run equal single runs, fp16/bf16 stay
near fp32 with the geometry chain in fp32, the config parameters parse (and refuse bad values),
the served weights file round-trips, and ``execute`` keeps the python backend's error rules.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from export.torch_weights import WEIGHTS_FILENAMES, check_torch_runner, save_served_weights
from export.verify import eager_outputs
from mlsharp.checkpoint import load_predictor, sha256_file
from mlsharp.errors import CheckpointError
from mlsharp.network import SharpPredictor
from mlsharp.triton import backend
from mlsharp.triton.models import RAW_OUTPUT_NAMES
from mlsharp.triton.torch_runner import TorchRunner, TorchRunnerSettings, torch_execute
from tests.triton.test_backend_units import FakePbUtils, FakeRequest

SIZE_PX = 512  # the test preset's working size
N = 131_072  # its gaussians per image
CPU = torch.device("cpu")
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model() -> SharpPredictor:
    return load_predictor("test", random_weights=True, seed=0).model


@pytest.fixture(scope="module")
def weights(model: SharpPredictor, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fp32 served weights file of the random test model."""
    path = tmp_path_factory.mktemp("weights") / WEIGHTS_FILENAMES["fp32"]
    return save_served_weights(model, path, "fp32").path


@pytest.fixture(scope="module")
def inputs() -> tuple[torch.Tensor, torch.Tensor]:
    """Three items: image (3, 3, S, S) in [0, 1], disparity factor (3,)."""
    generator = torch.Generator().manual_seed(1)
    return torch.rand(3, 3, SIZE_PX, SIZE_PX, generator=generator), torch.tensor([0.8, 1.0, 1.3])


def _eager(model: SharpPredictor, image: torch.Tensor, factor: torch.Tensor) -> list[torch.Tensor]:
    with torch.inference_mode():
        return list(model(image, factor))


def test_fp32_runner_equals_eager_exactly(model, weights, inputs) -> None:
    image, factor = inputs
    runner = TorchRunner.from_file(weights, "test", CPU, "fp32", max_batch_size=2)
    (out,) = runner.run([{"image": image[:2].numpy(), "disparity_factor": factor[:2].numpy().reshape(2, 1)}])
    reference = _eager(model, image[:2], factor[:2])
    assert list(out) == list(RAW_OUTPUT_NAMES)
    for name, ref in zip(RAW_OUTPUT_NAMES, reference, strict=True):
        assert out[name].dtype == torch.float32 and out[name].device == CPU
        assert torch.equal(out[name], ref), name
    assert out["mean_vectors"].shape == (2, N, 3) and out["opacities"].shape == (2, N)


def test_requests_of_one_call_equal_single_runs_and_chunks(model, weights, inputs) -> None:
    """Requests of 1 and 2 items (numpy and torch mixed) split back in order; max batch 2 means
    chunks [item0, item1] and [item2], so each chunk must equal eager on that chunk."""
    image, factor = inputs
    runner = TorchRunner.from_file(weights, "test", CPU, "fp32", max_batch_size=2)
    first, second = runner.run(
        [
            {"image": image[:1].numpy(), "disparity_factor": factor[:1].numpy()},
            {"image": image[1:], "disparity_factor": factor[1:].reshape(2, 1)},
        ]
    )
    assert first["colors"].shape == (1, N, 3) and second["colors"].shape == (2, N, 3)
    chunk_a = _eager(model, image[:2], factor[:2])
    chunk_b = _eager(model, image[2:], factor[2:])
    for k, name in enumerate(RAW_OUTPUT_NAMES):
        assert torch.equal(first[name], chunk_a[k][:1]), name
        assert torch.equal(second[name], torch.cat([chunk_a[k][1:], chunk_b[k]])), name
    # and against three single-item runs: equal up to float32 batch-vs-single rounding
    singles = [
        runner.run([{"image": image[i : i + 1], "disparity_factor": factor[i : i + 1]}])[0] for i in range(3)
    ]
    for name in RAW_OUTPUT_NAMES:
        batched = torch.cat([first[name], second[name]])
        single = torch.cat([s[name] for s in singles])
        scale = float(single.abs().max())
        assert float((batched - single).abs().max()) <= 1e-4 * scale + 1e-6, name
    assert torch.equal(singles[2]["quaternions"], chunk_b[2])  # item 2 ran alone both times


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_low_precision_is_finite_and_near_fp32_with_fp32_geometry(model, tmp_path, inputs, precision) -> None:
    image, factor = inputs[0][:2], inputs[1][:2]
    reference, _ = eager_outputs(model, image, factor)
    saved = save_served_weights(model, tmp_path / WEIGHTS_FILENAMES[precision], precision)
    check = check_torch_runner(saved.path, "test", precision, image, factor, reference)
    assert check.ok, "\n".join(check.lines())
    assert check.runtime == "torch-cpu" and check.batch == 2
    # measured on the test preset (seed 0): bf16 <= 1e-2 of the range, fp16 <= 1.5e-3; not exact
    bound = {"bf16": 1.5e-2, "fp16": 3e-3}[precision]
    for diff in check.diffs:
        assert diff.finite
        assert 0 < diff.max_abs_diff <= bound * diff.max_abs_reference, diff

    runner = TorchRunner.from_file(saved.path, "test", CPU, precision, max_batch_size=2)
    assert runner.model.prediction_head.geometry_prediction_head.weight.dtype == runner.dtype
    out = runner.forward(image, factor)
    assert all(o.dtype == torch.float32 for o in out)
    opacities = out[4]
    assert float(opacities.min()) > 0 and float(opacities.max()) < 1


def test_without_the_fp32_geometry_chain_fp16_is_further_off(model, inputs) -> None:
    """Why the precision boundaries exist: the same fp16 weights with the whole network in fp16."""
    image, factor = inputs[0][:1], inputs[1][:1]
    reference = _eager(model, image, factor)
    half = copy.deepcopy(model).half()
    with torch.inference_mode():
        naive = [o.float() for o in half(image.half(), factor.half())]
    runner = TorchRunner(copy.deepcopy(model), CPU, "fp16")
    bounded = runner.forward(image, factor)
    rel = [
        [float((o - r).abs().max() / r.abs().max()) for o, r in zip(outs, reference, strict=True)]
        for outs in (naive, bounded)
    ]
    assert max(rel[1]) < max(rel[0]), rel


def test_warmup_runs_each_batch_size_and_describe_names_the_setup(weights) -> None:
    runner = TorchRunner.from_file(weights, "test", CPU, "bf16", max_batch_size=2)
    seconds = runner.warmup([1, 2])
    assert sorted(seconds) == [1, 2] and all(s > 0 for s in seconds.values())
    assert runner.describe().endswith("on cpu, bf16, compile none, max batch 2")


def test_a_mismatched_weights_file_is_refused(tmp_path, model) -> None:
    path = tmp_path / "w.pt"
    state = model.state_dict()
    torch.save({k: v for k, v in state.items() if not k.startswith("prediction_head.")}, path)
    with pytest.raises(CheckpointError, match="missing keys"):
        TorchRunner.from_file(path, "test", CPU, "fp32")
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a valid SHARP checkpoint"):
        TorchRunner.from_file(path, "test", CPU, "fp32")


# --- settings from the config -------------------------------------------------------------------


def _args(kind: str = "GPU", device_id: str = "1", max_batch_size: int = 4) -> dict[str, str]:
    return {
        "model_repository": "/repo/sharp",
        "model_version": "1",
        "model_instance_kind": kind,
        "model_instance_device_id": device_id,
        "model_config": json.dumps({"max_batch_size": max_batch_size}),
    }


def test_settings_from_parameters() -> None:
    params = {
        "weights_file": "model.torch-fp16.pt",
        "preset": "full",
        "precision": "fp16",
        "compile_mode": "reduce-overhead",
        "max_batch_size": "2",
        "warmup_batch_sizes": "1, 2",
    }
    settings = TorchRunnerSettings.from_parameters(params, _args())
    assert settings == TorchRunnerSettings(
        weights_path=Path("/repo/sharp/1/model.torch-fp16.pt"),
        preset="full",
        device=torch.device("cuda", 1),
        precision="fp16",
        compile_mode="reduce-overhead",
        max_batch_size=2,
        warmup_batch_sizes=(1, 2),
    )
    # defaults: CPU instance, no compile, the config's max batch, no warm-up
    minimal = {"weights_file": "w.pt", "preset": "test", "precision": "bf16", "warmup_batch_sizes": ""}
    settings = TorchRunnerSettings.from_parameters(minimal, _args(kind="CPU", max_batch_size=3))
    assert (settings.device, settings.compile_mode, settings.max_batch_size) == (CPU, "none", 3)
    assert settings.warmup_batch_sizes == ()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"precision": "int8"}, r"precision must be one of \['bf16', 'fp16', 'fp32'\], got 'int8'"),
        ({"compile_mode": "fast"}, "compile_mode must be one of"),
        ({"preset": "huge"}, r"preset must be one of \['full', 'tiny', 'test'\], got 'huge'"),
        ({"precision": ""}, "needs the 'precision' parameter"),
        ({"weights_file": ""}, "needs the 'weights_file' parameter"),
        ({"max_batch_size": "0"}, "max_batch_size must be >= 1"),
        ({"warmup_batch_sizes": "1,8"}, r"warmup batch sizes \[8\] are outside 1..max_batch_size=4"),
    ],
)
def test_bad_settings_are_refused_with_a_clear_message(change: dict[str, str], message: str) -> None:
    params = {"weights_file": "w.pt", "preset": "test", "precision": "fp16", **change}
    with pytest.raises(ValueError, match=message):
        TorchRunnerSettings.from_parameters(params, _args())


# --- served weights -------------------------------------------------------------------------------


@pytest.mark.parametrize(("precision", "dtype"), [("fp16", torch.float16), ("bf16", torch.bfloat16)])
def test_saved_weights_are_in_the_served_dtype_with_their_hash(model, tmp_path, precision, dtype) -> None:
    fp32 = save_served_weights(model, tmp_path / "fp32.pt", "fp32")
    saved = save_served_weights(model, tmp_path / "sub" / "w.pt", precision)
    assert saved.sha256 == sha256_file(saved.path) and len(saved.sha256) == 64
    assert saved.path.stat().st_mode & 0o777 == 0o644  # readable by a Triton running as another user
    assert saved.size_bytes == saved.path.stat().st_size < 0.6 * fp32.size_bytes
    assert saved.to_json()["path"] == str(saved.path) and saved.to_json()["precision"] == precision
    state = torch.load(saved.path, weights_only=True)
    assert list(state) == list(model.state_dict())
    assert {v.dtype for v in state.values()} == {dtype}
    expected = model.state_dict()["prediction_head.texture_prediction_head.weight"].to(dtype)
    assert torch.equal(state["prediction_head.texture_prediction_head.weight"], expected)
    assert [p.name for p in tmp_path.rglob("*.part")] == []  # the temporary file was renamed


def test_weights_beyond_fp16_range_are_refused(model, tmp_path) -> None:
    big = copy.deepcopy(model)
    with torch.no_grad():
        big.prediction_head.texture_prediction_head.weight[0, 0, 0, 0] = 1e6
    with pytest.raises(ValueError, match="not finite at fp16"):
        save_served_weights(big, tmp_path / "w.pt", "fp16")
    assert not (tmp_path / "w.pt").exists()


# --- execute with the fake pb_utils of test_backend_units (DLPack in and out) --------------------------


def _request(image: torch.Tensor, factor: torch.Tensor) -> FakeRequest:
    return FakeRequest({"image": image, "disparity_factor": factor.reshape(-1, 1)})


def test_execute_runs_readable_requests_once_and_fails_bad_ones_alone(model, weights, inputs) -> None:
    image, factor = inputs
    runner = TorchRunner.from_file(weights, "test", CPU, "fp32", max_batch_size=4)
    calls: list[list[int]] = []
    run = runner.run

    def counted(batch: Any) -> Any:
        calls.append([int(r["image"].shape[0]) for r in batch])
        return run(batch)

    runner.run = counted  # type: ignore[method-assign]
    requests = [
        _request(image[:1], factor[:1]),
        FakeRequest({"image": image[1:2]}),  # no disparity_factor
        _request(image[1:3], factor[1:3]),
        _request(image[:1, :, :256, :256], factor[:1]),  # wrong working size
    ]
    responses = torch_execute(FakePbUtils, requests, runner)
    assert calls == [[1, 2]]  # ONE run for the two readable requests
    assert responses[0].error is None and responses[2].error is None
    code, message = backend.parse_error_text(responses[1].error.message)
    assert (code, message) == ("internal_error", "KeyError: \"request has no input 'disparity_factor'\"")
    code, message = backend.parse_error_text(responses[3].error.message)
    assert code == "invalid_parameter" and "(B, 3, 512, 512), got (1, 3, 256, 256)" in message
    reference = _eager(model, image, factor)
    got = {t.name: t.array for t in responses[2].output_tensors}
    assert [t.name for t in responses[2].output_tensors] == list(RAW_OUTPUT_NAMES)
    for k, name in enumerate(RAW_OUTPUT_NAMES):
        assert torch.equal(got[name], reference[k][1:]), name
        assert torch.equal(responses[0].output_tensors[k].array, reference[k][:1]), name


def test_a_failed_batched_run_fails_every_request_in_it(weights, inputs) -> None:
    runner = TorchRunner.from_file(weights, "test", CPU, "fp32")

    def broken(batch: Any) -> Any:
        raise RuntimeError("CUDA out of memory")

    runner.run = broken  # type: ignore[method-assign]
    image, factor = inputs
    responses = torch_execute(FakePbUtils, [_request(image[:1], factor[:1])] * 2, runner)
    for response in responses:
        assert response.output_tensors == []
        assert backend.parse_error_text(response.error.message) == (
            "internal_error",
            "RuntimeError: CUDA out of memory",
        )


def test_model_py_serves_the_torch_runtime(weights, model, inputs, monkeypatch) -> None:
    """The real ``sharp/1/model.py`` with the fake stub module: initialize, warm-up, execute."""
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", FakePbUtils)
    path = REPO_ROOT / "src/mlsharp/triton/model_repository/sharp/1/model.py"
    spec = importlib.util.spec_from_file_location("sharp_model_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    parameters = {
        "runtime": "torch",
        "weights_file": weights.name,
        "preset": "test",
        "precision": "fp32",
        "max_batch_size": "2",
        "warmup_batch_sizes": "1",
    }
    config = {"max_batch_size": 2, "parameters": {k: {"string_value": v} for k, v in parameters.items()}}
    served = module.TritonPythonModel()
    served.initialize(
        {
            "model_config": json.dumps(config),
            "model_repository": str(weights.parent.parent),
            "model_version": weights.parent.name,
            "model_instance_kind": "CPU",
            "model_instance_device_id": "0",
        }
    )
    assert "on cpu, fp32, compile none, max batch 2; warm-up batch 1:" in FakePbUtils.logged[-1]
    image, factor = inputs
    (response,) = served.execute([_request(image[:1], factor[:1])])
    assert response.error is None
    expected = _eager(model, image[:1], factor[:1])
    assert all(torch.equal(t.array, e) for t, e in zip(response.output_tensors, expected, strict=True))
