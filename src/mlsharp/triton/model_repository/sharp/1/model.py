"""Triton python model ``sharp`` (CPU target): the exported ONNX graph in ONNX Runtime.

All requests the dynamic batcher hands to one ``execute`` call go through ONE ONNX Runtime run
(concatenated along the batch axis, then split), see :class:`mlsharp.triton.stages.OnnxRunner`.
The GPU target does not use this file: it runs the same ONNX file in Triton's onnxruntime backend.
"""

from pathlib import Path

import triton_python_backend_utils as pb_utils

from mlsharp.triton import backend
from mlsharp.triton.models import NETWORK_INPUTS
from mlsharp.triton.stages import OnnxRunner


class TritonPythonModel:
    def initialize(self, args):
        parameters = backend.model_parameters(args)
        path = Path(args["model_repository"]) / args["model_version"] / parameters["onnx_file"]
        self.runner = OnnxRunner(path, int(parameters.get("intra_op_threads") or 0))
        mode = (
            "one batched run per execute" if self.runner.dynamic_batch else "fixed batch 1: items one by one"
        )
        pb_utils.Logger.log_info(f"sharp: loaded {path} ({mode})")

    def execute(self, requests):
        return backend.all_requests_at_once(pb_utils, requests, NETWORK_INPUTS, self.runner.run, "sharp")
