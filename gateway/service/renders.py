"""Pictures of a job's scenes: a still from the photo's camera and an orbit video (``render=true``).

Why a lock and no ``exclusive_cpu``: ``torch.set_num_threads`` is process-wide, and this process
may run other torch work beside (the local backend's network, format conversions). The renderer's
default CPU settings keep every op below ATen's parallel grain and spread chunks over its own small
pool instead, so one render at a time (the lock) uses that pool's threads and never changes the
process's torch settings. The work runs in a worker thread; the event loop only waits.
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from gateway.service.scenes import SceneStore
from gateway.service.storage import ResultStore
from gateway.settings import Settings

PREVIEW_KEY = "preview"
ORBIT_KEY = "orbit"

_ONE_AT_A_TIME = threading.Lock()


@dataclass(frozen=True, slots=True)
class RenderSpec:
    """How big and how long the job renders are (from settings)."""

    width_px: int
    height_px: int
    frames: int
    fps: int

    @classmethod
    def from_settings(cls, settings: Settings) -> RenderSpec:
        width, height = (int(side) for side in settings.render_size.split("x"))
        return cls(width, height, settings.render_frames, settings.render_fps)


def render_names(idx: int, stem: str) -> dict[str, str]:
    """Download key -> file name of one photo's renders, beside its scene files."""
    return {PREVIEW_KEY: f"{idx:02d}_{stem}_preview.png", ORBIT_KEY: f"{idx:02d}_{stem}_orbit.mp4"}


def render_files(ply: bytes, spec: RenderSpec) -> dict[str, bytes]:
    """The PNG still and the MP4 orbit of a stored scene PLY (blocking: run it in a thread)."""
    from mlsharp.render import focus_depth_m, render, to_uint8, trajectory
    from mlsharp.render.scene import scene_from_bytes
    from mlsharp.render.video import encode_png, write_mp4

    with _ONE_AT_A_TIME:
        scene = scene_from_bytes(ply, "the job's scene")
        start = scene.start_camera.resized(spec.width_px, spec.height_px)
        preview = encode_png(to_uint8(render(scene, start, backend="torch")))
        cameras = trajectory("orbit", start, focus_depth_m(scene), spec.frames)
        frames = (to_uint8(render(scene, camera, backend="torch")) for camera in cameras)
        with tempfile.TemporaryDirectory(prefix="mlsharp-render-") as folder:
            path = Path(folder) / "orbit.mp4"
            write_mp4(path, frames, fps=spec.fps)
            video = path.read_bytes()
    return {PREVIEW_KEY: preview, ORBIT_KEY: video}


async def render_scene(ply: bytes, spec: RenderSpec) -> dict[str, bytes]:
    """:func:`render_files` in a worker thread."""
    return await asyncio.to_thread(render_files, ply, spec)


async def store_renders(
    store: ResultStore, scenes: SceneStore, scene_key: str, job_id: str, idx: int, stem: str, spec: RenderSpec
) -> dict[str, str]:
    """Render a job's scene and keep the files as blobs the job owns (local or S3 alike), each
    downloadable and in the archive through its ``file_refs`` row; returns key -> file name."""
    rendered = await render_scene(await scenes.read(scene_key, "ply"), spec)
    names = render_names(idx, stem)
    files = {names[key]: data for key, data in rendered.items()}
    await store.write(job_id, files)
    await store.add_refs(job_id, {name: (store.key(job_id, name), len(data)) for name, data in files.items()})
    return names
