"""Helpers for the gateway tests: a fake backend, images, a webhook receiver, polling.

The fake backend decodes with the core package (so bad images fail exactly as in production)
but returns a tiny deterministic "scene" instead of running the network, which keeps the suite
fast on two cores. Real-backend tests live in test_local_backend.py and test_triton.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from PIL import Image

from gateway.backends.base import Admission, InferenceResult, no_gpu
from gateway.errors import BackendUnavailable


def tiny_scene(image_bytes: bytes, n: int = 8) -> Any:
    """A deterministic 8-gaussian scene seeded by the image: real encoders can run on it."""
    import torch

    from mlsharp.gaussians import Gaussians3D

    seed = int.from_bytes(hashlib.sha256(image_bytes).digest()[:4], "little")
    gen = torch.Generator().manual_seed(seed)
    means = torch.rand(n, 3, generator=gen) + torch.tensor([0.0, 0.0, 1.0])
    quats = torch.nn.functional.normalize(torch.rand(n, 4, generator=gen) + 0.1, dim=1)
    return Gaussians3D(
        means=means,
        scales=torch.rand(n, 3, generator=gen) * 0.01 + 0.001,
        quaternions=quats,
        colors_linear=torch.rand(n, 3, generator=gen),
        opacities=torch.rand(n, generator=gen),
    )


class FakeBackend:
    """Deterministic stand-in for SHARP: a tiny scene seeded by the image, encoded by the core
    encoders, with the core's metadata (``build_metadata``), so conversions and readers are real."""

    name = "fake"

    def __init__(self, model_id: str = "fake-model-1", delay_s: float = 0.0, max_queue: int = 8) -> None:
        self.model_id = model_id
        self.delay_s = delay_s
        self.is_ready = True
        self.calls = 0
        self.formats_seen: list[tuple[str, ...]] = []
        self.admission = Admission(1, max_queue, retry_after_s=3)
        self.started = False

    async def start(self) -> None:
        self.started = True

    async def close(self) -> None:
        self.started = False

    async def ready(self) -> bool:
        return self.is_ready

    def load(self) -> dict[str, int]:
        return self.admission.load()

    async def device_info(self) -> dict[str, Any]:
        return no_gpu()

    async def infer(
        self,
        image_bytes: bytes,
        focal_px: float | None,
        focal_mm: float | None,
        formats: tuple[str, ...],
        *,
        wait: bool = False,
    ) -> InferenceResult:
        from mlsharp.formats import build_metadata, encode_scene
        from mlsharp.gaussians import CameraInfo
        from mlsharp.imaging import decode_image

        if not self.is_ready:
            raise BackendUnavailable("fake backend is down")
        async with self.admission.slot(wait=wait):
            self.calls += 1
            self.formats_seen.append(tuple(formats))
            decoded = await asyncio.to_thread(
                decode_image, image_bytes, max_pixels=50_000_000, focal_px=focal_px, focal_mm=focal_mm
            )
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
        camera = CameraInfo(decoded.focal_px, decoded.width_px, decoded.height_px)
        gaussians = tiny_scene(image_bytes)
        scenes = {fmt: encode_scene(fmt, gaussians, camera) for fmt in formats}
        metadata = build_metadata(gaussians, camera, model_id=self.model_id, random_weights=False)
        return InferenceResult(scenes, metadata, {"decode": 0.001, "network": 0.002})


def png_bytes(width: int = 32, height: int = 24, color: tuple[int, int, int] = (200, 30, 60)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_bytes(width: int = 40, height: int = 30, color: tuple[int, int, int] = (10, 120, 240)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def wait_for(predicate: Callable[[], Any], timeout_s: float = 10.0, interval_s: float = 0.02) -> Any:
    """Poll until predicate() is truthy; returns its value or fails the test."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"condition not met within {timeout_s} s")


class Receiver:
    """A real HTTP server on 127.0.0.1 that records webhook deliveries; can fail the first N."""

    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.requests: list[dict[str, Any]] = []
        self.attempts = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                receiver.attempts += 1
                status = 500 if receiver.attempts <= receiver.fail_first else 204
                receiver.requests.append(
                    {"headers": dict(self.headers), "body": body, "status": status, "time": time.time()}
                )
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def delivered(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["status"] == 204]

    def json_bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r["body"]) for r in self.delivered()]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def sse_events(text: str) -> list[tuple[str, Any]]:
    """(event name, decoded JSON data) of each event in a text/event-stream body; comments and
    the order of fields within an event do not matter, as for a browser's EventSource."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields = [line.split(":", 1) for line in block.split("\n") if line and not line.startswith(":")]
        values = {name: value.removeprefix(" ") for name, value in fields}
        if "data" in values:
            events.append((values.get("event", "message"), json.loads(values["data"])))
    return events
