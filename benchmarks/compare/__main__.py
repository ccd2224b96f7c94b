"""``python -m benchmarks.compare``: whole-request time, Triton ensemble vs eager ScenePipeline.

Both paths go from the encoded image bytes to the encoded scene bytes (decode .. encode) for the
same photo and the same weights, in one process run, alternating eager and Triton requests so that
background load hits both alike. Triton's time includes the gRPC round trip on loopback. The
weights are the same when the repository's ``model_id`` equals the eager predictor's (checked).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np


def repository_model_id(repository: Path) -> str:
    """The ``model_id`` the exporter stamped into the repository."""
    from mlsharp.triton.config import parse_pbtxt

    config = parse_pbtxt((repository / "preprocess" / "config.pbtxt").read_text())
    if "model_id" not in config.parameters:
        raise SystemExit(f"error: {repository} has no model_id parameter")
    return config.parameters["model_id"].string_value


def same_weights(served_id: str, weights_id: str) -> bool:
    """Whether a repository's model id is ``weights_id`` served by some CPU runtime and precision
    (``+int8``, ``+ov-bf16``...): then eager and Triton run the same weights."""
    from mlsharp.triton.models import CPU_RUNTIME_PRECISIONS, served_model_id

    return served_id in {
        served_model_id(weights_id, precision, runtime)
        for runtime, precisions in CPU_RUNTIME_PRECISIONS.items()
        for precision in precisions
    }


def ply_vertices(data: bytes) -> np.ndarray:
    """Binary little-endian float PLY vertices as an (N, properties) float32 array."""
    head, _, body = data.partition(b"end_header\n")
    lines = head.decode("ascii").splitlines()
    count = next(int(line.split()[2]) for line in lines if line.startswith("element vertex"))
    props = []
    for line in lines[lines.index(next(x for x in lines if x.startswith("element vertex"))) + 1 :]:
        if not line.startswith("property"):
            break
        props.append(line.split()[1])
    if any(p != "float" for p in props):
        raise ValueError(f"non-float vertex properties {props}")
    return np.frombuffer(body[: count * 4 * len(props)], dtype="<f4").reshape(count, len(props))


def timed(fn: Callable[[], bytes]) -> tuple[float, bytes]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.compare", description=__doc__)
    p.add_argument("--preset", choices=("test", "tiny", "full"), default="test")
    p.add_argument("--checkpoint", help="SHARP checkpoint; default random weights (--seed)")
    p.add_argument("--seed", type=int, default=1, help="seed of the random weights")
    p.add_argument(
        "--repository", type=Path, help="exported repository with the same weights (default: export)"
    )
    p.add_argument("--work", type=Path, default=Path("artifacts/compare"), help="export dir when exporting")
    p.add_argument("--image", type=Path, help="photo (default: a generated 1024x768 photo-like JPEG)")
    p.add_argument("--repeats", type=int, default=3, help="timed requests per path (after the warm-up)")
    p.add_argument("--warmup", type=int, default=1, help="untimed requests per path first (default 1)")
    p.add_argument(
        "--sequential",
        action="store_true",
        help="all eager requests first, free the eager model, then Triton's: the two never hold their "
        "memory at once (the full preset's eager ~10 GB peak + a served repository's ~10 GB), at the "
        "cost of not alternating under the same background load",
    )
    p.add_argument(
        "--triton-url",
        help="gRPC host:port of a tritonserver already serving --repository (default: start one on it)",
    )
    p.add_argument("--json", type=Path, help="also write the result as JSON here")
    p.add_argument(
        "--save-scenes",
        type=Path,
        metavar="DIR",
        help="write the last eager.ply and triton.ply here (for mlsharp compare-render eager.ply triton.ply)",
    )
    return p


def _export(args: argparse.Namespace) -> Path:
    out = (args.work / f"{args.preset}").resolve()
    repository = out / "model_repository"
    if not (repository / "mlsharp" / "config.pbtxt").exists():
        weights = (
            ["--checkpoint", args.checkpoint]
            if args.checkpoint
            else ["--random-weights", "--seed", str(args.seed)]
        )
        cmd = [sys.executable, "-m", "export", "--preset", args.preset, *weights, "--out", str(out)]
        print("exporting:", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
    return repository


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.triton_url and not args.repository:  # before any export or model load
        print("error: --triton-url needs --repository, the repository that server serves", file=sys.stderr)
        return 2
    import tritonclient.grpc as grpcclient

    from mlsharp.checkpoint import load_predictor
    from mlsharp.imaging import decode_image
    from mlsharp.pipeline import ScenePipeline
    from mlsharp.triton.server import TritonServer
    from mlsharp_tools.perf.inputs import generated_photos

    photo = args.image.read_bytes() if args.image else generated_photos(((1024, 768, 2),))[0]
    repository = args.repository.resolve() if args.repository else _export(args)
    loaded = load_predictor(
        args.preset, checkpoint=args.checkpoint, random_weights=not args.checkpoint, seed=args.seed
    )
    served_id = repository_model_id(repository)
    if not same_weights(served_id, loaded.model_id):
        print(f"error: Triton serves {served_id!r} but eager loaded {loaded.model_id!r}", file=sys.stderr)
        return 2
    pipeline: ScenePipeline | None = ScenePipeline(loaded)
    weights_id = loaded.model_id
    del loaded  # --sequential frees the eager model: no reference may outlive the pipeline

    def eager() -> bytes:
        assert pipeline is not None
        return pipeline.predict(decode_image(photo), ("ply",)).encoded["ply"]

    times: dict[str, list[float]] = {"eager": [], "triton": []}
    scenes: dict[str, bytes] = {}

    def measure(paths: Sequence[tuple[str, Callable[[], bytes]]]) -> None:
        """Warm-ups, then the timed runs, alternating between ``paths`` within each round."""
        for _ in range(args.warmup):  # first-run allocations and ORT/torch set-up
            for name, fn in paths:
                print(f"warm-up {name}: {timed(fn)[0]:.3f} s", flush=True)
        for run in range(args.repeats):
            for name, fn in paths:
                seconds, scenes[name] = timed(fn)
                times[name].append(seconds)
                print(f"run {run + 1} {name}: {seconds:.3f} s", flush=True)

    load_before = os.getloadavg()
    if args.sequential:  # eager's peak is over, and its weights freed, before Triton loads
        measure([("eager", eager)])
        pipeline = None
        gc.collect()
    with contextlib.ExitStack() as stack:
        server = None
        if not args.triton_url:
            server = stack.enter_context(TritonServer(repository, startup_timeout_s=900))
        client = grpcclient.InferenceServerClient(args.triton_url or server.grpc_url)  # type: ignore[union-attr]

        def triton() -> bytes:
            arrays = {
                "image_bytes": np.array([[photo]], dtype=object),
                "focal_px": np.zeros((1, 1), np.float32),
                "focal_mm": np.zeros((1, 1), np.float32),
                "formats": np.array([[b"ply"]], dtype=object),
            }
            inputs = []
            for name, value in arrays.items():
                tensor = grpcclient.InferInput(
                    name, list(value.shape), "BYTES" if value.dtype == object else "FP32"
                )
                tensor.set_data_from_numpy(value)
                inputs.append(tensor)
            result = client.infer("mlsharp", inputs, outputs=[grpcclient.InferRequestedOutput("scenes")])
            return bytes(result.as_numpy("scenes").reshape(-1)[0])

        measure([("triton", triton)] if args.sequential else [("eager", eager), ("triton", triton)])
        load_after = os.getloadavg()
        client.close()
        if server is not None:  # our own server, measured: skip the graceful unload (~6 s)
            server.kill()

    if args.save_scenes:
        args.save_scenes.mkdir(parents=True, exist_ok=True)
        for name, scene in scenes.items():
            (args.save_scenes / f"{name}.ply").write_bytes(scene)
    med = {name: statistics.median(values) for name, values in times.items()}
    # rot_* are left out: q and -q are one rotation, and near-isotropic gaussians have no unique axes
    ours, ref = ply_vertices(scenes["triton"])[:, :10], ply_vertices(scenes["eager"])[:, :10]
    diff = float((np.abs(ours - ref).max(axis=0) / np.maximum(np.abs(ref).max(axis=0), 1e-12)).max())
    print(
        f"preset {args.preset}, weights {weights_id}, served {served_id}, "
        f"image {len(photo)} bytes, {args.repeats} repeats"
    )
    for name in ("eager", "triton"):
        runs = " ".join(f"{t:.3f}" for t in times[name])
        print(f"{name:6s} whole request (decode..encode): median {med[name]:.3f} s  runs [{runs}]")
    print(f"ratio triton/eager: {med['triton'] / med['eager']:.3f}")
    print(
        f"max PLY difference (position, colour, opacity, scale) "
        f"triton vs eager, relative to property range: {diff:.3e} "
        f"(sizes {len(scenes['triton'])} / {len(scenes['eager'])} bytes)"
    )
    print(f"load average (1 min) before {load_before[0]:.2f}, after {load_after[0]:.2f}")
    if args.json:
        result = {
            "what": "whole request decode..encode, Triton ensemble vs eager ScenePipeline",
            "preset": args.preset,
            "model_id": weights_id,
            "served_model_id": served_id,
            "random_weights": not args.checkpoint,
            "image_bytes": len(photo),
            "times_s": times,
            "median_s": med,
            "ratio_triton_over_eager": med["triton"] / med["eager"],
            "order": "sequential (eager first)" if args.sequential else "alternating",
            "max_relative_ply_difference": diff,
            "load_average_1min": [load_before[0], load_after[0]],
            "cpu_count": os.cpu_count(),
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
