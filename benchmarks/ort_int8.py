"""``python -m benchmarks.ort_int8``: what dynamic int8 quantization would buy on this CPU.

Times the graphs only (the served opt-in is ``python -m export --precision fp32,int8``, the same
quantization): the exported fp32 graph and a copy whose MatMuls (the ViT linear layers, ~56 % of
the fp32 forward on 2 cores) are dynamically quantized to int8 weights by ONNX Runtime's
``quantize_dynamic`` run on the same network input in one process, and the forward times, their
ratio and the output deviation are printed.

Why the deviation printed here says little: with random weights the outputs barely depend on the
encoder features, so the int8 error measured on them is far below what the real checkpoint would
show. Judge int8 quality with the real checkpoint before serving it.

    .venv/bin/python -m benchmarks.ort_int8 --onnx artifacts/full/onnx/model.onnx --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from export.graphs import quantize_int8
from export.verify import compare
from mlsharp.triton.models import NETWORK_INPUTS, RAW_OUTPUT_NAMES


def network_input(size_px: int) -> dict[str, np.ndarray]:
    """The generated photo, preprocessed as the ``preprocess`` model does."""
    from mlsharp.preprocess import to_network_input
    from mlsharp.sample_image import photo_like_rgb

    image, factor = to_network_input(photo_like_rgb(1024, 768, 2), 900.0, size_px)
    return dict(zip(NETWORK_INPUTS, (image.numpy(), factor.numpy()), strict=True))


def timed_run(path: Path, feed: dict[str, np.ndarray], threads: int) -> tuple[float, list[np.ndarray]]:
    """Seconds of one forward (after one untimed run) and its outputs, in the served runner's session."""
    from mlsharp.triton.stages import OnnxRunner

    session = OnnxRunner(path, threads).session
    session.run(list(RAW_OUTPUT_NAMES), feed)
    start = time.perf_counter()
    outputs = session.run(list(RAW_OUTPUT_NAMES), feed)
    return time.perf_counter() - start, outputs


def deviation(outputs: Sequence[np.ndarray], reference: Sequence[np.ndarray]) -> dict[str, float]:
    """max|int8 - fp32| / max|fp32| per output, from the export's own comparison."""
    check = compare("onnxruntime-cpu", "int8", outputs, reference, seconds=0.0)
    return {d.name: d.max_abs_diff / max(d.max_abs_reference, 1e-12) for d in check.diffs}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ort_int8", description=__doc__.split("\n\n")[0])
    p.add_argument("--onnx", type=Path, required=True, help="the exported fp32 model.onnx")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="ORT intra-op threads")
    p.add_argument("--json", type=Path, help="also write the result as JSON here")
    args = p.parse_args(argv)
    import onnx

    dims = onnx.load(str(args.onnx), load_external_data=False).graph.input[0].type.tensor_type.shape.dim
    size_px = int(dims[-1].dim_value)
    feed = network_input(size_px)
    with tempfile.TemporaryDirectory(prefix="mlsharp-int8-") as work:
        start = time.perf_counter()
        int8_path = quantize_int8(args.onnx, Path(work) / "model.int8.onnx")
        quantize_s = time.perf_counter() - start
        fp32_s, reference = timed_run(args.onnx, feed, args.threads)
        int8_s, outputs = timed_run(int8_path, feed, args.threads)
    result = {
        "what": "ORT CPU forward, fp32 vs dynamic int8 MatMuls, same input; an experiment, not served",
        "onnx": str(args.onnx),
        "working_size_px": size_px,
        "threads": args.threads,
        "quantize_s": quantize_s,
        "fp32_s": fp32_s,
        "int8_s": int8_s,
        "ratio_int8_over_fp32": int8_s / fp32_s,
        "max_relative_deviation": deviation(outputs, reference),
    }
    print(f"quantized in {quantize_s:.1f} s; forward fp32 {fp32_s:.3f} s, int8 {int8_s:.3f} s")
    print(f"ratio int8/fp32: {result['ratio_int8_over_fp32']:.3f}")
    for name, value in result["max_relative_deviation"].items():
        print(f"  {name:16s} max|int8 - fp32| / max|fp32| {value:.2e}")
    print("(random weights hide most of int8's error: check with the real checkpoint before serving)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
