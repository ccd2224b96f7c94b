"""Triton python model ``sharp``: the network, in the runner its config names.

Thin on purpose: :func:`mlsharp.triton.sharp_model.sharp_executor` reads the generated parameters
and builds ONNX Runtime or OpenVINO (CPU target) or PyTorch (GPU target; tensors via DLPack),
answering every request of one ``execute`` call with one runner call. The TensorRT and CUDA GPU
runtimes do not use this file: Triton's onnxruntime backend runs the ONNX graph.
"""

import triton_python_backend_utils as pb_utils

from mlsharp.triton.sharp_model import sharp_executor


class TritonPythonModel:
    def initialize(self, args):
        self.run, description = sharp_executor(args)
        pb_utils.Logger.log_info(description)

    def execute(self, requests):
        return self.run(pb_utils, requests)
