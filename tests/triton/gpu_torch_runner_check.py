"""Manual accelerator check of the served PyTorch runner (not collected by pytest).

Run on a CUDA machine: ``PYTHONPATH=src:. python tests/triton/gpu_torch_runner_check.py``.
It measures exactly what the ``torch`` runtime of ``sharp`` serves: the weights file written by
:func:`export.torch_weights.save_served_weights`, loaded by :meth:`TorchRunner.from_file`, warmed
up and run through :meth:`TorchRunner.run`, against eager fp32 (TF32 off) on the same device with
the export's bounds. Random weights (seed 0): the numbers say whether the runtime is sound and how
fast it is, not how close real SHARP weights stay (the export checks those again).
One JSON line per (precision, compile mode) on stdout; ``--device cpu --preset test`` is a smoke run.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from export.torch_weights import check_torch_runner, save_served_weights
from export.verify import compare
from mlsharp.checkpoint import load_predictor
from mlsharp.triton.torch_runner import TorchRunner, check_compile_mode, check_precision


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="full")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--precisions", default="fp16,bf16")
    parser.add_argument("--compile-modes", default="none,reduce-overhead")
    parser.add_argument("--batch-sizes", default="1,2")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = torch.device(args.device)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    max_batch = max(batch_sizes)
    torch.backends.cuda.matmul.allow_tf32 = False  # the reference is plain fp32
    torch.backends.cudnn.allow_tf32 = False

    loaded = load_predictor(args.preset, random_weights=True, seed=0)
    size_px = loaded.config.working_size_px
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(max_batch, 3, size_px, size_px, generator=generator)  # (B, 3, S, S)
    factor = torch.linspace(0.8, 1.2, max_batch)  # (B,)
    with torch.inference_mode():
        model = loaded.model.to(device)
        reference = [o.cpu().numpy() for o in model(image.to(device), factor.to(device))]
        model.cpu()

    with tempfile.TemporaryDirectory() as scratch:
        for precision in args.precisions.split(","):
            saved = save_served_weights(loaded.model, Path(scratch) / f"w-{precision}.pt", precision)
            for mode in args.compile_modes.split(","):
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats(device)
                start = time.perf_counter()
                runner = TorchRunner.from_file(
                    saved.path,
                    args.preset,
                    device,
                    check_precision(precision),
                    check_compile_mode(mode),
                    max_batch,
                )
                load_s = time.perf_counter() - start
                warmup_s = runner.warmup(batch_sizes)
                forward_s = {}
                for batch in batch_sizes:
                    request = {"image": image[:batch], "disparity_factor": factor[:batch]}
                    times = []
                    for _ in range(args.repeats):
                        _sync(device)
                        start = time.perf_counter()
                        runner.run([request])
                        _sync(device)
                        times.append(time.perf_counter() - start)
                    forward_s[batch] = float(np.median(times))
                (outputs,) = runner.run([{"image": image, "disparity_factor": factor}])
                arrays = [outputs[name].cpu().numpy() for name in outputs]
                check = compare(f"torch-{device.type}", precision, arrays, reference, forward_s[max_batch])
                peak_gib = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
                row = {
                    "runner": runner.describe(),
                    "weights_bytes": saved.size_bytes,
                    "load_s": round(load_s, 2),
                    "warmup_s": {b: round(s, 2) for b, s in warmup_s.items()},
                    "forward_s_median": {b: round(s, 4) for b, s in forward_s.items()},
                    "peak_gib": None if peak_gib is None else round(peak_gib, 2),
                    "ok": check.ok,
                    "rel_diff": {
                        d.name: d.max_abs_diff / max(d.max_abs_reference, 1e-12) for d in check.diffs
                    },
                }
                print(json.dumps(row), flush=True)
                del runner
            if device.type == "cpu":  # the export's own check, as it would run on the export machine
                print(
                    "\n".join(
                        check_torch_runner(
                            saved.path, args.preset, precision, image, factor, reference
                        ).lines()
                    )
                )


if __name__ == "__main__":
    main()
