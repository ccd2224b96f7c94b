"""The `mlsharp predict` command, run in-process on the random-weight `test` preset."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from plyfile import PlyData

from mlsharp import checkpoint, cli
from mlsharp.formats import decode_spz


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small photo-like JPEG: a gradient with a red block."""
    pixels = np.linspace(0, 255, 160)[None, :, None] * np.ones((120, 1, 3))
    pixels[30:90, 50:110] = (200, 40, 40)
    path = tmp_path_factory.mktemp("img") / "photo.jpg"
    Image.fromarray(pixels.astype(np.uint8)).save(path, quality=95)
    return path


@pytest.fixture(scope="module")
def predicted(photo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out_dir = tmp_path_factory.mktemp("out")
    argv = ["predict", str(photo), "-o", str(out_dir), "--preset", "test", "--random-weights"]
    for fmt in ("ply", "ply-clean", "spz", "splat"):
        argv += ["--format", fmt]
    assert cli.main(argv) == 0
    return out_dir


def test_every_format_is_written_and_stamped_random(predicted: Path) -> None:
    names = sorted(path.name for path in predicted.iterdir())
    assert names == [
        "photo.RANDOM-WEIGHTS.clean.ply",
        "photo.RANDOM-WEIGHTS.json",
        "photo.RANDOM-WEIGHTS.ply",
        "photo.RANDOM-WEIGHTS.splat",
        "photo.RANDOM-WEIGHTS.spz",
    ]
    assert not list(predicted.glob(".*")), "no temporary files left behind"


def test_ply_has_reference_layout_and_random_comment(predicted: Path) -> None:
    ply = PlyData.read(str(predicted / "photo.RANDOM-WEIGHTS.ply"))
    assert [element.name for element in ply.elements] == [
        "vertex", "extrinsic", "intrinsic", "image_size", "frame", "disparity", "color_space", "version",
    ]  # fmt: skip
    assert ply["vertex"].count == 2 * 256 * 256
    assert list(ply["image_size"]["image_size"]) == [160, 120]
    assert any("RANDOM WEIGHTS" in comment for comment in ply.comments)
    clean = PlyData.read(str(predicted / "photo.RANDOM-WEIGHTS.clean.ply"))
    assert [element.name for element in clean.elements] == ["vertex"]
    np.testing.assert_array_equal(clean["vertex"]["x"], ply["vertex"]["x"])


def test_metadata_and_compact_formats_agree_with_ply(predicted: Path) -> None:
    meta = json.loads((predicted / "photo.RANDOM-WEIGHTS.json").read_text())
    assert meta["random_weights"] is True
    assert meta["model_id"] == "random-test-seed0"
    ply = PlyData.read(str(predicted / "photo.RANDOM-WEIGHTS.ply"))
    spz = decode_spz((predicted / "photo.RANDOM-WEIGHTS.spz").read_bytes())
    assert spz.means.shape[0] == ply["vertex"].count
    assert (predicted / "photo.RANDOM-WEIGHTS.splat").stat().st_size == 32 * ply["vertex"].count


def test_offline_without_checkpoint_fails_at_once_naming_url_and_flag(
    photo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    unreachable = "http://127.0.0.1:9/sharp_2572gikvuh.pt"
    monkeypatch.setattr(checkpoint, "CHECKPOINT_URL", unreachable)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    start = time.monotonic()
    code = cli.main(["predict", str(photo), "-o", str(tmp_path / "out")])
    assert code == 2
    assert time.monotonic() - start < 30
    err = capsys.readouterr().err
    assert unreachable in err and "--checkpoint" in err
    assert not (tmp_path / "out").exists()


def test_corrupt_image_is_reported_before_any_model_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 definitely not a whole jpeg")
    code = cli.main(
        ["predict", str(bad), "-o", str(tmp_path / "out"), "--preset", "test", "--random-weights"]
    )
    assert code == 2
    assert "image" in capsys.readouterr().err.lower()
    assert not (tmp_path / "out").exists()


def test_missing_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["predict", str(tmp_path / "nope.jpg"), "-o", str(tmp_path), "--preset", "test"])
    assert code == 2
    assert "nope.jpg" in capsys.readouterr().err
