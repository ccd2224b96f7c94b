"""The CPU form of ``sharp`` on OpenVINO: the exported graph, compiled for this CPU.

Why OpenVINO: on a Xeon with AMX its CPU plugin runs the network in bf16 (AMX tiles, fp32
accumulation) at ~0.15x of eager fp32, where ONNX Runtime fp32 is no faster than eager (issue 18).
fp32 reads the exported ``model.onnx``; bf16 reads the export's OpenVINO IR of the same graph with
fp16-stored weights (:func:`export.graphs.openvino_bf16_ir`), which halves the resident weights.

Choices, pinned here so the export's numeric check and the server compile the same thing:

* precision is explicit both ways: ``bf16`` sets the inference precision hint to bf16; ``fp32``
  sets it to f32, because on AMX machines the plugin's *default* hint is already bf16 and an
  unhinted "fp32" model would silently compute in bf16 under the fp32 model id;
* the graph is compiled for ONE item (static shapes) and the items of one ``execute`` run one
  after another. Measured at the full preset on a 2-core AMX Xeon (bf16): a batch of 2 took
  36.3 s against 19.1 s for one item, so batching buys no throughput on a CPU at 1536 px, while a
  batch axis bounded at 2 raised the resident size from 5.7 to 8.6 GiB, and a static batch of 1
  holds the least (7.8 GiB against 9.0 GiB for a 1..4 bound with fp32-stored weights);
* one stream, latency hint, ``threads`` (0 = the plugin's default, one per core): one request at a
  time uses every core, which is what the python backend's single ``execute`` loop needs;
* the ``ov.Model`` read from the file is dropped after compiling: the compiled model holds its own
  (for bf16, converted) weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from mlsharp.triton.backend import Arrays
from mlsharp.triton.models import NETWORK_INPUTS, RAW_OUTPUT_NAMES
from mlsharp.triton.stages import concat_requests, item_by_item, split_outputs

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
    """The graph compiled for one item; the items of an ``execute`` call run one after another."""

    #: the graph is compiled for a batch of one (see the module docstring)
    dynamic_batch = False

    def __init__(self, model_path: Path, precision: OpenVinoPrecision = "bf16", threads: int = 0) -> None:
        import openvino as ov

        core = ov.Core()
        model = core.read_model(str(model_path))
        shapes = {}
        for name in NETWORK_INPUTS:
            shape = model.input(name).get_partial_shape()
            shape[0] = ov.Dimension(1)
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

    def forward_one(self, image: np.ndarray, factor: np.ndarray) -> list[np.ndarray]:
        """One inference on ``image[1,3,S,S]``; the outputs are copies (the request reuses its buffers)."""
        result = self.request.infer(dict(zip(NETWORK_INPUTS, (image, factor), strict=True)))
        return [np.array(result[port], copy=True) for port in self._outputs]

    def forward(self, image: np.ndarray, factor: np.ndarray) -> list[np.ndarray]:
        """``image[B,3,S,S]``, ``factor[B]``: the items one by one, outputs concatenated."""
        return item_by_item(self.forward_one, image, factor)

    def run(self, requests: Sequence[Arrays]) -> list[Arrays]:
        """``requests``: per request ``image[B,3,S,S]`` and ``disparity_factor[B,1]`` (or ``[B]``)."""
        image, factor, sizes = concat_requests(requests)
        return split_outputs(self.forward(image, factor), sizes)
