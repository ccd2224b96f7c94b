"""The python-backend plumbing without a server: a fake ``pb_utils`` stands in for the stub's module.

Checks the two behaviours the Triton docs leave to us: one bad request fails alone, and the CPU
``sharp`` runner sends every request of an ``execute`` call through ONE ONNX Runtime run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch

from mlsharp.errors import ImageTooLargeError, InvalidImageError, InvalidParameterError
from mlsharp.triton import backend
from mlsharp.triton.config import DataType, DynamicBatching, ModelConfig, Tensor
from mlsharp.triton.models import RAW_OUTPUT_NAMES
from mlsharp.triton.stages import OnnxRunner


@dataclass
class FakeTensor:
    """A ``pb_utils.Tensor``: numpy (as Triton hands CPU inputs over) or a torch tensor (made by
    ``from_dlpack``). ``cpu=False`` plays a GPU-resident tensor: ``as_numpy`` refuses, like the stub."""

    name: str
    array: Any
    cpu: bool = True

    def as_numpy(self) -> np.ndarray:
        if not self.cpu:
            raise RuntimeError("as_numpy() is only supported for CPU tensors")
        return self.array.numpy() if isinstance(self.array, torch.Tensor) else self.array

    def is_cpu(self) -> bool:
        return self.cpu

    def to_dlpack(self) -> Any:
        if isinstance(self.array, np.ndarray) and self.array.dtype == np.object_:
            raise RuntimeError("BYTES tensors cannot be exported by DLPack")
        tensor = self.array if isinstance(self.array, torch.Tensor) else torch.from_numpy(self.array)
        return torch.utils.dlpack.to_dlpack(tensor)

    @staticmethod
    def from_dlpack(name: str, capsule: Any) -> FakeTensor:
        tensor = torch.utils.dlpack.from_dlpack(capsule)
        return FakeTensor(name, tensor, cpu=tensor.device.type == "cpu")


@dataclass
class FakeResponse:
    output_tensors: list[FakeTensor]
    error: Any = None


@dataclass
class FakeError:
    message: str


@dataclass
class FakeRequest:
    inputs: dict[str, Any] = field(default_factory=dict)


class FakePbUtils:
    """The slice of ``triton_python_backend_utils`` the helpers use."""

    Tensor = FakeTensor
    TritonError = FakeError
    logged: ClassVar[list[str]] = []

    @staticmethod
    def InferenceResponse(output_tensors=(), error=None) -> FakeResponse:  # Triton's name
        return FakeResponse(list(output_tensors), error)

    @staticmethod
    def get_input_tensor_by_name(request: FakeRequest, name: str) -> FakeTensor | None:
        """A FakeTensor in ``request.inputs`` is handed over as is (e.g. one playing a GPU tensor)."""
        if name not in request.inputs:
            return None
        value = request.inputs[name]
        return value if isinstance(value, FakeTensor) else FakeTensor(name, value)

    class Logger:
        @staticmethod
        def log_info(message: str) -> None:
            FakePbUtils.logged.append(message)

        log_error = log_info


def test_each_request_fails_only_the_bad_one_with_code_and_message() -> None:
    def handler(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if arrays["x"][0, 0] < 0:
            raise InvalidImageError("The upload is plain text, not an image.")
        if arrays["x"][0, 0] == 0:
            raise ZeroDivisionError("boom")
        return {"y": arrays["x"] * 2}

    requests = [FakeRequest({"x": np.array([[v]], np.float32)}) for v in (1.0, -1.0, 0.0, 3.0)] + [
        FakeRequest()
    ]
    responses = backend.each_request(FakePbUtils, requests, ["x"], handler, "unit")
    assert [r.error is None for r in responses] == [True, False, False, True, False]
    assert responses[0].output_tensors[0].array.tolist() == [[2.0]]
    assert responses[3].output_tensors[0].array.tolist() == [[6.0]]
    assert backend.parse_error_text(responses[1].error.message) == (
        "invalid_image",
        "The upload is plain text, not an image.",
    )
    assert responses[1].error.message.startswith('mlsharp-error {"code": "invalid_image", ')
    assert backend.parse_error_text(responses[2].error.message) == (
        "internal_error",
        "ZeroDivisionError: boom",
    )
    code, message = backend.parse_error_text(responses[4].error.message)
    assert code == "internal_error" and message.startswith("KeyError")
    assert any("Traceback" in line and "ZeroDivisionError" in line for line in FakePbUtils.logged)


@pytest.mark.parametrize(
    ("error", "prefix"),
    [
        (InvalidImageError("Plain text."), "in ensemble 'mlsharp', "),
        (InvalidParameterError("bad format 'obj': use ply, spz"), ""),
        (ImageTooLargeError("9000x9000: too large, see {limits}"), "in ensemble 'mlsharp', in 'x', "),
    ],
)
def test_parse_error_text_inverts_error_text_under_triton_prefixes(error: Exception, prefix: str) -> None:
    # messages with ": " or braces no longer confuse the parser: the code is a JSON field
    assert backend.parse_error_text(prefix + backend.error_text(error)) == (error.code, str(error))


@pytest.mark.parametrize(
    "text",
    ["Socket closed", "invalid_image: looks like the old protocol", "mlsharp-error {not json"],
)
def test_foreign_error_text_is_an_internal_error(text: str) -> None:
    assert backend.parse_error_text(text) == ("internal_error", text)


def test_model_parameters_and_flags_read_the_generated_config() -> None:
    config = ModelConfig(
        name="m",
        backend="python",
        max_batch_size=2,
        inputs=(Tensor("x", DataType.FP32, (1,)),),
        outputs=(Tensor("y", DataType.FP32, (1,)),),
        parameters={"model_id": "random-test-seed0", "random_weights": "true"},
    )
    as_json = {"parameters": {k: {"string_value": v} for k, v in config.parameters.items()}}
    params = backend.model_parameters({"model_config": json.dumps(as_json)})
    assert params == {"model_id": "random-test-seed0", "random_weights": "true"}
    assert backend.flag(params, "random_weights") and not backend.flag(params, "model_id")


def _tiny_onnx(path: Path) -> Path:
    """A stand-in network with the real signature: outputs are simple functions of the inputs,
    so a mix-up between requests shows in the values. Dynamic batch axis."""
    import onnx
    from onnx import TensorProto, helper

    n = 4
    nodes = [
        helper.make_node("ReduceMean", ["image", "axes"], ["m"], keepdims=0),  # (B,)
        helper.make_node("Add", ["m", "disparity_factor"], ["s"]),  # (B,)
        helper.make_node("Unsqueeze", ["s", "ax"], ["s1"]),  # (B, 1)
        helper.make_node("Expand", ["s1", "shape_o"], ["opacities"]),  # (B, n)
        helper.make_node("Unsqueeze", ["opacities", "ax2"], ["o3"]),  # (B, n, 1)
    ]
    outputs = [helper.make_tensor_value_info("opacities", TensorProto.FLOAT, ["batch", n])]
    for name, width in zip(RAW_OUTPUT_NAMES[:4], (3, 3, 4, 3), strict=True):
        nodes.append(helper.make_node("Expand", ["o3", f"shape_{width}"], [name]))
        outputs.insert(
            len(outputs) - 1, helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", n, width])
        )
    inits = [
        helper.make_tensor("axes", TensorProto.INT64, [3], [1, 2, 3]),
        helper.make_tensor("ax", TensorProto.INT64, [1], [1]),
        helper.make_tensor("ax2", TensorProto.INT64, [1], [2]),
        helper.make_tensor("shape_o", TensorProto.INT64, [2], [1, n]),
        *(helper.make_tensor(f"shape_{w}", TensorProto.INT64, [3], [1, n, w]) for w in (3, 4)),
    ]
    graph = helper.make_graph(
        nodes,
        "stand_in",
        [
            helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 8, 8]),
            helper.make_tensor_value_info("disparity_factor", TensorProto.FLOAT, ["batch"]),
        ],
        outputs,
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_cpu_runner_keeps_no_activation_arena_between_runs(tmp_path: Path) -> None:
    """Arena and memory pattern off: at the full preset they held 10.4 GiB after a run, 3.1 without."""
    runner = OnnxRunner(_tiny_onnx(tmp_path / "stand_in.onnx"), intra_op_threads=1)
    options = runner.session.get_session_options()
    assert (options.enable_cpu_mem_arena, options.enable_mem_pattern) == (False, False)
    assert options.intra_op_num_threads == 1


def test_cpu_runner_runs_all_requests_of_an_execute_call_in_one_session_run(tmp_path: Path) -> None:
    runner = OnnxRunner(_tiny_onnx(tmp_path / "stand_in.onnx"), intra_op_threads=1)
    assert runner.dynamic_batch
    calls: list[int] = []
    real_run = runner.session.run
    runner.session = type(
        "Spy",
        (),
        {"run": lambda self, names, feed: calls.append(len(feed["image"])) or real_run(names, feed)},
    )()

    images = [np.full((b, 3, 8, 8), v, np.float32) for b, v in ((1, 1.0), (2, 10.0), (1, 100.0))]
    factors = [
        np.array([[0.5]], np.float32),
        np.array([[0.25], [0.75]], np.float32),
        np.array([0.125], np.float32),
    ]
    requests = [
        FakeRequest({"image": img, "disparity_factor": f}) for img, f in zip(images, factors, strict=True)
    ] + [FakeRequest({"image": images[0]})]  # no disparity_factor: fails alone, before the run
    responses = backend.all_requests_at_once(
        FakePbUtils, requests, ["image", "disparity_factor"], runner.run, "sharp"
    )
    assert calls == [4], "one ONNX Runtime run for the 4 items of the 3 readable requests"
    expected = [[1.5], [10.25, 10.75], [100.125]]
    for response, values in zip(responses[:3], expected, strict=True):
        assert response.error is None
        by_name = {t.name: t.array for t in response.output_tensors}
        assert list(by_name) == list(RAW_OUTPUT_NAMES)
        assert by_name["opacities"].shape == (len(values), 4)
        np.testing.assert_allclose(by_name["opacities"][:, 0], values, rtol=1e-6)
        np.testing.assert_allclose(by_name["quaternions"][:, :, 3], by_name["opacities"], rtol=0)
    assert backend.parse_error_text(responses[3].error.message)[1].startswith("KeyError")


def test_a_failed_batched_run_fails_every_request_in_it() -> None:
    def broken(batch: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        raise MemoryError("onnxruntime: out of memory")

    requests = [FakeRequest({"image": np.zeros((1, 1), np.float32)}) for _ in range(3)]
    responses = backend.all_requests_at_once(FakePbUtils, requests, ["image"], broken, "sharp")
    assert [backend.parse_error_text(r.error.message) for r in responses] == [
        ("internal_error", "MemoryError: onnxruntime: out of memory")
    ] * 3


def test_config_strings_are_escaped_and_invalid_configs_refused() -> None:
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as pb

    tricky = 'id "with" quotes\\ and\nnewline'
    config = ModelConfig(
        name="m",
        backend="python",
        max_batch_size=4,
        inputs=(Tensor("x", DataType.STRING, (1,)),),
        outputs=(Tensor("y", DataType.FP64, (3,)),),
        dynamic_batching=DynamicBatching((2, 4), 500),
        parameters={"model_id": tricky},
    )
    parsed = text_format.Parse(config.to_pbtxt(), pb.ModelConfig())
    assert parsed.parameters["model_id"].string_value == tricky
    assert parsed.output[0].data_type == pb.TYPE_FP64
    with pytest.raises(ValueError, match="preferred batch sizes"):
        ModelConfig(**{**config.__dict__, "dynamic_batching": DynamicBatching((8,), 0)}).to_pbtxt()
    with pytest.raises(ValueError, match="exactly one of backend / platform"):
        ModelConfig(**{**config.__dict__, "platform": "onnxruntime_onnx"}).to_pbtxt()
    with pytest.raises(ValueError, match="duplicate tensor names"):
        ModelConfig(**{**config.__dict__, "outputs": (Tensor("x", DataType.FP32, (1,)),)}).to_pbtxt()
