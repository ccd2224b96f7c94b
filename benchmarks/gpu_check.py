"""The prepared GPU check (issue 15): the GPU target's own code, measured on one CUDA device.

What it measures, in this order, stopping cleanly at ``--budget-s`` (the lent machine gives 9
minutes; the shell wrapper adds nvidia-smi and a hard timeout):

1. ``forward``: the PyTorch ``sharp`` runner (:class:`mlsharp.triton.torch_runner.TorchRunner`, the
   code Triton's python backend runs) in fp16 and bf16 at batch 1, 2 and 4, eager, with p50 seconds,
   images/s, peak GPU memory and the deviation from eager fp32; then fp16 compiled
   (``--compile-mode``), with each batch size's compile + first-run seconds.
2. ``stages``: the GPU pre-processing (decode on the CPU, resize on the GPU) and post-processing per
   format (:mod:`mlsharp.triton.device_stages`: unprojection and rows on the GPU, one copy back).
3. ``targets``: network + GPU post-processing p50 at batch 1 (goal <= 0.25 s) and batch-4
   throughput (goal >= 10 images/s), fp16, best of eager and compiled.
4. ``transfers``: pinned vs pageable host<->device copies of the real tensor sizes.
5. ``precision``: fp32 activation maxima and fp16 / bf16 local error per layer type, and per output.

RANDOM WEIGHTS (timing and numerics of the code path, never a result). Everything lands in one
JSON (``--out``/gpu_check.json). The CPU dry run (``--device cpu --preset test``) exercises every
section in CI at small sizes (no pinned memory there, and compiled runs only if asked).

    python -m benchmarks.gpu_check --out "$OUT"                                 # see gpu_check.sh
    python -m benchmarks.gpu_check --preset test --device cpu --repeats 1 --batches 1,2 --out /tmp/gpu-check
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from benchmarks.transfer_probe import p50, transfer_report
from mlsharp.checkpoint import load_predictor
from mlsharp.triton.backend import bytes_column
from mlsharp.triton.device_stages import DevicePostprocessStage, DevicePreprocessStage
from mlsharp.triton.gpu_target import GPU_SPZ_COMPRESSLEVEL
from mlsharp.triton.torch_runner import TorchRunner

FORMATS = ("ply", "ply-clean", "splat", "spz")
GOAL_B1_S = 0.25
GOAL_B4_IMAGES_PER_S = 10.0


def photo_jpeg(width_px: int = 1600, height_px: int = 1200) -> bytes:
    """A photo-sized JPEG with gradients and shapes (no binary fixtures needed)."""
    y, x = np.mgrid[0:height_px, 0:width_px].astype(np.float32)
    rgb = np.stack([x / width_px, y / height_px, 0.5 + 0.5 * np.sin(x / 40.0) * np.cos(y / 55.0)], -1)
    buffer = io.BytesIO()
    Image.fromarray((rgb * 255).astype(np.uint8)).save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


class Budget:
    """Sections run while time is left; the skipped ones are named in the report."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.perf_counter() + seconds
        self.skipped: list[str] = []

    def allows(self, section: str, needs_s: float = 0.0) -> bool:
        if time.perf_counter() + needs_s < self.deadline:
            return True
        self.skipped.append(section)
        print(f"skipped (time budget): {section}", flush=True)
        return False


class Device:
    """The device, its sync and its peak-memory counter (None on CPU)."""

    def __init__(self, name: str) -> None:
        self.device = torch.device(name)
        self.cuda = self.device.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    @contextmanager
    def peak(self, into: dict[str, Any]) -> Iterator[None]:
        if self.cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
        yield
        into["peak_gib"] = torch.cuda.max_memory_allocated(self.device) / 2**30 if self.cuda else None

    def free(self) -> None:
        if self.cuda:
            torch.cuda.empty_cache()


def relative_deviation(outputs: list[torch.Tensor], reference: list[torch.Tensor]) -> dict[str, float]:
    """Per raw output, max |runner - eager fp32| over the first item, relative to the output's range."""
    names = ("mean_vectors", "singular_values", "quaternions", "colors", "opacities")
    return {
        name: float((out[:1].float() - ref).abs().max() / ref.abs().max().clamp_min(1e-12))
        for name, out, ref in zip(names, outputs, reference, strict=True)
    }


def measure_runner(
    runner: TorchRunner,
    image: torch.Tensor,
    factor: torch.Tensor,
    dev: Device,
    batches: tuple[int, ...],
    repeats: int,
    budget: Budget,
    reference: list[torch.Tensor],
) -> list[dict[str, Any]]:
    """p50, images/s, peak memory and deviation from eager fp32 per batch size; warm-up (compile)
    seconds first."""
    rows = []
    for batch in batches:
        if not budget.allows(f"forward {runner.precision} {runner.compile_mode} batch {batch}"):
            break
        images = image.expand(batch, -1, -1, -1).contiguous()  # (B, 3, S, S) fp32
        factors = factor.expand(batch).contiguous()  # (B,)
        row: dict[str, Any] = {
            "precision": runner.precision,
            "compile_mode": runner.compile_mode,
            "batch": batch,
        }
        with dev.peak(row):
            row["first_run_s"] = runner.warmup([batch])[batch]  # compile, cuDNN autotune, CUDA graph
            seconds, outputs = p50(lambda i=images, f=factors: runner.forward(i, f), dev.sync, repeats)
        row |= {
            "p50_s": seconds,
            "images_per_s": batch / seconds,
            "finite": all(bool(torch.isfinite(t).all()) for t in outputs),
            "vs_eager_fp32": relative_deviation(outputs, reference),
        }
        print(f"forward {row}", flush=True)
        rows.append(row)
    return rows


def measure_stages(
    raw: list[torch.Tensor], parameters: dict[str, str], dev: Device, repeats: int
) -> dict[str, Any]:
    """Pre-processing of one photo, and post-processing of batch-1 raw outputs per format."""
    data = photo_jpeg()
    pre = DevicePreprocessStage(parameters, dev.device)
    pre_inputs = {
        "image_bytes": bytes_column([data]),
        "focal_px": np.zeros((1, 1), np.float32),
        "focal_mm": np.zeros((1, 1), np.float32),
        "formats": np.array([[b"ply"]], dtype=np.object_),
    }
    stages: dict[str, Any] = {}
    stages["preprocess_s"], pre_out = p50(lambda: pre.run(pre_inputs), dev.sync, repeats)
    post = DevicePostprocessStage(parameters, dev.device, spz_compresslevel=GPU_SPZ_COMPRESSLEVEL)
    names = ("mean_vectors", "singular_values", "quaternions", "colors", "opacities")
    base = {name: tensor[:1] for name, tensor in zip(names, raw, strict=True)}
    base |= {"camera": pre_out["camera"], "image_info": pre_out["image_info"]}  # the photo's own
    for fmt in (*FORMATS, "all"):
        wanted = list(FORMATS) if fmt == "all" else [fmt]
        inputs = base | {"formats": np.array([[f.encode() for f in wanted]], dtype=np.object_)}
        seconds, out = p50(lambda i=inputs: post.run(i), dev.sync, repeats)
        stages[f"postprocess_{fmt}_s"] = seconds
        stages[f"postprocess_{fmt}_bytes"] = int(sum(len(s) for s in out["scenes"][0]))
    stages["spz_compresslevel"] = GPU_SPZ_COMPRESSLEVEL
    return stages


def measure_precision(model: torch.nn.Module, image: torch.Tensor, factor: torch.Tensor) -> dict[str, Any]:
    """fp16 and bf16 against fp32 on the check input (the probe keeps its own copies)."""
    from mlsharp.network.precision_probe import precision_deviation

    reports = {}
    for dtype in (torch.float16, torch.bfloat16):
        start = time.perf_counter()
        report = precision_deviation(model, image, factor, dtype).to_json()
        report["seconds"] = time.perf_counter() - start
        reports[str(dtype).removeprefix("torch.")] = report
    return reports


def targets(forward: list[dict[str, Any]], stages: dict[str, Any]) -> dict[str, Any]:
    """The issue's goals, from the best fp16 rows (eager or compiled)."""

    def best(batch: int) -> dict[str, Any] | None:
        rows = [r for r in forward if r["precision"] == "fp16" and r["batch"] == batch]
        return min(rows, key=lambda r: r["p50_s"]) if rows else None

    b1, b4 = best(1), best(4)
    post_s = stages.get("postprocess_ply_s")
    result: dict[str, Any] = {"goal_b1_s": GOAL_B1_S, "goal_b4_images_per_s": GOAL_B4_IMAGES_PER_S}
    if b1 is not None and post_s is not None:
        total = b1["p50_s"] + post_s
        result |= {"b1_network_plus_post_ply_s": total, "b1_met": total <= GOAL_B1_S, "b1_row": b1}
    if b4 is not None:
        result |= {
            "b4_images_per_s": b4["images_per_s"],
            "b4_met": b4["images_per_s"] >= GOAL_B4_IMAGES_PER_S,
        }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="full")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--budget-s", type=float, default=480.0, help="stop starting sections after this")
    parser.add_argument(
        "--compile-mode",
        default=None,
        help="torch.compile mode of the compiled run (default: reduce-overhead on CUDA, none on CPU)",
    )
    parser.add_argument("--batches", default="1,2,4", help="batch sizes of the forward runs")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    batches = tuple(int(b) for b in args.batches.split(",") if b.strip())
    dev = Device(args.device)
    compile_mode = args.compile_mode or ("reduce-overhead" if dev.cuda else "none")
    budget = Budget(args.budget_s)
    started = time.perf_counter()
    report: dict[str, Any] = {
        "what": "the GPU target's code on one device; RANDOM WEIGHTS (timings and numerics, not a result)",
        "preset": args.preset,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": torch.cuda.get_device_name(dev.device) if dev.cuda else f"cpu: {platform.processor()}",
    }
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 references stay fp32
    loaded = load_predictor(args.preset, random_weights=True, device=dev.device)
    report["build_s"] = time.perf_counter() - started
    model, size = loaded.model.eval(), loaded.config.working_size_px
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, size, size, generator=generator).to(dev.device)  # (1, 3, S, S)
    factor = torch.tensor([0.5], device=dev.device)  # (1,)
    with torch.inference_mode():
        reference = [out.float() for out in model(image, factor)]  # eager fp32, TF32 off

    forward: list[dict[str, Any]] = []
    raw_fp16: list[torch.Tensor] = []
    for precision in ("fp16", "bf16"):
        runner = TorchRunner(copy.deepcopy(model), dev.device, precision, "none", max(batches))  # type: ignore[arg-type]
        forward += measure_runner(runner, image, factor, dev, batches, args.repeats, budget, reference)
        if precision == "fp16":
            raw_fp16 = runner.forward(image, factor)
        del runner
        dev.free()
    if compile_mode != "none" and budget.allows("forward fp16 compiled", needs_s=120):
        runner = TorchRunner(copy.deepcopy(model), dev.device, "fp16", compile_mode, max(batches))  # type: ignore[arg-type]
        forward += measure_runner(runner, image, factor, dev, batches, args.repeats, budget, reference)
        del runner
        dev.free()
    report["forward"] = forward

    parameters = {
        "working_size_px": str(size),
        "model_id": loaded.model_id,
        "random_weights": "true",
    }
    if raw_fp16 and budget.allows("stages"):
        report["stages"] = measure_stages(raw_fp16, parameters, dev, args.repeats)
        print(f"stages {report['stages']}", flush=True)
    report["targets"] = targets(forward, report.get("stages", {}))
    if budget.allows("transfers"):
        report["transfers"] = transfer_report(dev.device, args.repeats, args.preset, batches)
    if budget.allows("precision", needs_s=30):
        report["precision"] = measure_precision(model, image, factor)
    report["skipped"] = budget.skipped
    report["elapsed_s"] = time.perf_counter() - started
    try:
        import onnxruntime

        report["onnxruntime_providers"] = onnxruntime.get_available_providers()
    except ImportError:
        report["onnxruntime_providers"] = None
    report["triton_tensorrt_path"] = (
        "not run: the lent GPU machines have no tritonserver and cannot install onnxruntime-gpu or "
        "TensorRT (no registry; the wheels are too large to carry)"
    )
    text = json.dumps(report, indent=1, default=str)
    print(json.dumps(report["targets"], indent=1, default=str))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu_check.json").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
