"""One prepared GPU check: the whole eager request on a CUDA device, stage by stage.

What it measures (random weights, `full` preset unless told otherwise): decode (CPU), network
input on the GPU, the network forward in fp32 and fp16 at batch 1 and 2, unprojection on the GPU,
and encoding (CPU), so the share of non-network stages in a GPU request is known. It also records
which ONNX Runtime execution providers the machine offers: Triton's ONNX/TensorRT path needs
`tritonserver` and `onnxruntime-gpu`, which the lent GPU machine cannot install (no registry access,
and the wheels exceed what can be carried to it), so that path is reported as not run.

    python benchmarks/gpu_check.py --out "$OUT"            # on the GPU machine (see gpu_check.sh)
    python benchmarks/gpu_check.py --preset test --device cpu --repeats 1   # local dry run
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mlsharp.checkpoint import load_predictor
from mlsharp.formats import encode_scene
from mlsharp.gaussians import CameraInfo, unproject
from mlsharp.imaging import decode_image
from mlsharp.preprocess import to_network_input


def photo_jpeg(width_px: int = 1600, height_px: int = 1200) -> bytes:
    """A photo-sized JPEG with gradients and shapes (no binary fixtures needed)."""
    y, x = np.mgrid[0:height_px, 0:width_px].astype(np.float32)
    rgb = np.stack([x / width_px, y / height_px, 0.5 + 0.5 * np.sin(x / 40.0) * np.cos(y / 55.0)], -1)
    buffer = io.BytesIO()
    Image.fromarray((rgb * 255).astype(np.uint8)).save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


def timed(fn: Callable[[], object], sync: Callable[[], None], repeats: int) -> tuple[float, object]:
    """Median seconds of `repeats` runs after one warm-up, and the last result."""
    result = fn()
    sync()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        sync()
        seconds.append(time.perf_counter() - start)
    return float(np.median(seconds)), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="full")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    report: dict = {
        "what": "eager SHARP request stages on one device; RANDOM WEIGHTS (timing only, not a result)",
        "preset": args.preset,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
    }
    try:
        import onnxruntime

        report["onnxruntime"] = onnxruntime.__version__
        report["onnxruntime_providers"] = onnxruntime.get_available_providers()
    except ImportError:
        report["onnxruntime"] = None

    data = photo_jpeg()
    stages: dict[str, float] = {}
    stages["decode_s"], decoded = timed(lambda: decode_image(data), lambda: None, args.repeats)
    start = time.perf_counter()
    loaded = load_predictor(args.preset, random_weights=True, device=device)
    report["build_s"] = time.perf_counter() - start
    size = loaded.config.working_size_px
    stages["network_input_s"], (image, disparity) = timed(
        lambda: to_network_input(decoded.rgb, decoded.focal_px, size, device=device), sync, args.repeats
    )

    forwards = []
    model = loaded.model
    for dtype_name, dtype in (("fp32", torch.float32), ("fp16", torch.float16)):
        model = model.to(dtype)
        for batch in (1, 2):
            images = image.to(dtype).expand(batch, -1, -1, -1).contiguous()
            factors = disparity.to(dtype).expand(batch).contiguous()
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            with torch.inference_mode():
                seconds, raw = timed(lambda m=model, i=images, f=factors: m(i, f), sync, args.repeats)
            finite = all(bool(torch.isfinite(t).all()) for t in raw)
            peak_gib = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
            forwards.append(
                {"precision": dtype_name, "batch": batch, "seconds": seconds, "finite": finite,
                 "images_per_s": batch / seconds, "peak_gib": peak_gib}
            )  # fmt: skip
            print(f"forward {dtype_name} batch {batch}: {seconds:.3f} s, finite={finite}, peak={peak_gib}")
            if dtype_name == "fp16" and batch == 1:
                raw_fp16 = raw
    report["forward"] = forwards

    camera = CameraInfo(decoded.focal_px, decoded.width_px, decoded.height_px)
    raw_one = [t[0].float() for t in raw_fp16]
    with torch.inference_mode():
        stages["unproject_s"], gaussians = timed(
            lambda: unproject(*raw_one, camera, size), sync, args.repeats
        )
    cpu = type(gaussians)(*(t.cpu() for t in vars(gaussians).values()))
    stages["encode_ply_s"], ply = timed(lambda: encode_scene("ply", cpu, camera), lambda: None, args.repeats)
    stages["encode_spz_s"], _ = timed(lambda: encode_scene("spz", cpu, camera), lambda: None, 1)
    stages["forward_fp16_b1_s"] = next(
        f["seconds"] for f in forwards if f["precision"] == "fp16" and f["batch"] == 1
    )
    non_network = (
        stages["decode_s"] + stages["network_input_s"] + stages["unproject_s"] + stages["encode_ply_s"]
    )
    stages["non_network_share_ply"] = non_network / (non_network + stages["forward_fp16_b1_s"])
    report["stages"] = stages
    report["gaussians"] = gaussians.num_gaussians
    report["ply_bytes"] = len(ply)
    report["triton_onnx_path"] = (
        "not run: the GPU machine has no tritonserver and cannot install onnxruntime-gpu (no registry "
        "access; wheels too large to carry)"
    )
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu_check.json").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
