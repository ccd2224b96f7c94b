"""A tiny stand-in for the gateway's jobs API, serving the real web page, for browser tests that
need a scene whose look is known in advance (random-weight SHARP output looks like noise).

It serves a synthetic "photo" scene in SHARP's OpenCV camera frame (x right, y down, z forward):
a plane of gaussians 2 m in front of the camera that, seen from the photo's viewpoint, shows a red
top half, a blue bottom half and a green square in the top-left corner. If the viewer orients the
frame and the field of view correctly, the first rendered frame shows exactly that.

Only the jobs endpoints the page uses are imitated, in the gateway's documented shapes.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import secrets
import struct
import threading
import time
from dataclasses import dataclass, field

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from PIL import Image, UnidentifiedImageError

from gateway.api import web

PHOTO_W, PHOTO_H, FOCAL_PX, DEPTH_M = 640, 480, 560.0, 2.0
C0 = 0.28209479177387814


def synthetic_scene(cols: int = 96, rows: int = 72) -> dict[str, np.ndarray]:
    """A plane at DEPTH_M filling the photo's frustum; colours as described in the module doc."""
    u = (np.arange(cols) + 0.5) / cols * PHOTO_W
    v = (np.arange(rows) + 0.5) / rows * PHOTO_H
    uu, vv = np.meshgrid(u, v)
    x = (uu - PHOTO_W / 2) / FOCAL_PX * DEPTH_M
    y = (vv - PHOTO_H / 2) / FOCAL_PX * DEPTH_M
    z = np.full_like(x, DEPTH_M)
    rgb = np.where((vv < PHOTO_H / 2)[..., None], [0.9, 0.1, 0.1], [0.1, 0.2, 0.9])
    marker = (uu < PHOTO_W * 0.25) & (vv < PHOTO_H * 0.25)
    rgb[marker] = [0.1, 0.85, 0.15]
    spacing = PHOTO_W / cols / FOCAL_PX * DEPTH_M
    n = cols * rows
    return {
        "means": np.stack([x, y, z], -1).reshape(n, 3).astype(np.float32),
        "colors": rgb.reshape(n, 3).astype(np.float32),
        "sigma": np.full((n, 3), spacing * 0.7, np.float32),
        "opacity": np.full(n, 0.95, np.float32),
    }


def encode_spz_v2(scene: dict[str, np.ndarray]) -> bytes:
    """Niantic SPZ version 2, SH degree 0, axes as given (no conversion), gzip-wrapped."""
    means, colors, sigma, opacity = scene["means"], scene["colors"], scene["sigma"], scene["opacity"]
    n = len(means)
    out = io.BytesIO()
    out.write(struct.pack("<IIIBBBB", 0x5053474E, 2, n, 0, 12, 0, 0))
    fixed = np.round(means.astype(np.float64) * (1 << 12)).astype(np.int64).reshape(-1)
    fixed &= 0xFFFFFF
    out.write(np.stack([fixed & 0xFF, (fixed >> 8) & 0xFF, (fixed >> 16) & 0xFF], -1).astype(np.uint8).tobytes())
    out.write(np.clip(np.round(opacity * 255), 0, 255).astype(np.uint8).tobytes())
    f_dc = (colors - 0.5) / C0
    out.write(np.clip(np.round(f_dc * 0.15 * 255 + 127.5), 0, 255).astype(np.uint8).tobytes())
    out.write(np.clip(np.round((np.log(sigma) + 10) * 16), 0, 255).astype(np.uint8).tobytes())
    # identity rotation: xyz = 0 (w >= 0 is derived by the reader)
    out.write(np.full((n, 3), 128, np.uint8).tobytes())
    return gzip.compress(out.getvalue(), compresslevel=6)


def scene_metadata(n: int) -> dict:
    return {
        "focal_px": FOCAL_PX,
        "width_px": PHOTO_W,
        "height_px": PHOTO_H,
        "intrinsic": [[FOCAL_PX, 0, PHOTO_W / 2], [0, FOCAL_PX, PHOTO_H / 2], [0, 0, 1]],
        "image_size": [PHOTO_W, PHOTO_H],
        "disparity_quantiles": [1 / DEPTH_M, 1 / DEPTH_M],
        "num_gaussians": n,
        "random_weights": False,
        "model_id": "stub",
        "coordinate_frame": "opencv",
    }


@dataclass
class StubJob:
    job_id: str
    names: list[str]
    formats: list[str]
    created: float = field(default_factory=time.monotonic)
    errors: dict[int, str] = field(default_factory=dict)
    duration_s: float = 1.5

    def snapshot(self, base: str) -> dict:
        """The gateway's JobStatus shape (gateway/api/schemas.py), file states included."""
        elapsed = time.monotonic() - self.created
        files = []
        for i, name in enumerate(self.names):
            started = elapsed - 0.3 * i
            if i in self.errors:
                state = "failed"
            else:
                state = "done" if started >= self.duration_s else ("running" if started > 0 else "pending")
            entry = {"index": i, "filename": name, "state": state, "error": self.errors.get(i),
                     "processing_time": None, "downloads": {}}
            if state == "done":
                prefix = f"{base}/files/{self.job_id}/{i:02d}_photo"
                entry["downloads"] = {fmt: f"{prefix}.{fmt}" for fmt in self.formats}
                entry["downloads"]["metadata"] = f"{prefix}.json"
            files.append(entry)
        states = [f["state"] for f in files]
        finished = sum(s in ("done", "failed") for s in states)
        if finished < len(states):
            job_state = "running"
        elif all(s == "done" for s in states):
            job_state = "completed"
        else:
            job_state = "failed" if "done" not in states else "partial"
        return {
            "job_id": self.job_id,
            "state": job_state,
            "progress": finished / len(states),
            "files": files,
            "error": None,
            "formats": self.formats,
            "status_url": f"{base}/v1/jobs/{self.job_id}",
            "events_url": f"{base}/v1/jobs/{self.job_id}/events",
            "archive_url": f"{base}/v1/jobs/{self.job_id}/archive" if job_state != "running" else None,
        }


def create_stub_app() -> FastAPI:
    app = FastAPI()
    app.include_router(web.router)
    jobs: dict[str, StubJob] = {}
    scene = synthetic_scene()
    spz = encode_spz_v2(scene)
    meta = json.dumps(scene_metadata(len(scene["means"]))).encode()
    lock = threading.Lock()

    def error(status: int, code: str, message: str, path: str) -> JSONResponse:
        body = {"error": code, "message": message, "status_code": status, "path": path, "timestamp": time.time()}
        return JSONResponse(body, status_code=status)

    @app.post("/v1/jobs")
    async def submit(request: Request):
        form = await request.form()
        uploads = form.getlist("files")
        if not uploads:
            return error(422, "invalid_request", "Send at least one image in the field 'files'.", "/v1/jobs")
        names, errors = [], {}
        for i, upload in enumerate(uploads):
            data = await upload.read()
            names.append(upload.filename or f"image-{i}")
            try:
                Image.open(io.BytesIO(data)).verify()
            except (UnidentifiedImageError, OSError, SyntaxError):
                errors[i] = f"{upload.filename}: The upload is not a readable image (truncated or corrupt header)."
        if errors:  # like the gateway: one unreadable upload refuses the whole job
            first = min(errors)
            return error(400, "Bad Request", errors[first], "/v1/jobs")
        formats = [f for f in str(form.get("format") or "ply").split(",") if f]
        job = StubJob(secrets.token_urlsafe(16), names, formats, errors=errors)
        with lock:
            jobs[job.job_id] = job
        urls = {"status_url": f"/v1/jobs/{job.job_id}", "events_url": f"/v1/jobs/{job.job_id}/events"}
        return JSONResponse({"job_id": job.job_id, **urls}, status_code=202)

    @app.get("/v1/jobs/{job_id}")
    def status(job_id: str):
        job = jobs.get(job_id)
        if job is None:
            return error(404, "not_found", "No such job.", f"/v1/jobs/{job_id}")
        return job.snapshot("")

    @app.get("/v1/jobs/{job_id}/events")
    async def events(job_id: str):
        job = jobs.get(job_id)
        if job is None:
            return error(404, "not_found", "No such job.", f"/v1/jobs/{job_id}/events")

        async def stream():
            while True:
                snap = job.snapshot("")
                yield f"event: job\ndata: {json.dumps(snap)}\n\n"
                if snap["state"] in ("completed", "failed", "partial", "cancelled"):
                    yield f"event: end\ndata: {json.dumps({'job_id': job_id})}\n\n"
                    return
                await asyncio.sleep(0.3)

        return StreamingResponse(stream(), media_type="text/event-stream")

    @app.get("/files/{job_id}/{name}")
    def download(job_id: str, name: str):
        if job_id not in jobs:
            return error(404, "Not Found", "No such job.", f"/files/{job_id}/{name}")
        if name.endswith(".json"):
            return Response(meta, media_type="application/json")
        if name.endswith(".spz"):
            return Response(spz, media_type="application/octet-stream")
        return Response(b"stub " + name.encode(), media_type="application/octet-stream")

    return app
