"""Turn a ``SharpPredictor`` into deployable graphs: ONNX (fp32, optional fp16) and TorchScript.

Choices, pinned here so every export is the same:

* ONNX via the ``torch.export``-based exporter (``dynamo=True``), opset 18, weights as external
  data beside ``model.onnx`` (the full model is 2.6 GB, over protobuf's 2 GB cap), and a symbolic
  batch axis. The example batch is 2 on purpose: ``torch.export`` specialises a dimension that is
  0 or 1 in the example, which silently produced a batch-1-only graph in a trial.
* fp16: the fp32 ONNX graph converted with onnxconverter-common, inputs/outputs kept fp32 (the
  Triton contract stays FP32), as a mixed-precision graph: the heads, LayerNormalization and the
  nodes reading constants outside fp16's range stay fp32 (:mod:`export.fp16_islands`; test preset:
  mean_vectors 6.9e-3 off eager fp32 instead of 4.6e-1 for the plain conversion). Converting the
  finished graph rather than exporting a ``.half()`` model keeps one export path and lets the fp16
  file be checked against the same eager fp32 reference. On the GPU target it is what the TensorRT
  and CUDA execution providers serve in fp16 (see :mod:`mlsharp.triton.gpu_target`).
* int8 (CPU target, opt-in): ONNX Runtime's ``quantize_dynamic`` on the fp32 graph, MatMul weights
  only (the ViT linear layers: ~56 % of the fp32 forward on CPU), activations quantized per call.
  Convolutions stay fp32. It changes the numbers; the check reports by how much.
* OpenVINO bf16 (CPU target): the fp32 ONNX graph saved as OpenVINO IR with its weights stored in
  fp16. The bf16 runner converts them at compile time; what it keeps resident is the fp16 copy
  (1.3 GB at the full preset) instead of the fp32 one (2.6 GB): measured at the full preset, one
  item, 4.5 GiB resident against 7.8 GiB from ``model.onnx``. fp16 keeps 10 mantissa bits where
  bf16 computes with 7, so the stored weights lose less than the computation does; the export
  checks the IR itself against eager fp32.
* TorchScript via ``torch.jit.trace`` (``script`` cannot compile the network's Python-side
  configuration) at the same example batch.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from pathlib import Path

import torch

from mlsharp.triton.models import NETWORK_INPUTS, RAW_OUTPUT_NAMES

OPSET = 18
EXPORTER = "torch.onnx.export(dynamo=True)"
EXAMPLE_BATCH = 2


def example_inputs(
    working_size_px: int, batch: int = EXAMPLE_BATCH, seed: int = 0
) -> tuple[torch.Tensor, ...]:
    """Inputs that only fix the traced shapes (values do not matter for tracing)."""
    generator = torch.Generator().manual_seed(seed)
    image = torch.rand(batch, 3, working_size_px, working_size_px, generator=generator)
    factor = torch.linspace(0.8, 1.2, batch)
    return image, factor


def export_onnx(model: torch.nn.Module, working_size_px: int, path: Path, opset: int = OPSET) -> Path:
    """Write ``path`` (+ ``path.data``) with a dynamic batch axis; returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    batch = torch.export.Dim("batch", min=1, max=64)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", message=".*axis name: batch will not be used.*")
        torch.onnx.export(
            model.eval(),
            example_inputs(working_size_px),
            str(path),
            dynamo=True,
            opset_version=opset,
            external_data=True,
            input_names=list(NETWORK_INPUTS),
            output_names=list(RAW_OUTPUT_NAMES),
            dynamic_shapes={name: {0: batch} for name in NETWORK_INPUTS},
        )
    check_onnx_signature(path)
    return path


def check_onnx_signature(path: Path) -> None:
    """Fail unless the graph has our input/output names and a symbolic batch axis."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    names = ([i.name for i in graph.input], [o.name for o in graph.output])
    if names != (list(NETWORK_INPUTS), list(RAW_OUTPUT_NAMES)):
        raise RuntimeError(f"{path}: unexpected graph signature {names}")
    for value in (*graph.input, *graph.output):
        first = value.type.tensor_type.shape.dim[0]
        if first.HasField("dim_value"):
            raise RuntimeError(
                f"{path}: {value.name} has a fixed batch of {first.dim_value}, expected symbolic"
            )


def convert_fp16(fp32_path: Path, fp16_path: Path) -> Path:
    """Mixed-precision fp16 graph, fp32 inputs/outputs; external data beside ``fp16_path``.

    The heads, LayerNormalization and every node reading a constant outside fp16's range stay
    fp32 (:mod:`export.fp16_islands`, which records them in the graph's metadata).
    """
    from export.fp16_islands import convert_mixed_fp16

    convert_mixed_fp16(fp32_path, fp16_path)
    check_onnx_signature(fp16_path)
    return fp16_path


def unlinked_graph(onnx_path: Path, scratch: Path) -> Path:
    """``onnx_path``, or a private copy of it and its external data in ``scratch`` when that data
    has several hard links: ONNX's loader and checker refuse such data (hit by a re-export into a
    directory whose repository hard-linked it)."""
    data = onnx_path.with_name(onnx_path.name + ".data")
    if not (data.exists() and data.stat().st_nlink > 1):
        return onnx_path
    shutil.copyfile(onnx_path, scratch / onnx_path.name)
    shutil.copyfile(data, scratch / data.name)
    return scratch / onnx_path.name


def quantize_int8(fp32_path: Path, int8_path: Path) -> Path:
    """Dynamic int8 copy of ``fp32_path`` (MatMul weights int8, per tensor), external data beside it.

    The ONNX checker inside ``quantize_dynamic`` refuses external data that has several hard links
    (a re-export into a directory whose repository hard-linked it): then a private copy is read.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    int8_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".quantize-", dir=int8_path.parent) as scratch:
        source = unlinked_graph(fp32_path, Path(scratch))
        quantize_dynamic(
            str(source),
            str(int8_path),
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul"],
            use_external_data_format=True,
            extra_options={"MatMulConstBOnly": True},
        )
    check_onnx_signature(int8_path)
    return int8_path


def openvino_bf16_ir(fp32_path: Path, xml_path: Path) -> Path:
    """``model.onnx`` -> ``model.ov-bf16.xml`` + ``.bin`` (fp16-stored weights, batch axis kept)."""
    import openvino as ov

    xml_path.parent.mkdir(parents=True, exist_ok=True)
    model = ov.Core().read_model(str(fp32_path))
    ov.save_model(model, str(xml_path), compress_to_fp16=True)
    return xml_path


def export_torchscript(model: torch.nn.Module, working_size_px: int, path: Path) -> Path:
    """``torch.jit.trace`` at the example batch, saved as one zip file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(model.eval(), example_inputs(working_size_px), check_trace=False)
    traced.save(str(path))
    return path
