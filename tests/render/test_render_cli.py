"""``mlsharp render`` and ``mlsharp compare-render`` end to end, in process."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mlsharp.cli import main
from mlsharp.formats import build_metadata, encode_ply, encode_ply_clean
from mlsharp.gaussians import CameraInfo
from mlsharp.render import psnr
from mlsharp.render.synthetic import pattern_image
from mlsharp.render.video import read_video
from tests.render.scenes import photo_gaussians, photo_ply


@pytest.fixture(scope="module")
def scene_ply(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("scene") / "scene.ply"
    path.write_bytes(photo_ply(pattern_image(96, 64), focal_px=80.0, working_px=128))
    return path


def _as_float(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array.astype(np.float32) / 255.0)


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("error: ")
    return err[0]


def test_render_png_from_the_photo_camera(
    scene_ply: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "still.png"
    assert main(["render", str(scene_ply), "-o", str(out), "--size", "96x64"]) == 0
    assert "1 frame(s) 96x64 (photo camera, torch on cpu)" in capsys.readouterr().out
    image = _as_float(np.asarray(Image.open(io.BytesIO(out.read_bytes()))))
    assert image.shape == (64, 96, 3)
    assert psnr(image, pattern_image(96, 64)) >= 18.0
    # default size: the photo's aspect with a 512 px long side
    assert main(["render", str(scene_ply), "-o", str(tmp_path / "default.png")]) == 0
    assert Image.open(tmp_path / "default.png").size == (512, 342) or Image.open(
        tmp_path / "default.png"
    ).size == (
        512,
        342,
    )


def test_render_mp4_orbit(scene_ply: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sub" / "orbit.mp4"
    args = ["render", str(scene_ply), "-o", str(out), "--frames", "6", "--size", "64x48", "--fps", "12"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "6 frame(s) 64x48 (orbit, torch on cpu)" in captured.out
    assert "rendered 6/6 frames" in captured.err
    frames = read_video(out)
    assert len(frames) == 6 and frames[0].shape == (48, 64, 3)
    assert not list(out.parent.glob(".*partial*"))  # the temporary file is gone
    # frame 0 is the photo's view: it matches the PNG still of the same size
    assert main(["render", str(scene_ply), "-o", str(tmp_path / "f0.png"), "--size", "64x48"]) == 0
    still = _as_float(np.asarray(Image.open(tmp_path / "f0.png")))
    first, middle = psnr(_as_float(frames[0]), still), psnr(_as_float(frames[3]), still)
    assert first >= 22.0 and middle < first - 3.0  # H.264 is lossy; the camera has moved by frame 3


def test_compare_render_identical_and_different(
    scene_ply: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["compare-render", str(scene_ply), str(scene_ply), "--frames", "2", "--size", "48x32"]) == 0
    out = capsys.readouterr().out
    assert "PSNR inf (identical), SSIM 1.00000" in out and "mean over 2 frame(s)" in out
    # B: the same geometry with darker colours
    photo = pattern_image(96, 64)
    gaussians = photo_gaussians(photo, 80.0, 128)
    gaussians.colors_linear = gaussians.colors_linear * 0.8
    other = tmp_path / "darker.ply"
    other.write_bytes(encode_ply(gaussians, CameraInfo(80.0, 96, 64)))
    assert (
        main(["compare-render", str(scene_ply), str(other), "--frames", "3", "--size", "48x32", "--json"])
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert len(result["frames"]) == 3 and result["size"] == [48, 32] and result["trajectory"] == "orbit"
    assert 10.0 < result["mean_psnr_db"] < 40.0 and 0.5 < result["mean_ssim"] < 1.0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--size", "12by5"], "--size must be WIDTHxHEIGHT"),
        (["--size", "0x10"], "--size sides must be"),
        (["--size", "63x48", "-o", "OUT.mp4"], "even width and height"),
        (["--frames", "many", "-o", "OUT.mp4"], "--frames must be a whole number"),
        (["--frames", "0", "-o", "OUT.mp4"], "--frames must be 1.."),
        (["--frames", "3"], "a PNG holds one frame"),
        (["-o", "OUT.gif"], "-o must end in .png"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(
    scene_ply: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    out = str(tmp_path / "out.png")
    extra = [str(tmp_path / e) if e.startswith("OUT") else e for e in extra]
    args = ["render", str(scene_ply), "-o", out, *extra]
    assert main(args) == 2
    assert message in _one_line_error(capsys)
    assert not list(tmp_path.iterdir())  # nothing written


def test_scene_errors_are_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", str(tmp_path / "nope.ply"), "-o", str(tmp_path / "a.png")]) == 2
    assert "scene file not found" in _one_line_error(capsys)
    notes = tmp_path / "notes.txt"
    notes.write_text("not a scene")
    assert main(["render", str(notes), "-o", str(tmp_path / "a.png")]) == 2
    assert "is not a scene: expected a binary PLY or an SPZ file" in _one_line_error(capsys)
    assert main(["compare-render", str(notes), str(notes)]) == 2
    assert "is not a scene" in _one_line_error(capsys)


def test_camera_from_metadata_option_or_estimated(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gaussians = photo_gaussians(pattern_image(96, 64), 80.0, 128)
    clean = tmp_path / "clean.ply"  # vertex-only: no camera elements
    clean.write_bytes(encode_ply_clean(gaussians))
    assert main(["render", str(clean), "-o", str(tmp_path / "estimated.png")]) == 0
    assert "the camera was estimated from the scene" in capsys.readouterr().err
    meta = tmp_path / "elsewhere" / "meta.json"
    meta.parent.mkdir()
    meta.write_text(
        json.dumps(build_metadata(gaussians, CameraInfo(80.0, 96, 64), model_id="t", random_weights=True))
    )
    out = tmp_path / "from_meta.png"
    assert main(["render", str(clean), "-o", str(out), "--metadata", str(meta)]) == 0
    captured = capsys.readouterr()
    assert "estimated" not in captured.err and "RANDOM weights" in captured.err
    assert Image.open(out).size == (512, 342)
    image = _as_float(np.asarray(Image.open(out).resize((96, 64), Image.Resampling.BOX)))
    assert psnr(image, pattern_image(96, 64)) >= 18.0


def test_unwritable_output_is_one_line_and_exit_2(
    scene_ply: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    assert main(["render", str(scene_ply), "-o", str(blocker / "out.png"), "--size", "16x16"]) == 2
    assert "cannot write" in _one_line_error(capsys)


def test_argparse_usage_errors_exit_2(scene_ply: Path, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["render", str(scene_ply), "-o", str(tmp_path / "a.mp4"), "--trajectory", "spiral"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["render", str(scene_ply)])  # no -o
    assert exc.value.code == 2
