"""One path of the CPU precision study, alone in this process (so memory peaks never add up).

    python -m benchmarks.cpu_precision.worker --path ov-bf16 --preset test --seed 0 \\
        --onnx DIR/model.onnx --out DIR

Writes ``DIR/<path>.npz`` (the five raw outputs) and ``DIR/<path>.json`` (load time, forward
times, peak RSS). The input is always the same generated photo, preprocessed as ``preprocess``
does, batch 1. Paths that run the exported graph use the served runners (ONNX Runtime:
:class:`~mlsharp.triton.stages.OnnxRunner`; OpenVINO:
:class:`~mlsharp.triton.openvino_runner.OpenVinoRunner`), so their numbers are the served ones.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import numpy as np

from mlsharp.triton.models import NETWORK_INPUTS, RAW_OUTPUT_NAMES

#: every path the study knows, in the order of the table
PATHS = (
    "eager-fp32", "eager-bf16", "eager-bf16-compile", "ort-fp32", "ort-int8", "ov-fp32", "ov-bf16", "ov-int8"
)  # fmt: skip
#: paths that run the exported ONNX graph (the study exports it first when not given)
GRAPH_PATHS = frozenset(p for p in PATHS if not p.startswith("eager"))

Forward = Callable[[np.ndarray, np.ndarray], Sequence[np.ndarray]]


def network_input(size_px: int) -> tuple[np.ndarray, np.ndarray]:
    """The generated 1024x768 photo at the network's working size (as ``preprocess`` makes it)."""
    from mlsharp.preprocess import to_network_input
    from mlsharp.sample_image import photo_like_rgb

    image, factor = to_network_input(photo_like_rgb(1024, 768, 2), 900.0, size_px)
    return image.numpy(), factor.numpy()


def peak_rss_bytes() -> int:
    """This process's peak resident set (Linux reports ``ru_maxrss`` in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _eager(preset: str, seed: int, threads: int, bf16: bool, compile_model: bool = False) -> Forward:
    import torch

    from mlsharp.checkpoint import load_predictor

    if threads > 0:
        torch.set_num_threads(threads)
    model = load_predictor(preset, random_weights=True, seed=seed).model.eval()
    if bf16:  # channels-last lets oneDNN pick its blocked bf16 convolutions
        model = model.to(memory_format=torch.channels_last)
    if compile_model:  # inductor compiles on the first forward: its cost shows as "first forward"
        model = torch.compile(model)  # type: ignore[assignment]

    def forward(image: np.ndarray, factor: np.ndarray) -> list[np.ndarray]:
        context: AbstractContextManager = (
            torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext()
        )
        with torch.inference_mode(), context:
            x = torch.from_numpy(image)
            if bf16:
                x = x.contiguous(memory_format=torch.channels_last)
            return [o.float().numpy() for o in model(x, torch.from_numpy(factor))]

    return forward


def _ort(onnx: Path, threads: int) -> Forward:
    from mlsharp.triton.stages import OnnxRunner

    session = OnnxRunner(onnx, threads).session

    def forward(image: np.ndarray, factor: np.ndarray) -> list[np.ndarray]:
        return session.run(list(RAW_OUTPUT_NAMES), dict(zip(NETWORK_INPUTS, (image, factor), strict=True)))

    return forward


def _openvino(onnx: Path, precision: str, threads: int) -> Forward:
    from mlsharp.triton.openvino_runner import OpenVinoRunner

    runner = OpenVinoRunner(onnx, precision, threads)  # type: ignore[arg-type]
    return runner.forward


def load_path(
    name: str, preset: str, seed: int, onnx: Path | None, threads: int, scratch: Path
) -> tuple[Forward, dict[str, float]]:
    """The forward function of path ``name`` and the set-up times it cost (seconds)."""
    timings: dict[str, float] = {}
    start = time.perf_counter()
    if name in GRAPH_PATHS and onnx is None:
        raise ValueError(f"path {name} needs --onnx")
    if name.endswith("int8"):  # ORT's dynamic int8 copy of the graph (what --precision int8 serves)
        from export.graphs import quantize_int8

        onnx = quantize_int8(onnx, scratch / "model.int8.onnx")  # type: ignore[arg-type]
        timings["quantize_s"] = time.perf_counter() - start
        start = time.perf_counter()
    if name == "ov-bf16":  # the IR with fp16-stored weights the export writes for --precision ov-bf16
        from export.graphs import openvino_bf16_ir

        onnx = openvino_bf16_ir(onnx, scratch / "model.ov-bf16.xml")  # type: ignore[arg-type]
        timings["ir_s"] = time.perf_counter() - start
        start = time.perf_counter()
    if name.startswith("eager-"):
        forward = _eager(preset, seed, threads, bf16="bf16" in name, compile_model=name.endswith("-compile"))
    elif name in ("ort-fp32", "ort-int8"):
        forward = _ort(onnx, threads)  # type: ignore[arg-type]
    elif name in ("ov-fp32", "ov-bf16"):
        forward = _openvino(onnx, name.removeprefix("ov-"), threads)  # type: ignore[arg-type]
    elif name == "ov-int8":  # OpenVINO on the int8 graph: integer MatMuls, f32 elsewhere
        forward = _openvino(onnx, "fp32", threads)  # type: ignore[arg-type]
    else:
        raise ValueError(f"unknown path {name!r}; choose from {', '.join(PATHS)}")
    timings["load_s"] = time.perf_counter() - start
    return forward, timings


def run(args: argparse.Namespace) -> dict[str, object]:
    from mlsharp.presets import get_preset

    image, factor = network_input(get_preset(args.preset).working_size_px)
    with tempfile.TemporaryDirectory(prefix="cpu-precision-", dir=args.out) as scratch:
        forward, timings = load_path(
            args.path, args.preset, args.seed, args.onnx, args.threads, Path(scratch)
        )
        rss_after_load = peak_rss_bytes()
        first_s, outputs = None, None
        for _ in range(args.warmup):
            start = time.perf_counter()
            outputs = forward(image, factor)
            first_s = first_s or time.perf_counter() - start
        forward_s = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            outputs = forward(image, factor)
            forward_s.append(time.perf_counter() - start)
    assert outputs is not None, "--warmup + --repeats must be >= 1"
    np.savez(
        args.out / f"{args.path}.npz", **dict(zip(RAW_OUTPUT_NAMES, map(np.asarray, outputs), strict=True))
    )
    result = {
        "path": args.path,
        **timings,
        "warmup_s": first_s,
        "forward_s": forward_s,
        "peak_rss_after_load_bytes": rss_after_load,
        "peak_rss_bytes": peak_rss_bytes(),
    }
    (args.out / f"{args.path}.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def export_graph(preset: str, seed: int, onnx: Path) -> None:
    """The network's ONNX graph, exported as ``python -m export`` does (no check, no repository)."""
    from export.graphs import export_onnx
    from mlsharp.checkpoint import load_predictor
    from mlsharp.presets import get_preset

    model = load_predictor(preset, random_weights=True, seed=seed).model.eval()
    export_onnx(model, get_preset(preset).working_size_px, onnx)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.cpu_precision.worker", description=__doc__)
    p.add_argument("--path", choices=PATHS)
    p.add_argument("--export-onnx", type=Path, help="only export the graph to this file")
    p.add_argument("--preset", required=True, choices=("test", "tiny", "full"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--onnx", type=Path)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    if args.export_onnx:
        export_graph(args.preset, args.seed, args.export_onnx)
    elif args.path and args.out:
        run(args)
    else:
        p.error("give --path and --out, or --export-onnx")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
