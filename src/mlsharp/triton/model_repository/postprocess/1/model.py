"""Triton python model ``postprocess``: raw gaussians -> scene file + metadata JSON.

Thin on purpose: :class:`mlsharp.triton.stages.PostprocessStage` (numpy, a CPU instance) or
:class:`mlsharp.triton.device_stages.DevicePostprocessStage` (a ``KIND_GPU`` instance: DLPack
inputs, unprojection and file rows on the GPU, one copy back per format) calls the core
unprojection and encoders, stamping the model id and random-weights flag from the generated config
parameters; ``stage_device`` can override the choice (see :mod:`mlsharp.triton.device_stages`).
"""

import triton_python_backend_utils as pb_utils

from mlsharp.triton import device_stages


class TritonPythonModel:
    def initialize(self, args):
        self.run, description = device_stages.postprocess_executor(args)
        pb_utils.Logger.log_info(description)

    def execute(self, requests):
        return self.run(pb_utils, requests)
