"""Triton python model ``sharp`` (CPU target): the exported graph in ONNX Runtime or OpenVINO.

All requests the dynamic batcher hands to one ``execute`` call are answered by one runner call:
ONNX Runtime runs them as ONE batch (:class:`mlsharp.triton.stages.OnnxRunner`), OpenVINO item by
item on a graph compiled for one (:class:`mlsharp.triton.openvino_runner.OpenVinoRunner` says why).
The config's ``runtime``, ``precision`` and ``model_file`` parameters (chosen and checked by the
export) pick the runner and its file.
The GPU target does not use this file: it runs the same ONNX file in Triton's onnxruntime backend.
"""

from pathlib import Path

import triton_python_backend_utils as pb_utils

from mlsharp.triton import backend
from mlsharp.triton.models import NETWORK_INPUTS


class TritonPythonModel:
    def initialize(self, args):
        parameters = backend.model_parameters(args)
        path = Path(args["model_repository"]) / args["model_version"] / parameters["model_file"]
        threads = int(parameters.get("intra_op_threads") or 0)
        runtime = parameters.get("runtime") or "onnxruntime"
        if runtime == "openvino":
            from mlsharp.triton.openvino_runner import OpenVinoRunner

            self.runner = OpenVinoRunner(path, parameters["precision"], threads)
            detail = f"openvino, inference precision {self.runner.effective_precision()}"
        else:
            from mlsharp.triton.stages import OnnxRunner

            self.runner = OnnxRunner(path, threads)
            detail = "onnxruntime"
        mode = (
            "one batched run per execute" if self.runner.dynamic_batch else "fixed batch 1: items one by one"
        )
        pb_utils.Logger.log_info(f"sharp: loaded {path} ({detail}, {mode})")

    def execute(self, requests):
        return backend.all_requests_at_once(pb_utils, requests, NETWORK_INPUTS, self.runner.run, "sharp")
