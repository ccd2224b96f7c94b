"""Triton python model ``preprocess``: image bytes + focal overrides -> network input and camera.

Thin on purpose: the work is :class:`mlsharp.triton.stages.PreprocessStage` (core decoding and
resizing) on a CPU instance, or :class:`mlsharp.triton.device_stages.DevicePreprocessStage` (the
same decoding, the resize on the GPU, DLPack outputs) on a ``KIND_GPU`` instance; the config
parameter ``stage_device`` can override (see :mod:`mlsharp.triton.device_stages`). Each request is
handled alone, so one corrupt image fails only its own request.
"""

import triton_python_backend_utils as pb_utils

from mlsharp.triton import device_stages


class TritonPythonModel:
    def initialize(self, args):
        self.run, description = device_stages.preprocess_executor(args)
        pb_utils.Logger.log_info(description)

    def execute(self, requests):
        return self.run(pb_utils, requests)
