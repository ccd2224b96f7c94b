"""In-process backend: the core package's eager pipeline, run in worker threads.

Used by the embedded ``serve`` (no Triton needed) and by fast tests. The network runs in a
thread pool sized to the admission limit, so the event loop only awaits futures.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from gateway.backends.base import Admission, InferenceResult, no_gpu
from gateway.errors import BackendUnavailable
from gateway.settings import Settings

log = logging.getLogger("gateway.backend.local")


def torch_device_info() -> dict[str, Any]:
    """What torch sees: CUDA (NVIDIA or AMD ROCm), Apple MPS, or nothing."""
    import torch

    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return {
            "available": True,
            "vendor": "AMD" if getattr(torch.version, "hip", None) else "NVIDIA",
            "name": props.name,
            "count": torch.cuda.device_count(),
            "memory_mb": props.total_memory // 2**20,
        }
    if torch.backends.mps.is_available():
        return {"available": True, "vendor": "Apple", "name": "mps", "count": 1, "memory_mb": 0}
    return no_gpu()


class LocalBackend:
    """Runs :class:`mlsharp.pipeline.ScenePipeline` on decoded uploads."""

    name = "local"

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        in_flight = settings.max_in_flight or 1  # one network at a time unless configured
        self._admission = Admission(in_flight, settings.max_queue, settings.retry_after_s)
        self._executor = ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix="mlsharp-infer")
        self._pipeline: Any = None
        self._loading: asyncio.Task[None] | None = None
        self.load_error: str | None = None
        self.model_id = ""  # set from the loaded weights; not ready before

    async def start(self) -> None:
        """Load the network in the background so the HTTP server answers (503) meanwhile."""
        self._loading = asyncio.create_task(self._load(), name="local-backend-load")

    async def _load(self) -> None:
        try:
            pipeline = await asyncio.get_running_loop().run_in_executor(self._executor, self._build)
        except Exception as error:  # CheckpointError and friends: keep serving health with the reason
            self.load_error = str(error) or type(error).__name__
            log.error("local backend failed to load: %s", self.load_error)
            return
        self._pipeline = pipeline
        self.model_id = pipeline.loaded.model_id
        log.info("local backend ready", extra={"model_id": self.model_id})

    def _build(self) -> Any:
        from mlsharp.checkpoint import load_predictor
        from mlsharp.pipeline import ScenePipeline

        s = self._settings
        loaded = load_predictor(
            s.local_preset,
            checkpoint=s.local_checkpoint,
            random_weights=s.local_random_weights,
            device=s.local_device,
            download=s.local_download,
        )
        return ScenePipeline(loaded, device=s.local_device)

    async def wait_loaded(self) -> None:
        if self._loading is not None:
            await asyncio.shield(self._loading)

    async def close(self) -> None:
        if self._loading is not None and not self._loading.done():
            self._loading.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def ready(self) -> bool:
        return self._pipeline is not None

    def load(self) -> dict[str, int]:
        return self._admission.load()

    async def device_info(self) -> dict[str, Any]:
        return await asyncio.to_thread(torch_device_info)

    async def infer(
        self,
        image_bytes: bytes,
        focal_px: float | None,
        focal_mm: float | None,
        formats: tuple[str, ...],
        *,
        wait: bool = False,
    ) -> InferenceResult:
        if self._pipeline is None:
            reason = self.load_error or "the model is still loading"
            raise BackendUnavailable(f"The local model is not ready: {reason}.")
        async with self._admission.slot(wait=wait):
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(
                self._executor, self._run, image_bytes, focal_px, focal_mm, formats
            )

    def _run(
        self, image_bytes: bytes, focal_px: float | None, focal_mm: float | None, formats: tuple[str, ...]
    ) -> InferenceResult:
        """Decode, then ONE network run and every requested encoding (ScenePipeline.predict)."""
        from mlsharp.imaging import decode_image

        start = time.perf_counter()
        decoded = decode_image(
            image_bytes,
            max_pixels=self._settings.upload_max_pixels,
            max_bytes=self._settings.upload_max_bytes,
            focal_px=focal_px,
            focal_mm=focal_mm,
        )
        decode_s = time.perf_counter() - start
        scene = self._pipeline.predict(decoded, formats)
        timings = {"decode": decode_s, **scene.stage_seconds}
        return InferenceResult(scene.encoded, scene.metadata, timings)
