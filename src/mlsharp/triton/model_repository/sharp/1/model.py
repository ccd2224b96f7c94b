"""Triton python model ``sharp``: the exported graph in ONNX Runtime or OpenVINO, or our network in PyTorch.

All requests the dynamic batcher hands to one ``execute`` call are answered by one runner call:
ONNX Runtime runs them as ONE batch (:class:`mlsharp.triton.stages.OnnxRunner`), OpenVINO item by
item on a graph compiled for one (:class:`mlsharp.triton.openvino_runner.OpenVinoRunner` says why).
The config's ``runtime``, ``precision`` and ``model_file`` parameters (chosen and checked by the
export) pick the runner and its file.
``runtime`` "torch" runs :class:`mlsharp.network.SharpPredictor` itself
(:class:`mlsharp.triton.torch_runner.TorchRunner`: fp16/bf16 on the instance's GPU, optionally
compiled), reading ``weights_file``, ``preset``, ``precision``, ``compile_mode``,
``max_batch_size`` and ``warmup_batch_sizes``; its tensors travel through DLPack.
The TensorRT GPU target does not use this file: it runs the ONNX file in Triton's onnxruntime backend.
"""

from pathlib import Path

import triton_python_backend_utils as pb_utils

from mlsharp.triton import backend
from mlsharp.triton.models import NETWORK_INPUTS


class TritonPythonModel:
    def initialize(self, args):
        parameters = backend.model_parameters(args)
        runtime = parameters.get("runtime") or "onnxruntime"
        self.torch_runtime = runtime == "torch"
        if self.torch_runtime:
            from mlsharp.triton.torch_runner import TorchRunner, TorchRunnerSettings

            settings = TorchRunnerSettings.from_parameters(parameters, args)
            self.runner = TorchRunner.from_settings(settings)
            warm = self.runner.warmup(settings.warmup_batch_sizes)
            timings = ", ".join(f"batch {b}: {s:.1f} s" for b, s in warm.items()) or "none"
            pb_utils.Logger.log_info(
                f"sharp: loaded {settings.weights_path} ({self.runner.describe()}; warm-up {timings})"
            )
            return
        path = Path(args["model_repository"]) / args["model_version"] / parameters["model_file"]
        threads = int(parameters.get("intra_op_threads") or 0)
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
        if self.torch_runtime:
            from mlsharp.triton.torch_runner import torch_execute

            return torch_execute(pb_utils, requests, self.runner, "sharp")
        return backend.all_requests_at_once(pb_utils, requests, NETWORK_INPUTS, self.runner.run, "sharp")
