"""``mlsharp render`` and ``mlsharp compare-render``: pictures, videos and image fidelity of scenes.

    mlsharp render scene.ply -o orbit.mp4 --trajectory orbit --frames 60 --size 512x384
    mlsharp render scene.spz -o preview.png              # the photo's viewpoint
    mlsharp compare-render a.ply b.spz --frames 5         # PSNR and SSIM from the same cameras

Every path starts at the photo's camera stored with the scene (the ml-sharp PLY's elements, or
the metadata JSON beside an SPZ; otherwise it is estimated, and the command says so). Exit codes:
0 done, 2 bad arguments or unreadable scene.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mlsharp.errors import InvalidParameterError

DEFAULT_LONG_SIDE_PX = 512
MAX_SIDE_PX = 8192
MAX_FRAMES = 10_000
_SIZE_RE = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")
BACKGROUNDS = {"black": (0.0, 0.0, 0.0), "white": (1.0, 1.0, 1.0)}


def parse_size(text: str) -> tuple[int, int]:
    """``WxH`` -> (width, height), each 1..8192."""
    match = _SIZE_RE.match(text)
    if not match:
        raise InvalidParameterError(f"--size must be WIDTHxHEIGHT in pixels, e.g. 512x384, got {text!r}")
    width, height = int(match.group(1)), int(match.group(2))
    if not (1 <= width <= MAX_SIDE_PX and 1 <= height <= MAX_SIDE_PX):
        raise InvalidParameterError(f"--size sides must be 1..{MAX_SIDE_PX} px, got {width}x{height}")
    return width, height


def _add_view_options(parser: argparse.ArgumentParser, frames_help: str) -> None:
    from mlsharp.render.renderer import BACKENDS
    from mlsharp.render.trajectory import TRAJECTORIES

    parser.add_argument(
        "--trajectory", choices=TRAJECTORIES, default="orbit", help="camera path from the photo's camera"
    )
    parser.add_argument("--frames", metavar="N", help=frames_help)
    parser.add_argument(
        "--size",
        metavar="WxH",
        help=f"image size (default: the photo's aspect, {DEFAULT_LONG_SIDE_PX} px long side)",
    )
    parser.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1 (default cpu)")
    parser.add_argument(
        "--backend", choices=BACKENDS, default="auto", help="auto: gsplat on CUDA if installed"
    )
    parser.add_argument("--background", choices=tuple(BACKGROUNDS), default="black")


def add_parsers(commands: Any) -> None:
    """Register ``render`` and ``compare-render`` on the main parser's subcommands."""
    render = commands.add_parser(
        "render",
        help="render a scene to a PNG still or an MP4 video",
        description="Render a PLY/SPZ scene from the photo's camera: a PNG still, or an H.264 MP4 "
        "along a camera path (orbit, dolly, swing) starting at the photo's viewpoint.",
    )
    render.add_argument("scene", type=Path, metavar="SCENE", help="scene file: .ply or .spz")
    render.add_argument("-o", "--output", type=Path, required=True, metavar="OUT", help="out.png or out.mp4")
    render.add_argument("--metadata", type=Path, metavar="JSON", help="metadata with the photo's camera")
    render.add_argument("--fps", type=int, default=30, help="video frame rate (default 30)")
    _add_view_options(render, "frames of the video (default 60; a PNG is one frame)")

    compare = commands.add_parser(
        "compare-render",
        help="render two scenes from the same cameras and report PSNR and SSIM",
        description="Render scenes A and B from A's photo camera (B's if only B has one) along the "
        "same path and report PSNR (dB) and SSIM (11x11 gaussian window, sigma 1.5) per frame and on "
        "average.",
    )
    compare.add_argument("scene_a", type=Path, metavar="A")
    compare.add_argument("scene_b", type=Path, metavar="B")
    compare.add_argument("--json", action="store_true", help="print the result as JSON")
    _add_view_options(compare, "frames along the path (default 5)")


def _frames(text: str | None, default: int) -> int:
    if text is None:
        return default
    try:
        frames = int(text)
    except ValueError:
        raise InvalidParameterError(f"--frames must be a whole number, got {text!r}") from None
    if not 1 <= frames <= MAX_FRAMES:
        raise InvalidParameterError(f"--frames must be 1..{MAX_FRAMES}, got {frames}")
    return frames


def _device(name: str) -> Any:
    import torch

    try:
        device = torch.device(name)
    except RuntimeError:
        raise InvalidParameterError(f"--device: unknown torch device {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InvalidParameterError("--device cuda: no CUDA device is available here")
    return device


class _View:
    """The cameras and render settings both commands share."""

    def __init__(self, args: argparse.Namespace, scene: Any, frames: int, *, even: bool) -> None:
        from mlsharp.render.camera import default_size
        from mlsharp.render.renderer import choose_backend
        from mlsharp.render.scene import focus_depth_m
        from mlsharp.render.trajectory import trajectory

        size = parse_size(args.size) if args.size else default_size(scene.camera, DEFAULT_LONG_SIDE_PX)
        if even and (size[0] % 2 or size[1] % 2):
            raise InvalidParameterError(
                f"--size: H.264 video needs an even width and height, got {size[0]}x{size[1]}"
            )
        self.device = _device(args.device)
        try:
            self.backend = choose_backend(args.backend, self.device)
        except ValueError as error:
            raise InvalidParameterError(f"--backend: {error}") from None
        start = scene.camera.resized(*size)
        self.cameras = trajectory(args.trajectory, start, focus_depth_m(scene), frames)
        self.size = size
        self.background = BACKGROUNDS[args.background]

    def images(self, scene: Any) -> Iterator[Any]:
        """(H, W, 3) uint8 frames, rendered one at a time."""
        yield from render_frames(scene, self.cameras, self.device, self.backend, self.background)


def render_frames(
    scene: Any, cameras: list[Any], device: Any, backend: str, background: tuple[float, float, float]
) -> Iterator[Any]:
    """(H, W, 3) uint8 frames; on a CPU the process's cores belong to the renderer while it runs
    (this is a command-line process: see :func:`mlsharp.render.workers.exclusive_cpu`)."""
    from contextlib import nullcontext

    from mlsharp.render.rasterize import EXCLUSIVE_CPU_SETTINGS
    from mlsharp.render.renderer import render, to_uint8
    from mlsharp.render.workers import exclusive_cpu

    on_device = scene.to(device)
    on_cpu = device.type == "cpu"
    for camera in cameras:
        with exclusive_cpu() if on_cpu else nullcontext():
            image = render(
                on_device,
                camera,
                background_srgb=background,
                backend=backend,
                settings=EXCLUSIVE_CPU_SETTINGS if on_cpu else None,
            )
        yield to_uint8(image)


def _note_scene(path: Path, scene: Any) -> None:
    if scene.camera_source == "estimated":
        print(
            f"note: {path} carries no camera (no ml-sharp PLY elements, no metadata JSON beside it); "
            "the camera was estimated from the scene",
            file=sys.stderr,
        )
    if scene.random_weights:
        print(
            f"note: {path} was made with RANDOM weights: the pictures are not a real result", file=sys.stderr
        )


def run_render(args: argparse.Namespace) -> int:
    from mlsharp.fileio import atomic_write
    from mlsharp.render.scene import load_scene
    from mlsharp.render.video import encode_png, write_mp4

    suffix = args.output.suffix.lower()
    if suffix not in (".png", ".mp4"):
        raise InvalidParameterError(
            f"-o must end in .png (a still) or .mp4 (a video), got {args.output.name!r}"
        )
    frames = _frames(args.frames, 60 if suffix == ".mp4" else 1)
    if suffix == ".png" and frames != 1:
        raise InvalidParameterError("a PNG holds one frame: use -o out.mp4 for --frames > 1")
    if not 1 <= args.fps <= 240:
        raise InvalidParameterError(f"--fps must be 1..240, got {args.fps}")
    scene = load_scene(args.scene, args.metadata)
    _note_scene(args.scene, scene)
    view = _View(args, scene, frames, even=suffix == ".mp4")
    started = time.perf_counter()
    try:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        if suffix == ".png":
            atomic_write(args.output, encode_png(next(view.images(scene))))
        else:
            partial = args.output.with_name(f".{args.output.name}.partial.mp4")
            try:
                write_mp4(partial, _progress(view.images(scene), frames), fps=args.fps)
                partial.replace(args.output)
            finally:
                partial.unlink(missing_ok=True)
    except OSError as error:
        raise InvalidParameterError(f"cannot write {args.output}: {error.strerror or error}") from None
    seconds = time.perf_counter() - started
    width, height = view.size
    print(
        f"{args.output}: {frames} frame(s) {width}x{height} "
        f"({args.trajectory if suffix == '.mp4' else 'photo camera'}, {view.backend} on "
        f"{view.device}), {seconds / frames:.2f} s/frame, {seconds:.1f} s in all"
    )
    return 0


def _progress(frames: Iterator[Any], total: int) -> Iterator[Any]:
    """Pass frames through, printing a progress line to stderr every ~10 % of the video."""
    step = max(1, total // 10)
    for i, frame in enumerate(frames, start=1):
        yield frame
        if i % step == 0 or i == total:
            print(f"rendered {i}/{total} frames", file=sys.stderr)


def run_compare(args: argparse.Namespace) -> int:
    import torch

    from mlsharp.render.metrics import psnr, ssim
    from mlsharp.render.scene import load_scene

    frames = _frames(args.frames, 5)
    scene_a, scene_b = load_scene(args.scene_a), load_scene(args.scene_b)
    for path, scene in ((args.scene_a, scene_a), (args.scene_b, scene_b)):
        _note_scene(path, scene)
    cam_a, cam_b = scene_a.start_camera, scene_b.start_camera
    if scene_b.camera_source != "estimated" and (cam_a.width_px, cam_a.height_px) != (
        cam_b.width_px,
        cam_b.height_px,
    ):
        print("note: the scenes' photos differ in size; both are rendered from A's camera", file=sys.stderr)
    # A's camera, unless only B knows its photo's camera.
    use_b = scene_a.camera_source == "estimated" and scene_b.camera_source != "estimated"
    view = _View(args, scene_b if use_b else scene_a, frames, even=False)
    rows = []
    for i, (img_a, img_b) in enumerate(zip(view.images(scene_a), view.images(scene_b), strict=True)):
        a, b = img_a.to(torch.float32) / 255.0, img_b.to(torch.float32) / 255.0
        rows.append({"frame": i, "psnr_db": psnr(a, b), "ssim": ssim(a, b)})
    mean_psnr = _mean_psnr([row["psnr_db"] for row in rows])
    mean_ssim = sum(row["ssim"] for row in rows) / len(rows)
    width, height = view.size
    if args.json:
        result = {
            "frames": rows,
            "mean_psnr_db": mean_psnr,
            "mean_ssim": mean_ssim,
            "trajectory": args.trajectory,
            "size": [width, height],
        }
        print(json.dumps(result, indent=2, default=lambda v: None if not math.isfinite(v) else v))
        return 0
    for row in rows:
        print(f"frame {row['frame']}: PSNR {_fmt_db(row['psnr_db'])}, SSIM {row['ssim']:.5f}")
    print(
        f"mean over {len(rows)} frame(s) ({args.trajectory}, {width}x{height}): "
        f"PSNR {_fmt_db(mean_psnr)}, SSIM {mean_ssim:.5f}"
    )
    return 0


def _mean_psnr(values: list[float]) -> float:
    """PSNR of the mean squared error over frames (not the mean of dB values); inf if all equal."""
    mses = [0.0 if math.isinf(v) else 10 ** (-v / 10) for v in values]
    mse = sum(mses) / len(mses)
    return math.inf if mse == 0 else -10 * math.log10(mse)


def _fmt_db(value: float) -> str:
    return "inf (identical)" if math.isinf(value) else f"{value:.2f} dB"
