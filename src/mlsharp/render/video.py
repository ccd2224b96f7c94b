"""Writing frames: H.264 in MP4 through PyAV (its wheels carry FFmpeg and libx264), PNG via Pillow.

Why PyAV: a maintained library whose wheel brings its own FFmpeg, so no system ffmpeg is needed;
it is an optional extra (``mlsharp[render]``) and imported only when a video is written.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from mlsharp.errors import MLSharpError

VIDEO_FPS = 30
#: x264 constant rate factor: 18 is visually lossless for previews, small files
VIDEO_CRF = 18


class VideoUnavailableError(MLSharpError):
    """PyAV (the ``render`` extra) is not installed or lacks an H.264 encoder."""

    code = "video_unavailable"


def _as_array(frame: torch.Tensor | np.ndarray) -> np.ndarray:
    array = frame.cpu().numpy() if isinstance(frame, torch.Tensor) else np.asarray(frame)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"frames must be (H, W, 3) uint8, got {array.dtype} {array.shape}")
    return np.ascontiguousarray(array)


def encode_png(frame: torch.Tensor | np.ndarray) -> bytes:
    """One (H, W, 3) uint8 frame as PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(_as_array(frame), mode="RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def _codec() -> Any:
    try:
        import av
    except ImportError:
        raise VideoUnavailableError(
            "writing MP4 needs PyAV: install the render extra (pip install 'mlsharp[render]')"
        ) from None
    try:
        av.codec.Codec("libx264", "w")
    except Exception:  # PyAV raises its own UnknownCodecError subclasses here
        raise VideoUnavailableError("this PyAV build has no libx264 encoder for H.264") from None
    return av


def write_mp4(path: Path, frames: Iterable[torch.Tensor | np.ndarray], fps: int = VIDEO_FPS) -> int:
    """Encode (H, W, 3) uint8 frames as H.264 (yuv420p) in MP4, one at a time; returns the count.

    Width and height must be even (yuv420p); frames are consumed lazily, so memory stays at one
    frame plus the encoder's look-ahead.
    """
    av = _codec()
    count = 0
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = None
        for frame in frames:
            array = _as_array(frame)
            height, width = array.shape[:2]
            if stream is None:
                if width % 2 or height % 2:
                    raise ValueError(f"H.264 video needs an even width and height, got {width}x{height}")
                stream = container.add_stream("libx264", rate=fps)
                stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
                stream.options = {"crf": str(VIDEO_CRF), "preset": "medium"}
            elif (width, height) != (stream.width, stream.height):
                raise ValueError("all frames of a video must have one size")
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                container.mux(packet)
            count += 1
        if stream is None:
            raise ValueError("a video needs at least one frame")
        for packet in stream.encode():  # flush the encoder
            container.mux(packet)
    return count


def read_video(path: Path) -> list[np.ndarray]:
    """Decode every frame of a video as (H, W, 3) uint8 (tests and checks)."""
    av = _codec()
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
