"""`mlsharp` command line: predict scenes from photos with the eager PyTorch path; `mlsharp tune`
measures and applies Triton settings for a model repository (mlsharp_tools.tuning, a tool around
the library: present in a source checkout, absent from the served images); `mlsharp render` and
`mlsharp compare-render` make pictures and videos of scenes and compare two scenes as images
(see mlsharp.render).

Without `--checkpoint` the official checkpoint is downloaded once to the torch hub cache. When
that is impossible the command fails at once and says how to pass a local file. `--random-weights`
exists for smoke runs only: every file it writes is stamped as random-weight output.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from mlsharp.errors import MLSharpError
from mlsharp.fileio import atomic_write

log = logging.getLogger("mlsharp")

RANDOM_WEIGHTS_BANNER = (
    "WARNING: --random-weights: the network has RANDOM weights. The outputs are NOT real SHARP "
    "results; every file is stamped RANDOM-WEIGHTS. Use it for smoke tests only."
)


def output_stem(image_path: Path, random_weights: bool) -> str:
    """File stem for an input; random-weight outputs carry the stamp in their names."""
    return f"{image_path.stem}.RANDOM-WEIGHTS" if random_weights else image_path.stem


def output_filename(stem: str, fmt: str) -> str:
    """`photo.ply`, `photo.clean.ply`, `photo.spz`...: formats sharing an extension stay apart."""
    from mlsharp.formats import FORMAT_INFO

    qualifier = ".clean" if fmt == "ply-clean" else ""
    return f"{stem}{qualifier}{FORMAT_INFO[fmt].extension}"


def _build_parser() -> argparse.ArgumentParser:
    from mlsharp.formats import OUTPUT_FORMATS

    parser = argparse.ArgumentParser(prog="mlsharp", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    predict = commands.add_parser("predict", help="turn photos into 3D gaussian scenes")
    predict.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    predict.add_argument("-o", "--output-dir", type=Path, required=True, metavar="DIR")
    predict.add_argument("--checkpoint", type=Path, help="local checkpoint file (default: download)")
    predict.add_argument(
        "--format",
        dest="formats",
        action="append",
        choices=OUTPUT_FORMATS,
        help="output format; repeat for several (default: ply)",
    )
    predict.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1")
    predict.add_argument("--preset", default="full", help="network preset: full (official), tiny, test")
    focal = predict.add_mutually_exclusive_group()
    focal.add_argument("--focal-px", type=float, help="focal length override in pixels")
    focal.add_argument("--focal-mm", type=float, help="focal length override, 35 mm-equivalent millimetres")
    predict.add_argument("--random-weights", action="store_true", help="smoke runs only: random network")
    predict.add_argument("--seed", type=int, default=0, help="seed for --random-weights")
    predict.add_argument("--no-download", action="store_true", help="never download the checkpoint")

    _add_tune_parser(commands)

    from mlsharp.render.command import add_parsers as add_render_parsers

    add_render_parsers(commands)
    return parser


def _add_tune_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """`tune` from the tools package when it is installed; otherwise a stub that says where it is."""
    try:
        from mlsharp_tools.tuning.command import add_parser
    except ModuleNotFoundError as error:
        if error.name is None or not error.name.startswith("mlsharp_tools"):
            raise
        # prefix_chars="\0": every argument lands in `ignored`, so _run_tune can say what is missing
        stub = commands.add_parser("tune", help="needs mlsharp_tools (a source checkout)", prefix_chars="\0")
        stub.add_argument("ignored", nargs="*")
        return
    add_parser(commands)


def _prepare_output_dir(path: Path) -> None:
    """Create ``-o DIR`` or say why it cannot be (not a bare "file not found" from the first write)."""
    from mlsharp.errors import InvalidParameterError

    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:
        raise InvalidParameterError(f"cannot create the output directory {path}: it is a file") from exc
    except OSError as exc:
        reason = "a parent is a file" if isinstance(exc, NotADirectoryError) else exc.strerror
        raise InvalidParameterError(f"cannot create the output directory {path}: {reason}") from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise InvalidParameterError(f"the output directory {path} is not writable")


def _run_predict(args: argparse.Namespace) -> int:
    from mlsharp.checkpoint import load_predictor
    from mlsharp.imaging import load_image
    from mlsharp.pipeline import ScenePipeline

    formats = tuple(dict.fromkeys(args.formats or ["ply"]))
    if args.random_weights:
        print(RANDOM_WEIGHTS_BANNER, file=sys.stderr)
    # Decode everything first: a bad file is reported before minutes of network time are spent.
    decoded = [
        (path, load_image(path, focal_px=args.focal_px, focal_mm=args.focal_mm)) for path in args.images
    ]
    loaded = load_predictor(
        args.preset,
        checkpoint=args.checkpoint,
        random_weights=args.random_weights,
        seed=args.seed,
        device=args.device,
        download=not args.no_download,
    )
    _prepare_output_dir(args.output_dir)  # before the network's minutes, after every cheaper check
    pipeline = ScenePipeline(loaded, device=args.device)
    for path, image in decoded:
        scene = pipeline.predict(image, formats)
        stem = output_stem(path, loaded.random_weights)
        for fmt, data in scene.encoded.items():
            atomic_write(args.output_dir / output_filename(stem, fmt), data)
        meta = json.dumps(scene.metadata, indent=2, sort_keys=True).encode()
        atomic_write(args.output_dir / f"{stem}.json", meta)
        timing = ", ".join(f"{name} {sec:.2f}s" for name, sec in scene.stage_seconds.items())
        print(f"{path} -> {args.output_dir / stem}.* ({scene.gaussians.num_gaussians} gaussians; {timing})")
    return 0


def _run_tune(args: argparse.Namespace) -> int:
    try:
        from mlsharp_tools.tuning.command import run
    except ModuleNotFoundError:
        print(
            "error: `mlsharp tune` needs the mlsharp_tools package: install mlsharp from a source "
            "checkout (pip install -e .)",
            file=sys.stderr,
        )
        return 2
    return run(args)


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        if args.command == "predict":
            return _run_predict(args)
        if args.command == "tune":
            return _run_tune(args)
        if args.command == "render":
            from mlsharp.render.command import run_render

            return run_render(args)
        if args.command == "compare-render":
            from mlsharp.render.command import run_compare

            return run_compare(args)
    except MLSharpError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except FileNotFoundError as error:
        print(f"error: file not found: {error.filename}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
