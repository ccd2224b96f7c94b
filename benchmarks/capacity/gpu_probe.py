"""Measure the SHARP network's forward time and memory on a GPU (eager PyTorch, random weights).

Feeds the capacity model with a first per-GPU figure until perf_analyzer numbers for the exported
ONNX/TensorRT model in Triton exist. What it measures is the network alone (no decode, no
unprojection, no encoding), eager PyTorch (not ONNX Runtime/TensorRT), with random weights (the
official checkpoint is not needed for timing). Prints JSON; with --out also writes it to a file.

    python -m benchmarks.capacity.gpu_probe --preset full --batches 1 2 4 --precisions fp16 bf16 fp32
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import torch

from mlsharp.checkpoint import load_predictor

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def measure(model, size: int, batch: int, dtype: torch.dtype, device: str, repeats: int) -> dict:
    image = torch.rand(batch, 3, size, size, device=device, dtype=dtype)
    disparity = torch.full((batch,), 0.8, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode():
        for _ in range(2):  # warm-up (cuDNN algorithm choice, allocator)
            out = model(image, disparity)
        sync()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = model(image, disparity)
            sync()
            times.append(time.perf_counter() - t0)
    nonfinite = int(sum((~torch.isfinite(t.float())).sum().item() for t in out))
    mean = sum(times) / len(times)
    row = {
        "batch": batch,
        "precision": str(dtype).removeprefix("torch."),
        "seconds_per_batch_mean": mean,
        "seconds_per_batch_min": min(times),
        "images_per_second": batch / mean,
        "nonfinite_outputs": nonfinite,
        "gaussians_per_image": int(out[0].shape[1]),
    }
    if device.startswith("cuda"):
        row["peak_gpu_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="full")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--precisions", nargs="+", choices=sorted(DTYPES), default=["fp16", "bf16", "fp32"])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", help="also write the JSON here")
    args = ap.parse_args(argv)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    t0 = time.perf_counter()
    loaded = load_predictor(args.preset, random_weights=True, device=args.device)
    build_s = time.perf_counter() - t0
    size = loaded.config.working_size_px
    result = {
        "what": "eager PyTorch forward of the SHARP network, random weights, no pre/post-processing",
        "preset": args.preset,
        "working_size_px": size,
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor(),
        "torch": torch.__version__,
        "parameters": sum(p.numel() for p in loaded.model.parameters()),
        "build_seconds": build_s,
        "runs": [],
    }
    for name in args.precisions:
        model = loaded.model.to(DTYPES[name])
        for batch in args.batches:
            try:
                row = measure(model, size, batch, DTYPES[name], args.device, args.repeats)
            except torch.OutOfMemoryError:
                row = {"batch": batch, "precision": name, "error": "out of memory"}
            print(json.dumps(row), flush=True)
            result["runs"].append(row)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
