"""The export's fp16 safety record: which nodes the fp16 graph keeps fp32, what that costs in
weight bytes, and how far eager low precision strays from fp32 per layer type.

Meant for the export manifest (key ``fp16_safety``); :func:`precision_record` is the one entry.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from export.fp16_islands import recorded_islands, weight_bytes
from mlsharp.network.precision_probe import FP16_MARGIN, FP16_MAX, precision_deviation

#: low precisions the record tries by default; fp16 may be missing kernels on some devices
DEFAULT_DTYPES: tuple[torch.dtype, ...] = (torch.bfloat16, torch.float16)


def island_summary(fp16_graph: Path) -> dict[str, Any]:
    """Islands recorded in a graph converted by :func:`export.graphs.convert_fp16`, and the bytes of
    weights kept fp32 (from the initializers' dims; external data is not read)."""
    import onnx

    model = onnx.load(str(fp16_graph), load_external_data=False)
    islands = recorded_islands(model)
    kinds = collections.Counter(reason.split(" ")[0] for reason in islands.values())
    sizes = weight_bytes(model)
    fp32_bytes, fp16_bytes = sizes.get("FLOAT", 0), sizes.get("FLOAT16", 0)
    return {
        "count": len(islands),
        # "head", "LayerNormalization", "constant" (reads one outside fp16's range), "Resize", ...
        "by_reason": dict(sorted(kinds.items())),
        "nodes": islands,
        "weight_bytes": sizes,
        "fp32_weight_bytes": fp32_bytes,
        "fp32_weight_share": fp32_bytes / (fp32_bytes + fp16_bytes) if fp32_bytes + fp16_bytes else 0.0,
    }


def precision_record(
    model: torch.nn.Module,
    image: torch.Tensor,
    factor: torch.Tensor,
    fp16_graph: Path | None,
    dtypes: Sequence[torch.dtype] = DEFAULT_DTYPES,
) -> dict[str, Any]:
    """The ``fp16_safety`` manifest entry.

    ``model``: the fp32 ``SharpPredictor`` (left fp32, on its own device); ``image`` (B, 3, S, S) in
    [0, 1] and ``factor`` (B,) on the same device (the export's check batch); ``fp16_graph``: the
    converted ``model.fp16.onnx`` (None: no island part). Keys: ``islands`` (see
    :func:`island_summary`), ``activation_maxima`` (fp32, per layer type), ``fp16_flagged`` (types
    above ``fp16_margin`` x 65504), ``deviation`` (per dtype name: the per-layer-type local error
    and the five outputs' end-to-end error of eager ``dtype`` vs fp32, or ``{"error": ...}`` where
    the device lacks a kernel). Cost: one fp32 and one low-precision forward plus a per-module fp32
    recompute, per dtype; pass ``dtypes=(torch.bfloat16,)`` to skip fp16 on a slow CPU.
    """
    record: dict[str, Any] = {
        "fp16_max": FP16_MAX,
        "fp16_margin": FP16_MARGIN,
        "islands": island_summary(fp16_graph) if fp16_graph is not None else None,
        "device": str(image.device),
        "deviation": {},
    }
    for dtype in dtypes:
        name = str(dtype).removeprefix("torch.")
        try:
            report = precision_deviation(model, image, factor, dtype).to_json()
        except (RuntimeError, NotImplementedError) as error:  # e.g. a missing Half kernel on CPU
            record["deviation"][name] = {"error": f"{type(error).__name__}: {error}"}
            continue
        record.setdefault("activation_maxima", report.pop("maxima"))
        record.setdefault("fp16_flagged", report.pop("fp16_flagged"))
        report.pop("maxima", None)
        report.pop("fp16_flagged", None)
        record["deviation"][name] = report
    return record
