"""The CPU form of ``sharp`` on OpenVINO: the exported ``model.onnx``, compiled for this CPU.

Why OpenVINO: on a Xeon with AMX its CPU plugin runs the network in bf16 (AMX tiles, fp32
accumulation) at ~0.14x of eager fp32, where ONNX Runtime fp32 is no faster than eager (issue 18).
It reads the same ONNX file the ORT runner serves, so one export feeds both.

Choices, pinned here so the export's numeric check and the server compile the same thing:

* precision is explicit both ways: ``bf16`` sets the inference precision hint to bf16; ``fp32``
  sets it to f32, because on AMX machines the plugin's *default* hint is already bf16 and an
  unhinted "fp32" model would silently compute in bf16 under the fp32 model id;
* the batch axis stays dynamic but bounded by the config's ``max_batch_size``: every request of
  one ``execute`` goes through ONE inference (as :class:`~mlsharp.triton.stages.OnnxRunner` does),
  and the plugin can size its buffers for the bound instead of growing them per new batch size;
* one stream, latency hint, ``threads`` (0 = the plugin's default, one per core): one request at a
  time uses every core, which is what the python backend's single ``execute`` loop needs;
* the ``ov.Model`` read from the ONNX file is dropped after compiling: the compiled model holds
  its own (for bf16, converted) weights, and keeping both would double the resident weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from mlsharp.triton.backend import Arrays
from mlsharp.triton.models import NETWORK_INPUTS, RAW_OUTPUT_NAMES
from mlsharp.triton.stages import concat_requests, split_outputs

OpenVinoPrecision = Literal["fp32", "bf16"]
#: our precision names -> OpenVINO element type names for the inference precision hint
_HINT_TYPE = {"fp32": "f32", "bf16": "bf16"}


def compile_config(precision: str, threads: int = 0) -> dict[str, object]:
    """The CPU plugin properties the runner compiles with (also recorded by the study)."""
    import openvino as ov
    import openvino.properties as props
    import openvino.properties.hint as hints

    if precision not in _HINT_TYPE:
        raise ValueError(f"OpenVINO runner precision must be one of {sorted(_HINT_TYPE)}, got {precision!r}")
    config: dict[str, object] = {
        hints.inference_precision: getattr(ov.Type, _HINT_TYPE[precision]),
        hints.performance_mode: hints.PerformanceMode.LATENCY,
        props.num_streams: 1,
    }
    if threads > 0:
        config[props.inference_num_threads] = threads
    return config


class OpenVinoRunner:
    """Every request of one ``execute`` call in ONE OpenVINO inference (batch axis concatenated)."""

    def __init__(
        self, model_path: Path, precision: OpenVinoPrecision = "bf16", threads: int = 0, max_batch: int = 8
    ) -> None:
        import openvino as ov

        core = ov.Core()
        model = core.read_model(str(model_path))
        batch_dim = model.input(NETWORK_INPUTS[0]).get_partial_shape()[0]
        #: False when the graph was exported with a fixed batch of 1 (then items run one by one)
        self.dynamic_batch = not (batch_dim.is_static and batch_dim.get_length() == 1)
        if self.dynamic_batch:
            shapes = {}
            for name in NETWORK_INPUTS:
                shape = model.input(name).get_partial_shape()
                shape[0] = ov.Dimension(1, max(1, max_batch))
                shapes[name] = shape
            model.reshape(shapes)
        self.precision = precision
        self.compiled = core.compile_model(model, "CPU", compile_config(precision, threads))
        del model
        self.request = self.compiled.create_infer_request()
        self._outputs = [self.compiled.output(name) for name in RAW_OUTPUT_NAMES]

    def effective_precision(self) -> str:
        """The inference precision the plugin actually uses, as OpenVINO names it (``f32``, ``bf16``;
        a bf16 hint falls back to ``f32`` on a CPU without native bf16)."""
        import openvino.properties.hint as hints

        return str(self.compiled.get_property(hints.inference_precision).get_type_name())

    def forward(self, image: np.ndarray, factor: np.ndarray) -> list[np.ndarray]:
        """One inference on a batch; the outputs are copies (the request reuses its buffers)."""
        result = self.request.infer(dict(zip(NETWORK_INPUTS, (image, factor), strict=True)))
        return [np.array(result[port], copy=True) for port in self._outputs]

    def run(self, requests: Sequence[Arrays]) -> list[Arrays]:
        """``requests``: per request ``image[B,3,S,S]`` and ``disparity_factor[B,1]`` (or ``[B]``)."""
        image, factor, sizes = concat_requests(requests)
        if self.dynamic_batch:
            outputs = self.forward(image, factor)
        else:
            parts = [self.forward(image[i : i + 1], factor[i : i + 1]) for i in range(len(factor))]
            outputs = [np.concatenate([p[k] for p in parts]) for k in range(len(RAW_OUTPUT_NAMES))]
        return split_outputs(outputs, sizes)
