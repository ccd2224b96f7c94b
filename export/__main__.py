"""``python -m export``: trace SharpPredictor to ONNX/TorchScript, check the numerics, write the
Triton model repository and ``export_manifest.json``.

    python -m export --preset test --random-weights --out artifacts/export-test
    python -m export --preset full --checkpoint sharp_2572gikvuh.pt --out artifacts/full \\
        --target gpu --precision fp16                      # PyTorch on CUDA (the GPU default)
    python -m export ... --target gpu --gpu-runtime tensorrt --precision fp16   # or: cuda
    python -m export --preset full --checkpoint sharp_2572gikvuh.pt --out artifacts/full-ov \\
        --precision fp32,ov-bf16      # CPU target served by OpenVINO in bf16 (or: auto)

Exit codes: 0 ok, 1 a numeric check failed (manifest written, repository not), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import torch

from export import graphs, verify
from export.gpu import fp16_safety, gpu_files, served_sha256
from export.manifest import file_entry, write_manifest
from export.repository import onnx_files, place_file, write_repository
from export.serving import (
    AUTO,
    CPU_VARIANTS,
    Reference,
    ServedVariant,
    check_variants,
    choose_cpu_variants,
    openvino_installed,
)
from mlsharp.cpu_features import read_cpu_features
from mlsharp.errors import InvalidParameterError, MLSharpError
from mlsharp.sample_image import photo_like_jpeg
from mlsharp.triton.gpu_target import COMPILE_MODES, GPU_RUNTIMES, check_gpu_serving
from mlsharp.triton.models import RepositoryOptions, served_model_id

FORMATS = ("onnx", "torchscript")
PRECISIONS = ("fp32", "fp16", "bf16", *CPU_VARIANTS, AUTO)


def _csv(choices: Sequence[str]):
    def parse(text: str) -> list[str]:
        values = [v.strip() for v in text.split(",") if v.strip()]
        bad = [v for v in values if v not in choices]
        if bad or not values:
            raise argparse.ArgumentTypeError(
                f"choose from {', '.join(choices)} (comma-separated), got {text!r}"
            )
        return values

    return parse


def _sizes(text: str) -> tuple[int, ...]:
    if text.strip().lower() == "none":
        return ()
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"comma-separated batch sizes or 'none', got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m export", description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", required=True, choices=("full", "tiny", "test"))
    weights = p.add_mutually_exclusive_group(required=True)
    weights.add_argument("--checkpoint", type=Path, help="SHARP checkpoint (.pt)")
    weights.add_argument("--random-weights", action="store_true", help="random network, for tests only")
    p.add_argument("--seed", type=int, default=0, help="seed for --random-weights")
    p.add_argument("--out", type=Path, required=True, help="export directory")
    p.add_argument("--repository", type=Path, help="Triton repository (default: OUT/model_repository)")
    p.add_argument("--no-repository", action="store_true", help="export and check only")
    p.add_argument(
        "--precision",
        type=_csv(PRECISIONS),
        default=["fp32"],
        help=(
            "fp32, fp16, bf16 (GPU; bf16 with --gpu-runtime torch); what the CPU target serves: int8 "
            "(opt-in, quantized MatMuls on ONNX Runtime; model id +int8), ov-fp32 / ov-bf16 (OpenVINO; "
            "+ov-fp32 / +ov-bf16), auto (ov-bf16 where the CPU has AMX or AVX-512 BF16 and openvino is "
            "installed, else ONNX Runtime fp32)"
        ),
    )
    p.add_argument("--formats", type=_csv(FORMATS), default=list(FORMATS), help="onnx and/or torchscript")
    p.add_argument(
        "--onnx-from",
        type=Path,
        metavar="MODEL_ONNX",
        help="reuse model.onnx (+ its .data) from an earlier export of the same preset and weights instead "
        "of tracing again (minutes at the full preset), e.g. to serve another precision; it is checked "
        "against eager like a fresh graph, so a graph of other weights fails the check",
    )
    p.add_argument("--target", choices=("cpu", "gpu"), default="cpu", help="how Triton runs `sharp`")
    p.add_argument(
        "--gpu-runtime",
        "--gpu-accelerator",  # its name before the PyTorch runtime existed
        dest="gpu_runtime",
        choices=GPU_RUNTIMES,
        default="torch",
        help="what runs `sharp` on the GPU target: torch (PyTorch on CUDA, the default: the one GPU path "
        "measured so far), tensorrt or cuda (Triton's onnxruntime backend on the mixed fp16 graph)",
    )
    p.add_argument(
        "--compile-mode",
        choices=COMPILE_MODES,
        default="none",
        help="torch.compile mode of the PyTorch GPU runner",
    )
    p.add_argument("--image", type=Path, help="image for the numeric check (default: generated photo)")
    p.add_argument("--size", type=int, help="working size; only the preset's own size is valid")
    p.add_argument("--verify-batch", type=int, help="items in the check batch (default 2; 1 for full)")
    p.add_argument(
        "--fp64-floor",
        choices=("auto", "on", "off"),
        default="auto",
        help="also run eager fp64 to report float32's own error per output (auto: not for full)",
    )
    p.add_argument(
        "--fp16-report",
        choices=("auto", "on", "off"),
        default="auto",
        help="with an fp16 graph, record in the manifest its fp32 islands and the fp16/bf16 error and fp32 "
        "activation maxima per layer type (eager, several forwards; auto: on a CUDA device if there is "
        "one, else on the CPU except at the full preset, which then records the islands only)",
    )
    p.add_argument("--max-batch-size", type=int, help="Triton max_batch_size (default: 8 cpu small, 4 gpu)")
    p.add_argument("--max-queue-delay-us", type=int, default=20_000)
    p.add_argument(
        "--max-queue-size",
        type=int,
        default=64,
        help="requests `sharp` may hold waiting before Triton refuses more (0 = unbounded)",
    )
    p.add_argument(
        "--preferred-batch-sizes",
        type=_sizes,
        help="sharp's preferred batch sizes, e.g. 2,4 or none (default: 2, 4, 8, 16 up to the max)",
    )
    p.add_argument("--preprocess-instances", type=int, default=2)
    p.add_argument("--postprocess-instances", type=int, default=2)
    p.add_argument("--intra-op-threads", type=int, default=0, help="ORT threads in the CPU runner (0 = auto)")
    return p


def _check_size(preset_name: str, working_size: int, size: int | None) -> None:
    from mlsharp.presets import PRESETS

    if size is not None and size != working_size:
        valid = ", ".join(f"{name}: {cfg.working_size_px}" for name, cfg in PRESETS.items())
        # an MLSharpError: main() prints it and exits 2 ("bad arguments"), not 1 ("check failed")
        raise InvalidParameterError(
            f"--size {size} is not valid for preset {preset_name!r}; the network has one static "
            f"working size per preset ({valid}). Photos of any size are resized to it by `preprocess`."
        )


def _check_inputs(image_bytes: bytes, working_size: int, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A real photo, mirrored for the second item (different content, different focal)."""
    from mlsharp.imaging import decode_image
    from mlsharp.preprocess import to_network_input

    decoded = decode_image(image_bytes)
    images, factors = [], []
    for item in range(batch):
        rgb = decoded.rgb if item % 2 == 0 else decoded.rgb[:, ::-1].copy()
        image, factor = to_network_input(rgb, decoded.focal_px * (1.0 + 0.1 * item), working_size)
        images.append(image)
        factors.append(factor)
    return torch.cat(images), torch.cat(factors)


def _check_onnx_from(args: argparse.Namespace) -> None:
    """Refuse a ``--onnx-from`` that cannot be reused, before any work (exit 2)."""
    source = args.onnx_from
    if source is None:
        return
    if "onnx" not in args.formats:
        raise InvalidParameterError("--onnx-from reuses the ONNX graph: add onnx to --formats")
    if not source.is_file():
        raise InvalidParameterError(
            f"--onnx-from {source}: no such file (give the earlier export's onnx/model.onnx)"
        )
    if source.name != "model.onnx":
        raise InvalidParameterError(
            f"--onnx-from {source}: expected a file named model.onnx (its weights file is found by that name)"
        )
    try:
        graphs.check_onnx_signature(source)
    except Exception as error:  # onnx's DecodeError or our signature RuntimeError: either way not ours
        raise InvalidParameterError(f"--onnx-from {source} is not an exported SHARP graph: {error}") from None


def _reuse_onnx(source: Path, target: Path) -> Path:
    """Hard-link (or copy) the graph and its weights file into this export's ``onnx/``."""
    if source == target.resolve():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    for path in onnx_files(source):
        place_file(path, target.parent / path.name)
    return target


def _check_precision(args: argparse.Namespace) -> list[ServedVariant]:
    """The variants to check, fastest first; refuses requests that cannot be served (exit 2)."""
    variants = choose_cpu_variants(args.precision, args.target, read_cpu_features(), openvino_installed())
    if args.target == "gpu":
        try:
            check_gpu_serving(args.gpu_runtime, variants[0].precision, args.max_batch_size or 4)
        except ValueError as error:
            raise InvalidParameterError(str(error)) from None
    for variant in variants:
        if (variant.runtime != "onnxruntime" or variant.precision == "int8") and "onnx" not in args.formats:
            raise InvalidParameterError(
                f"--precision {variant.runtime} {variant.precision} serves the ONNX graph: add onnx to "
                "--formats"
            )
    return variants


def run(args: argparse.Namespace) -> int:
    from mlsharp.checkpoint import load_predictor
    from mlsharp.presets import get_preset

    config = get_preset(args.preset)
    _check_size(args.preset, config.working_size_px, args.size)
    variants = _check_precision(args)
    _check_onnx_from(args)
    print("to serve, first that passes its check: " + "; ".join(map(str, variants)), flush=True)
    max_batch_size = args.max_batch_size or (4 if args.target == "gpu" or args.preset == "full" else 8)
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    loaded = load_predictor(
        args.preset, checkpoint=args.checkpoint, random_weights=args.random_weights, seed=args.seed
    )
    model = loaded.model.eval()
    image_bytes = args.image.read_bytes() if args.image else photo_like_jpeg()
    batch = args.verify_batch or (1 if args.preset == "full" else 2)
    image, factor = _check_inputs(image_bytes, config.working_size_px, batch)
    reference, eager_s = verify.eager_outputs(model, image, factor)
    print(f"eager fp32 batch {batch}: {eager_s:.1f} s", flush=True)
    floor = None
    if args.fp64_floor == "on" or (args.fp64_floor == "auto" and args.preset != "full"):
        floor = verify.fp64_floor(model, image, factor, reference)

    checks: list[verify.Check] = []
    files: dict[str, Path] = {}
    timings: dict[str, float] = {"eager_forward": eager_s}
    if "onnx" in args.formats:
        start = time.perf_counter()
        onnx_path = out / "onnx" / "model.onnx"
        if args.onnx_from:
            files["onnx_fp32"] = _reuse_onnx(args.onnx_from.resolve(), onnx_path)
        else:
            files["onnx_fp32"] = graphs.export_onnx(model, config.working_size_px, onnx_path)
        timings["onnx_reused" if args.onnx_from else "onnx_export"] = time.perf_counter() - start
        checks.append(verify.check_onnx(files["onnx_fp32"], "fp32", image, factor, reference, floor=floor))
        # the mixed fp16 graph: served by TensorRT/CUDA fp16; the PyTorch GPU runtime never loads it
        torch_gpu = args.target == "gpu" and args.gpu_runtime == "torch"
        if "fp16" in args.precision and not torch_gpu:
            files["onnx_fp16"] = graphs.convert_fp16(files["onnx_fp32"], out / "onnx" / "model.fp16.onnx")
            checks.append(
                verify.check_onnx(files["onnx_fp16"], "fp16", image, factor, reference, floor=floor)
            )
    checked = check_variants(
        variants,
        files,
        out / "onnx",
        Reference(image, factor, reference, floor),
        threads=args.intra_op_threads,
        timings=timings,
    )
    checks += checked.checks
    variant = checked.served or variants[-1]  # none passed: the manifest names the last one tried
    if args.target == "gpu":
        checks += gpu_files(
            args, model, files, out, Reference(image, factor, reference, floor), variant.precision
        )
    if "torchscript" in args.formats:
        start = time.perf_counter()
        files["torchscript"] = graphs.export_torchscript(
            model, config.working_size_px, out / "torchscript" / "model.pt"
        )
        timings["torchscript_export"] = time.perf_counter() - start
        checks.append(verify.check_torchscript(files["torchscript"], image, factor, reference, floor=floor))
    for check in checks:
        print("\n".join(check.lines()), flush=True)
    ok = all(c.ok for c in checks) and checked.served is not None

    repository = None
    # each file hashed once: the manifest lists them, and TensorRT's cache is named after the served one
    entries = {key: [file_entry(p, out) for p in onnx_files(path)] for key, path in files.items()}
    opts = RepositoryOptions(
        preset=config.name,
        working_size_px=config.working_size_px,
        num_gaussians=config.num_gaussians,
        model_id=served_model_id(
            loaded.model_id, variant.precision, args.gpu_runtime if args.target == "gpu" else variant.runtime
        ),
        random_weights=loaded.random_weights,
        target=args.target,
        max_batch_size=max_batch_size,
        max_queue_delay_us=args.max_queue_delay_us,
        max_queue_size=args.max_queue_size,
        preferred_batch_sizes=args.preferred_batch_sizes,
        preprocess_instances=args.preprocess_instances,
        postprocess_instances=args.postprocess_instances,
        intra_op_threads=args.intra_op_threads,
        # a CPU export that also converts fp16 still serves fp32 (the CPU runner has no fp16 path)
        precision=variant.precision,  # type: ignore[arg-type]
        # the CPU runner field; the GPU target names its runtime in gpu_runtime
        runtime=variant.runtime if args.target == "cpu" else "onnxruntime",  # type: ignore[arg-type]
        gpu_runtime=args.gpu_runtime,
        compile_mode=args.compile_mode,
        served_sha256=served_sha256(args, entries, variant.precision),
    )
    if ok and not args.no_repository and "onnx_fp32" in files:
        repository = write_repository(
            (args.repository or out / "model_repository").resolve(),
            opts,
            files["onnx_fp32"],
            fp16_onnx_path=files.get("onnx_fp16"),
            int8_onnx_path=files.get("onnx_int8"),
            openvino_ir_path=files.get("openvino_bf16"),
            torch_weights_path=files.get("torch_weights"),
        )
        print(f"triton repository ({args.target}): {repository}")
    write_manifest(
        out / "export_manifest.json",
        {
            "preset": config.name,
            "working_size_px": config.working_size_px,
            "num_gaussians": config.num_gaussians,
            "model_id": opts.model_id,
            "weights_model_id": loaded.model_id,
            "served_precision": opts.precision,
            "served_runtime": opts.runtime if opts.target == "cpu" else f"gpu: {opts.gpu_runtime}",
            "served_choice": variant.reason,
            "cpu": read_cpu_features().summary(),
            "random_weights": loaded.random_weights,
            "seed": args.seed if loaded.random_weights else None,
            "checkpoint": str(args.checkpoint) if args.checkpoint else None,
            "checkpoint_sha256": loaded.checkpoint_sha256,
            "exporter": graphs.EXPORTER,
            "onnx_from": str(args.onnx_from.resolve()) if args.onnx_from else None,
            "opset": graphs.OPSET,
            "dynamic_batch": True,
            "precisions": args.precision,
            "check_image": str(args.image)
            if args.image
            else "generated photo-like JPEG (mlsharp.sample_image)",
            "tolerances": {k: {"rtol": v[0], "atol": v[1]} for k, v in verify.TOLERANCES.items()},
            "checks": [c.to_json() for c in checks],
            # auto's candidates that failed their check and were therefore not served
            "rejected_checks": [c.to_json() for c in checked.rejected],
            # fp16 graph: its fp32 islands, activation maxima and fp16/bf16 deviation per layer type
            "fp16_safety": fp16_safety(args, model, image, factor, files, opts.precision),
            "ok": ok,
            "timings_s": timings,
            "files": entries,
            "repository": str(repository.relative_to(out))
            if repository and repository.is_relative_to(out)
            else (str(repository) if repository else None),
            "repository_options": asdict(opts),
        },
    )
    print(f"manifest: {out / 'export_manifest.json'}")
    if not ok:
        print("error: a numeric check failed (see above); no repository written", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.random_weights:
        print("!!! RANDOM WEIGHTS: this export is for tests only, not a SHARP model !!!", file=sys.stderr)
    try:
        return run(args)
    except MLSharpError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
