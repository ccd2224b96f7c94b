"""PSNR, SSIM against hand-computed values; MP4 and PNG output."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mlsharp.render.metrics import gaussian_window, psnr, ssim
from mlsharp.render.video import encode_png, read_video, write_mp4

C1, C2 = 0.01**2, 0.03**2


def test_psnr_known_values() -> None:
    a = torch.zeros(8, 8, 3)
    assert psnr(a, a) == math.inf
    assert psnr(a, a + 0.1) == pytest.approx(20.0)  # MSE 0.01
    assert psnr(a, a + 0.01) == pytest.approx(40.0)


def test_ssim_identical_is_one_and_constant_images_by_hand() -> None:
    rng = torch.Generator().manual_seed(0)
    img = torch.rand(32, 24, 3, generator=rng)
    assert ssim(img, img) == pytest.approx(1.0, abs=1e-12)
    # constant images: no variance, SSIM = (2 a b + C1) / (a^2 + b^2 + C1)
    a, b = torch.full((16, 16, 3), 0.5), torch.full((16, 16, 3), 0.25)
    assert ssim(a, b) == pytest.approx((2 * 0.5 * 0.25 + C1) / (0.5**2 + 0.25**2 + C1), abs=1e-12)


def test_ssim_one_window_by_hand() -> None:
    """An 11 x 11 image has exactly one window: weighted means, variances, covariance in numpy."""
    rng = np.random.default_rng(3)
    x = rng.random((11, 11))
    y = np.clip(x + rng.normal(0, 0.1, (11, 11)), 0, 1)
    g = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    mx, my = (w * x).sum(), (w * y).sum()
    vx, vy = (w * (x - mx) ** 2).sum(), (w * (y - my) ** 2).sum()
    cov = (w * (x - mx) * (y - my)).sum()
    expected = (2 * mx * my + C1) * (2 * cov + C2) / ((mx**2 + my**2 + C1) * (vx + vy + C2))
    got = ssim(torch.from_numpy(x)[..., None], torch.from_numpy(y)[..., None])
    assert got == pytest.approx(expected, abs=1e-12)
    assert 0.3 < got < 0.99
    assert float(gaussian_window().sum()) == pytest.approx(1.0)


def test_metric_input_errors() -> None:
    with pytest.raises(ValueError, match="one shape"):
        psnr(torch.zeros(4, 4, 3), torch.zeros(4, 5, 3))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(torch.zeros(8, 32, 3), torch.zeros(8, 32, 3))


def _frames(n: int, width: int = 64, height: int = 48) -> list[torch.Tensor]:
    frames = []
    for i in range(n):
        frame = torch.zeros(height, width, 3, dtype=torch.uint8)
        frame[:, : 4 * (i + 1)] = torch.tensor([200, 40, 40], dtype=torch.uint8)  # a growing red bar
        frames.append(frame)
    return frames


def test_mp4_decodes_with_the_right_count_size_and_content(tmp_path: Path) -> None:
    path = tmp_path / "v.mp4"
    frames = _frames(9)
    assert write_mp4(path, iter(frames), fps=24) == 9
    assert path.read_bytes()[4:8] == b"ftyp"  # an MP4 container
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert (stream.codec_context.width, stream.codec_context.height) == (64, 48)
    decoded = read_video(path)
    assert len(decoded) == 9 and decoded[0].shape == (48, 64, 3)
    for i, frame in enumerate(decoded):  # lossy, but the bar's length survives
        red_columns = (frame[:, :, 0].astype(int) - frame[:, :, 2].astype(int) > 80).mean(0) > 0.5
        assert abs(int(red_columns.sum()) - 4 * (i + 1)) <= 2


def test_mp4_rejects_odd_sizes_and_no_frames(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="even width and height"):
        write_mp4(tmp_path / "odd.mp4", _frames(2, width=63))
    with pytest.raises(ValueError, match="at least one frame"):
        write_mp4(tmp_path / "none.mp4", [])


def test_png_round_trip() -> None:
    frame = _frames(3)[2]
    back = np.asarray(Image.open(io.BytesIO(encode_png(frame))))
    assert back.shape == (48, 64, 3) and np.array_equal(back, frame.numpy())
