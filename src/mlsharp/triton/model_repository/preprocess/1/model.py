"""Triton python model ``preprocess``: image bytes + focal overrides -> network input and camera.

Thin on purpose: the work is :class:`mlsharp.triton.stages.PreprocessStage` (core decoding and
resizing). Each request is handled alone, so one corrupt image fails only its own request.
"""

import triton_python_backend_utils as pb_utils

from mlsharp.triton import backend
from mlsharp.triton.stages import PREPROCESS_INPUTS, PreprocessStage


class TritonPythonModel:
    def initialize(self, args):
        self.stage = PreprocessStage(backend.model_parameters(args))

    def execute(self, requests):
        return backend.each_request(pb_utils, requests, PREPROCESS_INPUTS, self.stage.run, "preprocess")
