"""SPZ gzip level: encode seconds and bytes per level, to decide the GPU target's ``spz_compresslevel``.

Why: with the SPZ blocks packed on the GPU (:func:`mlsharp.formats.spz.spz_payload_tensor`), the
gzip on the CPU is what is left of an SPZ request's post-processing; issue 15 allows a lower zlib
level if it is measured to pay. The payload is built once (on the CPU, the same bytes the device
packer gives) and compressed at every level; the best of ``--repeats`` runs counts.

The scene is synthetic but shaped like SHARP's output: ``2 x S x S`` gaussians on the pixel grid
(two layers), a smooth depth map with noise, smooth colours with noise, scales growing with depth,
random rotations and opacities, in grid order as the network emits them. Random-weight network
outputs would be noisier than a trained model's, so treat the ratios, not the bytes, as the result.

    python benchmarks/spz_levels.py                        # full preset's size, 1,179,648 gaussians
    python benchmarks/spz_levels.py --gaussians 131072     # test preset's size
    python benchmarks/spz_levels.py --json results.json
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path
from typing import Any

import torch

from mlsharp.formats.spz import DEFAULT_COMPRESSLEVEL, encode_spz_payload, spz_payload
from mlsharp.gaussians import CameraInfo, Gaussians3D, unproject

FULL_PRESET_GAUSSIANS = 1_179_648  # 2 x 768 x 768
WORKING_SIZE_PX = 1536


def synthetic_scene(num_gaussians: int, seed: int = 0) -> Gaussians3D:
    """A grid-ordered scene of ``num_gaussians`` (rounded down to 2 x S x S), unprojected."""
    side = math.isqrt(num_gaussians // 2)
    gen = torch.Generator().manual_seed(seed)
    v, u = torch.meshgrid(torch.linspace(-1, 1, side), torch.linspace(-1, 1, side), indexing="ij")
    depth = 3.0 + 1.5 * torch.sin(2.5 * u) * torch.cos(1.7 * v) + 0.8 * v  # (S, S) metres, smooth
    layers = torch.stack([depth, depth * 1.15])  # (2, S, S): the second layer behind the first
    z = layers + 0.01 * torch.randn(layers.shape, generator=gen)
    means = torch.stack([u.expand_as(z) * z, v.expand_as(z) * z, z], dim=-1).reshape(-1, 3)
    n = means.shape[0]
    base = torch.stack([0.5 + 0.4 * u, 0.5 + 0.3 * v, 0.5 - 0.2 * u * v], dim=-1)  # (S, S, 3)
    colors = (base.expand(2, side, side, 3).reshape(-1, 3) + 0.05 * torch.randn(n, 3, generator=gen)).clamp(
        0, 1
    )
    scales = (z.reshape(-1, 1) / side) * torch.exp(0.3 * torch.randn(n, 3, generator=gen))
    quaternions = torch.randn(n, 4, generator=gen)
    opacities = torch.rand(n, generator=gen)
    camera = CameraInfo(focal_px=1400.0, width_px=2016, height_px=1512)
    return unproject(means, scales, quaternions, colors, opacities, camera, WORKING_SIZE_PX)


def measure(num_gaussians: int, repeats: int, levels: list[int]) -> dict[str, Any]:
    scene = synthetic_scene(num_gaussians)
    start = time.perf_counter()
    payload = spz_payload(scene)
    pack_s = time.perf_counter() - start
    rows = []
    for level in levels:
        best = math.inf
        for _ in range(repeats):
            start = time.perf_counter()
            data = encode_spz_payload(payload, compresslevel=level)
            best = min(best, time.perf_counter() - start)
        rows.append({"level": level, "gzip_s": round(best, 4), "bytes": len(data)})
    return {
        "gaussians": scene.num_gaussians,
        "payload_bytes": len(payload),
        "cpu_pack_s": round(pack_s, 4),
        "default_level": DEFAULT_COMPRESSLEVEL,
        "torch_threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "levels": rows,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gaussians", type=int, default=FULL_PRESET_GAUSSIANS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--levels", default="1,2,3,4,5,6,7,8,9")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    result = measure(args.gaussians, args.repeats, [int(x) for x in args.levels.split(",")])
    default = next((r for r in result["levels"] if r["level"] == DEFAULT_COMPRESSLEVEL), None)
    size = f"{result['gaussians']} gaussians, payload {result['payload_bytes']} bytes"
    print(f"{size}, CPU pack {result['cpu_pack_s']} s")
    print("level  gzip_s   bytes      vs default (time, size)")
    for row in result["levels"]:
        rel = ""
        if default is not None:
            rel = f"{row['gzip_s'] / default['gzip_s']:.2f}x  {row['bytes'] / default['bytes']:.3f}x"
        mark = " (default)" if row["level"] == DEFAULT_COMPRESSLEVEL else ""
        print(f"{row['level']:>5}  {row['gzip_s']:>6.3f}  {row['bytes']:>9}  {rel}{mark}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
