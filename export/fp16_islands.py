"""Mixed-precision fp16 ONNX: which nodes stay fp32 ("islands") and why.

A plain fp16 conversion breaks three things in this network:

* the heads: the depth head's disparity is clamped to [1e-4, 1e4] and inverted, the initializer adds
  1e-6 to the minimum depth, the composer clamps at 1e-6 before an inverse softplus, and the means
  come out as 1 / (rho + 1e-3) times a global scale of up to 1e4. 1e-6 is below fp16's smallest
  normal number (2^-14 = 6.1e-5) and the divisions lose most of fp16's 10-bit mantissa; eager bf16
  vs fp32 differs by > 100 % in the composer's own output on the test preset (precision_probe).
  The heads are small (a few convolutions), so they cost little to keep fp32;
* constants outside fp16's normal range: a clamp floor or epsilon that becomes subnormal or zero,
  and any value above 65504, which becomes inf;
* ``LayerNormalization``: the TensorRT execution provider's ``trt_layer_norm_fp32_fallback`` only
  covers the decomposed (ReduceMean/Pow/Sqrt) layer norm, not this native op, whose variance of an
  fp16 residual stream can overflow.

Every island is a node name for onnxconverter-common's ``node_block_list`` (the converter inserts
the Casts); :func:`fp32_islands` returns each with its reason so the export can record it, and the
converted graph carries the same table in its metadata (:data:`ISLANDS_METADATA_KEY`).

Heads are found through the module path that the torch.export-based exporter writes into every
node's ``namespace`` metadata (``...SharpPredictor/prediction_head: ...DirectPredictionHead/...``).
"""

from __future__ import annotations

import json
import tempfile
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

#: fp16's largest finite value and smallest positive normal value (2^-14)
FP16_MAX = 65504.0
FP16_MIN_NORMAL = 6.103515625e-05
#: module paths (prefixes) whose nodes stay fp32; "" is SharpPredictor's own forward (the disparity
#: clamp and depth = phi / disparity between the depth head and the initializer)
HEAD_MODULES: tuple[str, ...] = (
    "",
    "monodepth_model.monodepth_predictor.head",
    "init_model",
    "prediction_head",
    "gaussian_composer",
)
#: ops kept fp32 by name of op type (besides the converter's own DEFAULT_OP_BLOCK_LIST)
FP32_OPS: tuple[str, ...] = ("LayerNormalization",)
#: where the converted graph records its islands (JSON: node name -> reason)
ISLANDS_METADATA_KEY = "mlsharp.fp32_islands"
_SPLIT_SUFFIX = "__fp32_island"


def module_path(node: onnx.NodeProto) -> str | None:
    """Dotted path of the module that emitted ``node`` ("" for the top level), None if unknown.

    The namespace reads ``: Root/path.a: ClassA/path.a.b: ClassB/fx_node: aten.op``: one
    ``path: class`` segment per module, then the operation itself.
    """
    namespace = next((p.value for p in node.metadata_props if p.key == "namespace"), None)
    if namespace is None or "SharpPredictor" not in namespace:
        return None
    segments = namespace.split("/")[:-1]
    return segments[-1].split(": ")[0] if segments else None


def _in_head(path: str | None) -> str | None:
    if path is None:
        return None
    for head in HEAD_MODULES:
        if path == head or (head and path.startswith(head + ".")):
            return head or "SharpPredictor.forward"
    return None


def _constant_problem(values: np.ndarray) -> str | None:
    """Why a float constant cannot be fp16, or None.

    Weight tensors are judged as a whole: a random or trained weight has a few elements below
    2^-14 that become subnormal (absolute error < 3e-8), which is harmless; a scalar below it is a
    clamp floor or an epsilon, and a tensor whose every nonzero element is below it (a LayerScale
    gamma at init, a class token of std 1e-6) loses most of its bits.
    """
    magnitude = np.abs(values[np.isfinite(values)].astype(np.float64))
    nonzero = magnitude[magnitude > 0]
    if nonzero.size == 0:
        return None
    if nonzero.max() > FP16_MAX:
        return f"constant up to {nonzero.max():.3g} overflows fp16 (> {FP16_MAX:g})"
    if values.size == 1 and nonzero.min() < FP16_MIN_NORMAL:
        return f"scalar constant {nonzero.min():.3g} below fp16's smallest normal {FP16_MIN_NORMAL:.3g}"
    if nonzero.max() < FP16_MIN_NORMAL:
        return f"constant tensor entirely below fp16's smallest normal (max {nonzero.max():.3g})"
    return None


def _float_constants(graph: onnx.GraphProto, base_dir: str) -> Iterable[tuple[str, np.ndarray]]:
    """(tensor name, values) of float32 initializers and Constant nodes, one loaded at a time."""
    for tensor in graph.initializer:
        if tensor.data_type == onnx.TensorProto.FLOAT:
            yield tensor.name, onnx.numpy_helper.to_array(tensor, base_dir)
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value" and attr.t.data_type == onnx.TensorProto.FLOAT:
                    yield node.output[0], onnx.numpy_helper.to_array(attr.t, base_dir)


def fp32_islands(model: onnx.ModelProto, base_dir: str | Path = "") -> dict[str, str]:
    """Node name -> why it stays fp32, for an fp32 graph exported by :func:`export.graphs.export_onnx`.

    ``base_dir``: where external data lives when ``model`` was loaded without it (read one tensor
    at a time). Reasons, first that applies: a head module, an op in :data:`FP32_OPS`, the
    converter's default op block list, a constant out of fp16's range among the node's inputs.
    """
    from onnxconverter_common.float16 import DEFAULT_OP_BLOCK_LIST

    graph = model.graph
    problems = {
        name: reason
        for name, values in _float_constants(graph, str(base_dir))
        if (reason := _constant_problem(values)) is not None
    }
    islands: dict[str, str] = {}
    for node in graph.node:
        head = _in_head(module_path(node))
        bad_inputs = [f"constant {name}: {problems[name]}" for name in node.input if name in problems]
        if head is not None:
            islands[node.name] = f"head ({head})"
        elif node.op_type in FP32_OPS:
            islands[node.name] = f"{node.op_type} (not covered by trt_layer_norm_fp32_fallback)"
        elif node.op_type in DEFAULT_OP_BLOCK_LIST:
            islands[node.name] = f"{node.op_type} (onnxconverter-common default op block list)"
        elif bad_inputs:
            islands[node.name] = "; ".join(bad_inputs)
    return islands


def split_shared_initializers(graph: onnx.GraphProto, islands: Iterable[str]) -> list[str]:
    """Give island nodes their own copy of float initializers that fp16 nodes also read.

    The converter keeps every initializer an island reads in fp32, so an fp16 node reading the
    same one would get an fp32 input (an invalid graph). Returns the names that were split.
    """
    island_set = set(islands)
    readers: dict[str, set[bool]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, set()).add(node.name in island_set)
    split = []
    for tensor in list(graph.initializer):
        if tensor.data_type == onnx.TensorProto.FLOAT and readers.get(tensor.name) == {True, False}:
            copy = graph.initializer.add()
            copy.CopyFrom(tensor)
            copy.name = tensor.name + _SPLIT_SUFFIX
            for node in graph.node:
                if node.name in island_set:
                    node.input[:] = [copy.name if n == tensor.name else n for n in node.input]
            split.append(tensor.name)
    return split


def drop_initializer_value_info(graph: onnx.GraphProto) -> None:
    """Remove value_info entries that describe initializers (the exporter writes them).

    The converter casts a blocked node's input to fp32 whenever that input has an fp16 value_info,
    initializers included: their data would be converted to fp16 and cast back, losing exactly the
    constants an island exists to keep. Without the entry an island's initializer stays fp32.
    """
    names = {t.name for t in graph.initializer}
    kept = [v for v in graph.value_info if v.name not in names]
    del graph.value_info[:]
    graph.value_info.extend(kept)


def restore_fp32_outputs(graph: onnx.GraphProto) -> None:
    """Make every graph output FLOAT again (Triton declares FP32).

    ``keep_io_types`` adds an output Cast only for outputs still typed FLOAT, but casting a
    blocked node's result to fp16 retypes the output first, so an output produced by an island
    would come out fp16. A Cast-to-fp16 of an fp32 value becomes a Cast to fp32 (exact); any
    other fp16 producer gets a Cast to fp32 appended.
    """
    types = {v.name: v.type.tensor_type.elem_type for v in (*graph.value_info, *graph.input)}
    producer = {out: node for node in graph.node for out in node.output}
    for output in graph.output:
        if output.type.tensor_type.elem_type != onnx.TensorProto.FLOAT16:
            continue
        node = producer[output.name]
        to = next((a for a in node.attribute if a.name == "to"), None)
        if node.op_type == "Cast" and to is not None and types.get(node.input[0]) == onnx.TensorProto.FLOAT:
            to.i = onnx.TensorProto.FLOAT
        else:
            inner = output.name + "_fp16"
            node.output[:] = [inner if n == output.name else n for n in node.output]
            graph.node.append(
                onnx.helper.make_node("Cast", [inner], [output.name], to=onnx.TensorProto.FLOAT)
            )
        output.type.tensor_type.elem_type = onnx.TensorProto.FLOAT


def drop_cast_round_trips(graph: onnx.GraphProto) -> int:
    """Remove fp32 -> fp16 -> fp32 Cast pairs the converter leaves between two islands (and between
    an fp32 graph input or output and an island); returns how many Cast-to-fp32 nodes were bypassed.

    Without this an island's fp32 result would still be rounded to fp16 on its way to the next
    island, the graph outputs included.
    """
    fp16, fp32 = onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT
    producer = {out: node for node in graph.node for out in node.output}
    graph_outputs = {o.name for o in graph.output}
    types = {v.name: v.type.tensor_type.elem_type for v in (*graph.value_info, *graph.input, *graph.output)}

    def cast_to(node: onnx.NodeProto) -> int | None:
        if node.op_type != "Cast":
            return None
        return next((a.i for a in node.attribute if a.name == "to"), None)

    bypassed = 0
    for node in list(graph.node):
        up = producer.get(node.input[0]) if cast_to(node) == fp32 else None
        if up is None or cast_to(up) != fp16 or types.get(up.input[0]) != fp32:
            continue
        source = up.input[0]
        if node.output[0] in graph_outputs:
            node.input[0] = source  # Cast fp32 -> fp32 keeps the output's name; exact
        else:
            for consumer in graph.node:
                consumer.input[:] = [source if n == node.output[0] else n for n in consumer.input]
            graph.node.remove(node)
        bypassed += 1
    used = {name for node in graph.node for name in node.input} | graph_outputs
    for node in list(graph.node):
        if cast_to(node) is not None and not any(out in used for out in node.output):
            graph.node.remove(node)
    return bypassed


def fp32_weight_bytes(model: onnx.ModelProto, islands: Iterable[str]) -> int:
    """Bytes of float weights that stay fp32 when ``islands`` are kept: every float32 initializer
    an island reads, counted from its dims (no data loaded). Estimate of a converted graph's size:
    ``fp32_weight_bytes + (all float32 bytes - fp32_weight_bytes) / 2``."""
    island_set = set(islands)
    read_by_island = {name for node in model.graph.node if node.name in island_set for name in node.input}
    return sum(
        4 * int(np.prod(t.dims, dtype=np.int64))
        for t in model.graph.initializer
        if t.data_type == onnx.TensorProto.FLOAT and t.name in read_by_island
    )


def weight_bytes(model: onnx.ModelProto) -> dict[str, int]:
    """Initializer bytes per element type name ("FLOAT", "FLOAT16", ...), from dims only."""
    totals: dict[str, int] = {}
    for t in model.graph.initializer:
        kind = onnx.TensorProto.DataType.Name(t.data_type)
        size = onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
        totals[kind] = totals.get(kind, 0) + size * int(np.prod(t.dims, dtype=np.int64))
    return totals


def recorded_islands(model: onnx.ModelProto) -> dict[str, str]:
    """The islands a converted graph records in its metadata ({} for a graph without them)."""
    text = next((p.value for p in model.metadata_props if p.key == ISLANDS_METADATA_KEY), None)
    return dict(json.loads(text)) if text else {}


@dataclass
class Fp16Conversion:
    """What :func:`convert_mixed_fp16` did."""

    path: Path
    islands: dict[str, str] = field(default_factory=dict)
    fp32_weight_bytes: int = 0
    weight_bytes: dict[str, int] = field(default_factory=dict)


def convert_mixed_fp16(fp32_path: Path, fp16_path: Path) -> Fp16Conversion:
    """fp16 graph with fp32 islands and fp32 inputs/outputs (Triton declares FP32); external data
    beside ``fp16_path``. The islands are recorded in the graph's metadata."""
    from onnxconverter_common import float16

    from export.graphs import unlinked_graph

    # shape inference on the file (works past the 2 GB proto cap), as the converter's *_model_path
    # does, on a private copy where the external data is hard-linked (see unlinked_graph)
    fp16_path.parent.mkdir(parents=True, exist_ok=True)
    with (
        warnings.catch_warnings(),
        tempfile.TemporaryDirectory(prefix=".fp16-", dir=fp16_path.parent) as scratch,
    ):
        warnings.simplefilter("ignore", UserWarning)
        source = unlinked_graph(fp32_path, Path(scratch))
        # beside its external data, whose location is relative to the graph file
        with tempfile.NamedTemporaryFile(dir=source.parent, suffix=".onnx") as inferred:
            onnx.shape_inference.infer_shapes_path(str(source), inferred.name)
            model = onnx.load(inferred.name)
        islands = fp32_islands(model)
        kept_fp32 = fp32_weight_bytes(model, islands)
        split_shared_initializers(model.graph, islands)
        drop_initializer_value_info(model.graph)
        # one "truncated to 1e-07" warning per tiny weight element range; max_finite_val: fp16's own
        model = float16.convert_float_to_float16(
            model,
            min_positive_val=1e-7,
            max_finite_val=FP16_MAX,
            keep_io_types=True,
            disable_shape_infer=True,
            node_block_list=list(islands),
        )
    restore_fp32_outputs(model.graph)
    drop_cast_round_trips(model.graph)
    entry = model.metadata_props.add()
    entry.key, entry.value = ISLANDS_METADATA_KEY, json.dumps(islands, sort_keys=True)
    sizes = weight_bytes(model)
    onnx.save_model(
        model,
        str(fp16_path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=fp16_path.name + ".data",
    )
    for written in (fp16_path, fp16_path.with_name(fp16_path.name + ".data")):
        written.chmod(0o644)  # onnx writes the data file 0600: Triton may run as another user
    return Fp16Conversion(fp16_path, islands, kept_fp32, sizes)
