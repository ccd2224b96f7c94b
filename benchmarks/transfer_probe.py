"""Host <-> device copy speed for the tensors a request actually moves, pinned vs pageable.

What the GPU check wants to know before choosing pinned buffers in the served path: how long the
network input (fp32 [B, 3, S, S], 28 MB per item at 1536 px) takes to reach the GPU and the five
raw outputs (14 float32 per gaussian, N = 1,179,648 gaussians: 66 MB per item) take to come back,
from ordinary (pageable) host memory and from page-locked (pinned) memory, at batch 1, 2 and 4,
also in fp16. Each figure is the median of ``repeats`` timed copies after one warm-up, each timed
copy ending in ``torch.cuda.synchronize()``.

    python benchmarks/transfer_probe.py --device cuda --out "$OUT/transfer.json"   # GPU machine
    python benchmarks/transfer_probe.py --device cpu --sizes test --repeats 2      # local dry run

On a CPU "device" the copies are host to host and pinned memory does not exist: the report says so
instead of failing, so the dry run checks the tool, never a speed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from mlsharp.network import RAW_OUTPUT_NAMES
from mlsharp.presets import get_preset

#: float values per gaussian in each raw output, in RAW_OUTPUT_NAMES order (3 + 3 + 4 + 3 + 1 = 14)
CHANNELS: dict[str, int] = {
    "mean_vectors": 3,
    "singular_values": 3,
    "quaternions": 4,
    "colors": 3,
    "opacities": 1,
}
BATCHES: tuple[int, ...] = (1, 2, 4)
DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16}
PINNED_ON_CPU = "not available on cpu"


@dataclass(frozen=True)
class TensorSet:
    """Tensors copied together in one direction (one request's worth at batch ``batch``)."""

    name: str  # "image" or "raw_outputs"
    direction: str  # "host_to_device" or "device_to_host"
    batch: int
    dtype: str
    shapes: tuple[tuple[int, ...], ...]

    @property
    def bytes(self) -> int:
        size = torch.empty((), dtype=DTYPES[self.dtype]).element_size()
        return sum(size * _numel(shape) for shape in self.shapes)


def _numel(shape: Sequence[int]) -> int:
    count = 1
    for dim in shape:
        count *= dim
    return count


def tensor_sets(preset: str, batches: Sequence[int] = BATCHES) -> list[TensorSet]:
    """The network input and the five raw outputs of ``preset`` at each batch, fp32 and fp16."""
    config = get_preset(preset)
    size_px, gaussians = config.working_size_px, config.num_gaussians
    sets = []
    for batch in batches:
        for dtype in DTYPES:
            sets.append(TensorSet("image", "host_to_device", batch, dtype, ((batch, 3, size_px, size_px),)))
            outputs = tuple(
                (batch, gaussians) if CHANNELS[name] == 1 else (batch, gaussians, CHANNELS[name])
                for name in RAW_OUTPUT_NAMES
            )
            sets.append(TensorSet("raw_outputs", "device_to_host", batch, dtype, outputs))
    return sets


def _sync(device: torch.device) -> Callable[[], None]:
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def p50(fn: Callable[[], object], sync: Callable[[], None], repeats: int) -> tuple[float, Any]:
    """Median seconds of ``repeats`` runs after one warm-up run (first-touch page faults, allocator,
    lazy CUDA init), and the last result (also the GPU check's timer)."""
    result = fn()
    sync()
    seconds = []
    for _ in range(max(repeats, 1)):
        start = time.perf_counter()
        result = fn()
        sync()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), result


def time_set(spec: TensorSet, device: torch.device, pinned: bool, repeats: int) -> float:
    """Median seconds to copy every tensor of ``spec`` once in its direction."""
    dtype = DTYPES[spec.dtype]
    host = [torch.ones(shape, dtype=dtype, pin_memory=pinned) for shape in spec.shapes]
    dev = [torch.empty(shape, dtype=dtype, device=device) for shape in spec.shapes]
    if spec.direction == "host_to_device":
        pairs = list(zip(dev, host, strict=True))
    else:
        pairs = list(zip(host, dev, strict=True))

    def copy() -> None:
        for dst, src in pairs:
            dst.copy_(src, non_blocking=pinned)  # async only where pinned memory allows it

    return p50(copy, _sync(device), repeats)[0]  # the buffers go with this frame


def pinned_status(device: torch.device) -> str:
    """ "available", or why pinned host memory cannot be used on ``device``."""
    if device.type != "cuda":
        return PINNED_ON_CPU if device.type == "cpu" else f"not available on {device.type}"
    try:
        torch.empty(1, pin_memory=True)
    except RuntimeError as error:
        return f"not available: {error}"
    return "available"


def transfer_report(
    device: str | torch.device, repeats: int = 5, sizes: str = "full", batches: Sequence[int] = BATCHES
) -> dict[str, Any]:
    """Pageable and (where available) pinned copy times of ``sizes``' tensors on ``device``.

    Rows: one per tensor set x memory kind with ``bytes``, ``median_s`` and ``gb_per_s`` (1e9 B/s).
    """
    target = torch.device(device)
    pinned = pinned_status(target)
    config = get_preset(sizes)
    rows = []
    for spec in tensor_sets(sizes, batches):
        for memory in ("pageable", "pinned"):
            row: dict[str, Any] = asdict(spec) | {"bytes": spec.bytes, "memory": memory}
            row["shapes"] = [list(s) for s in spec.shapes]
            if memory == "pinned" and pinned != "available":
                row |= {"median_s": None, "gb_per_s": None, "skipped": f"pinned: {pinned}"}
            else:
                seconds = time_set(spec, target, memory == "pinned", repeats)
                row |= {"median_s": seconds, "gb_per_s": spec.bytes / seconds / 1e9 if seconds > 0 else None}
            rows.append(row)
    return {
        "device": str(target),
        "device_name": torch.cuda.get_device_name(target) if target.type == "cuda" else "cpu",
        "sizes": sizes,
        "working_size_px": config.working_size_px,
        "num_gaussians": config.num_gaussians,
        "repeats": repeats,
        "pinned": pinned,
        "rows": rows,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:1, cpu (dry run)")
    parser.add_argument("--sizes", default="full", choices=("full", "tiny", "test"), help="preset sizes")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batches", default="1,2,4", help="comma-separated batch sizes")
    parser.add_argument("--out", type=Path, help="write the JSON report here (also printed)")
    args = parser.parse_args(argv)
    batches = tuple(int(b) for b in args.batches.split(",") if b.strip())
    report = transfer_report(args.device, args.repeats, args.sizes, batches)
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
