"""`mlsharp predict` errors a person can act on, as a new user meets them (in-process ``main()``):
a corrupt checkpoint, a file that is not an image, an output directory that cannot be created."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from mlsharp import cli
from mlsharp.errors import InvalidImageError
from mlsharp.imaging import decode_image
from mlsharp.sample_image import photo_like_jpeg


class NotATensor:
    """Pickled into a checkpoint, so that torch's weights_only loader refuses it."""


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "photo.jpg"
    path.write_bytes(photo_like_jpeg(64, 48, seed=1))
    return path


def _predict(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = cli.main(["predict", *argv, "--preset", "test"])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("content", ["pickle", "truncated"])
def test_a_corrupt_checkpoint_is_named_by_size_and_hash_without_torchs_advice(
    photo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str
) -> None:
    checkpoint = tmp_path / "sharp.pt"
    if content == "pickle":
        torch.save({"model": NotATensor()}, checkpoint)
    else:
        checkpoint.write_bytes(b"PK\x03\x04" + bytes(5000))
    data = checkpoint.read_bytes()
    code, err = _predict(capsys, str(photo), "-o", str(tmp_path / "out"), "--checkpoint", str(checkpoint))
    assert code == 2
    assert f"{checkpoint} is not a valid SHARP checkpoint" in err
    assert f"({len(data):,} bytes, sha256 {hashlib.sha256(data).hexdigest()[:12]}...)" in err
    assert "weights_only" not in err and "torch.load" not in err  # never advise running pickled code


def test_a_local_file_that_is_not_an_image_is_called_an_image_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    code, err = _predict(capsys, str(notes), "-o", str(tmp_path / "out"), "--random-weights")
    assert code == 2
    assert f"error: The image file {str(notes)!r} is plain text, not an image." in err
    code, err = _predict(capsys, str(empty), "-o", str(tmp_path / "out"), "--random-weights")
    assert code == 2 and f"The image file {str(empty)!r} is empty (0 bytes); use an image file." in err
    assert "upload" not in err.lower()


def test_decoding_bytes_still_speaks_of_the_upload() -> None:
    """The gateway's 4xx messages keep their wording (decode_image's default subject)."""
    with pytest.raises(InvalidImageError, match=r"^The upload is empty \(0 bytes\); send an image file\.$"):
        decode_image(b"")
    with pytest.raises(InvalidImageError, match=r"^The upload is plain text, not an image\.$"):
        decode_image(b"hello")


@pytest.mark.parametrize(
    ("output", "reason"),
    [("a-file", "it is a file"), ("a-file/sub", "a parent is a file")],
)
def test_an_output_directory_that_cannot_be_created_says_so(
    photo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], output: str, reason: str
) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    target = tmp_path / output
    code, err = _predict(capsys, str(photo), "-o", str(target), "--random-weights")
    assert code == 2
    assert f"error: cannot create the output directory {target}: {reason}" in err
    assert "file not found" not in err
