"""Triton python model ``postprocess``: raw gaussians -> scene file + metadata JSON.

Thin on purpose: :class:`mlsharp.triton.stages.PostprocessStage` calls the core unprojection and
encoders, stamping the model id and random-weights flag from the generated config parameters.
"""

import triton_python_backend_utils as pb_utils

from mlsharp.triton import backend
from mlsharp.triton.stages import POSTPROCESS_INPUTS, PostprocessStage


class TritonPythonModel:
    def initialize(self, args):
        self.stage = PostprocessStage(backend.model_parameters(args))

    def execute(self, requests):
        return backend.each_request(pb_utils, requests, POSTPROCESS_INPUTS, self.stage.run, "postprocess")
