"""The GPU target's part of ``python -m export``: the served file, its digest, its fp16 record.

Why apart from the CLI: the GPU target serves a file of its own (PyTorch weights in the served
dtype, or the mixed fp16 graph whose sha256 names TensorRT's engine cache) and records what keeps
fp16 safe; the CPU export never touches any of it.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
from pathlib import Path
from typing import Any

import torch

from export import verify
from export.serving import Reference
from mlsharp.errors import InvalidParameterError


def gpu_files(
    args: argparse.Namespace,
    model: torch.nn.Module,
    files: dict[str, Path],
    out: Path,
    ref: Reference,
    precision: str,
) -> list[verify.Check]:
    """The GPU target's served file beside the ONNX graphs: the PyTorch runner's weights in the served
    dtype, checked by loading them through the runner itself (as Triton will), on the export's GPU
    when it has one (the compose/k8s export runs on the GPU host), else on its CPU. TensorRT and CUDA
    serve the ONNX graphs already checked above."""
    if args.gpu_runtime != "torch":
        if precision == "fp16" and "onnx_fp16" not in files:
            raise InvalidParameterError(
                f"--gpu-runtime {args.gpu_runtime} fp16 serves the fp16 graph: add onnx"
            )
        return []
    from export.torch_weights import check_torch_runner, save_served_weights
    from mlsharp.triton.gpu_target import torch_weights_filename

    path = out / "torch" / torch_weights_filename(precision)
    files["torch_weights"] = save_served_weights(model, path, precision).path
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    return [
        check_torch_runner(path, args.preset, precision, ref.image, ref.factor, ref.outputs, device=device)
    ]


def served_sha256(args: argparse.Namespace, entries: dict[str, list[dict[str, Any]]], precision: str) -> str:
    """sha256 over the sha256s of the file(s) the GPU ``sharp`` loads, graph then weights (TensorRT
    names its engine cache after it); ``entries``: the manifest's file entries by key."""
    if args.target != "gpu" or args.gpu_runtime == "torch":
        return ""
    served = entries.get("onnx_fp16" if precision == "fp16" else "onnx_fp32")
    if served is None:
        return ""
    return hashlib.sha256("".join(entry["sha256"] for entry in served).encode()).hexdigest()


def fp16_safety(
    args: argparse.Namespace,
    model: torch.nn.Module,
    image: torch.Tensor,
    factor: torch.Tensor,
    files: dict[str, Path],
    precision: str,
) -> dict[str, object] | None:
    """What keeps the fp16 graph safe, and how far half precision moves each layer type (None
    without an fp16 graph and without a half-precision PyTorch GPU runtime).

    ``--fp16-report auto``: measured on a CUDA device when the export has one (seconds there; the
    compose and Kubernetes exports run on the GPU host), else on the CPU except at the full preset
    (several eager forwards of minutes each), where only the islands are recorded and
    ``benchmarks/gpu_check.sh`` measures the rest."""
    graph = files.get("onnx_fp16")
    torch_half = args.target == "gpu" and args.gpu_runtime == "torch" and precision != "fp32"
    if graph is None and not torch_half:
        return None
    from export.precision import island_summary, precision_record

    cuda = torch.cuda.is_available()
    if args.fp16_report == "off" or (args.fp16_report == "auto" and args.preset == "full" and not cuda):
        islands = island_summary(graph) if graph is not None else None
        return {"islands": islands, "per_layer": "not measured (--fp16-report on)"}
    if cuda:
        device = torch.device("cuda")
        gpu_model = copy.deepcopy(model).to(device)
        record = precision_record(gpu_model, image.to(device), factor.to(device), graph)
        del gpu_model
        torch.cuda.empty_cache()
        return record
    return precision_record(model, image, factor, graph)
