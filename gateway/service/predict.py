"""Prediction data plane: cache lookup, backend call, scene storage, metrics and webhook events.

Shared by the synchronous ``/v1/predict`` route and the async job workers, so both paths cache,
measure and store results the same way.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from typing import Any, NamedTuple

from gateway.backends import InferenceBackend
from gateway.errors import BackendUnavailable, GatewayError, RateLimited
from gateway.formats import output_name
from gateway.ids import new_id
from gateway.service.cache import CachedScene, ResultCache, scene_key
from gateway.service.hit_admission import HitAdmission
from gateway.service.inputs import PredictParams
from gateway.service.metrics import Metrics
from gateway.service.scenes import METADATA_FILE, SceneStore, scene_file
from gateway.service.storage import ResultStore
from gateway.service.webhooks import WebhookService
from mlsharp.errors import MLSharpError
from mlsharp.formats.metadata import SceneMetadata, image_size

log = logging.getLogger("gateway.predict")

METADATA_NAME = "metadata.json"


class SceneResult(NamedTuple):
    """One scene, stored: its key in the scene store, metadata, per-stage seconds, whether the
    network was skipped (cache hit), and the formats that were converted from the stored PLY."""

    key: str
    metadata: SceneMetadata
    timings: dict[str, float]
    cached: bool
    converted: tuple[str, ...] = ()


def files_url(base_url: str, task_id: str, name: str) -> str:
    return f"{base_url.rstrip('/')}/files/{task_id}/{name}"


def backend_formats(formats: tuple[str, ...]) -> tuple[str, ...]:
    """What the backend encodes: the request's formats plus the PLY the store keeps (float32,
    lossless), from which any later format of the same scene is converted."""
    return formats if "ply" in formats else (*formats, "ply")


class PredictService:
    def __init__(
        self,
        backend: InferenceBackend,
        cache: ResultCache,
        store: ResultStore,
        scenes: SceneStore,
        webhooks: WebhookService,
        metrics: Metrics,
        *,
        retry_after_s: int = 5,
        cache_per_owner: bool = False,
    ) -> None:
        self.backend = backend
        self.hits = HitAdmission(backend, retry_after_s)
        #: scope cache keys by owner (auth on): another user's upload is never a hit for you
        self.cache_per_owner = cache_per_owner
        self.cache = cache
        self.store = store
        self.scenes = scenes
        self.webhooks = webhooks
        self.metrics = metrics

    def _observe_size(self, metadata: SceneMetadata) -> None:
        """``input_size_info`` width/height from the metadata's nested ``image_size``."""
        size = image_size(metadata)
        if size is not None:
            self.metrics.input_size.labels("width").set(size["width_px"])
            self.metrics.input_size.labels("height").set(size["height_px"])

    async def _from_cache(
        self, key: str, formats: tuple[str, ...], start: float, *, wait: bool
    ) -> SceneResult | None:
        """A hit: the index knows the scene and its PLY is stored; missing formats are converted
        from that PLY in a worker thread (no network) and stored once. Hits count against the
        server's capacity (HitAdmission) while they convert."""
        hit = await self.cache.get(key)
        stored = None if hit is None else await self.scenes.claim(key)
        if hit is None or stored is None:
            return None
        self.hits.check(wait=wait)
        missing = tuple(fmt for fmt in formats if scene_file(fmt) not in stored)
        if missing or METADATA_FILE not in stored:
            from mlsharp.formats.convert import convert_ply

            with self.hits.hold(True):
                encoded: dict[str, bytes] = {}
                if missing:
                    ply = await self.scenes.read(key, "ply")
                    encoded = await asyncio.to_thread(convert_ply, ply, missing)
                await self.scenes.put(key, encoded, hit.metadata)
        return SceneResult(key, hit.metadata, {"cache": time.perf_counter() - start}, True, missing)

    async def infer(
        self, image: bytes, params: PredictParams, *, wait: bool = False, owner: str | None = None
    ) -> SceneResult:
        """One scene for one image in every requested format, stored once: from the cache when
        possible (a hit still needs admission), else ONE backend call for all formats."""
        start = time.perf_counter()
        self.metrics.input_size.labels("bytes").set(len(image))
        if not self.backend.model_id:
            reason = getattr(self.backend, "load_error", None) or "its model id has not been read yet"
            raise BackendUnavailable(f"The {self.backend.name} backend is not ready: {reason}.")
        digest = await asyncio.to_thread(lambda: hashlib.sha256(image).hexdigest())  # ~0.1 s at 50 MB
        if self.cache_per_owner and owner is not None:
            digest = hashlib.sha256(f"owner\n{owner}\n{digest}".encode()).hexdigest()
        key = scene_key(digest, params.focal_px, params.focal_mm, self.backend.model_id)
        try:
            hit = await self._from_cache(key, params.formats, start, wait=wait)
        except RateLimited:
            self.metrics.rejected.labels("overloaded").inc()
            raise
        self.metrics.stage_duration.labels("cache_lookup").observe(time.perf_counter() - start)
        if hit is not None:
            self._observe_size(hit.metadata)
            for fmt in params.formats:
                self.metrics.predict_requests.labels("cache_hit", fmt).inc()
            return hit
        self.metrics.active_tasks.inc()
        try:
            result = await self.backend.infer(
                image, params.focal_px, params.focal_mm, backend_formats(params.formats), wait=wait
            )
        except RateLimited:
            self.metrics.rejected.labels("overloaded").inc()
            raise
        except (MLSharpError, GatewayError):
            for fmt in params.formats:
                self.metrics.predict_requests.labels("error", fmt).inc()
            raise
        finally:
            self.metrics.active_tasks.dec()
        for stage, seconds in result.timings.items():
            self.metrics.stage_duration.labels(stage).observe(seconds)
        self._observe_size(result.metadata)
        store_start = time.perf_counter()
        await self.scenes.put(key, result.scenes, result.metadata)
        self.metrics.stage_duration.labels("store").observe(time.perf_counter() - store_start)
        await self.cache.set(key, CachedScene(result.metadata))
        for fmt in params.formats:
            self.metrics.predict_requests.labels("success", fmt).inc()
        self.metrics.predict_duration.observe(time.perf_counter() - start)
        return SceneResult(key, result.metadata, result.timings, False)

    async def link_outputs(
        self, result: SceneResult, formats: tuple[str, ...], folder_id: str, stem: str
    ) -> dict[str, str]:
        """Reference the scene's files from a task or job; returns format -> file name (plus
        ``metadata``). ``file_refs`` rows: no scene bytes are written."""
        random_weights = result.metadata["random_weights"]
        names = {fmt: output_name(fmt, stem=stem, random_weights=random_weights) for fmt in formats}
        meta_name = METADATA_NAME if stem == "output" else f"{stem}.json"
        files = {scene_file(fmt): name for fmt, name in names.items()} | {METADATA_FILE: meta_name}
        await self.store.add_refs(folder_id, await self.scenes.refs(result.key, files))
        return names | {"metadata": meta_name}

    async def predict_task(
        self, image: bytes, params: PredictParams, *, owner: str, base_url: str
    ) -> dict[str, Any]:
        """The synchronous ``/v1/predict`` flow: infer, reference under a fresh task id, notify."""
        task_id = new_id()
        start = time.perf_counter()
        try:
            result = await self.infer(image, params, owner=owner)
        except RateLimited:
            raise
        except (MLSharpError, GatewayError) as error:
            await self.webhooks.emit(
                owner,
                "task_failed",
                {"task_id": task_id, "status": "failed", "error": str(error), "code": error.code},
            )
            raise
        with self.hits.hold(result.cached):
            await self.store.register_task(task_id, owner)
            names = await self.link_outputs(result, params.formats, task_id, "output")
        elapsed = round(time.perf_counter() - start, 3)
        urls = {fmt: files_url(base_url, task_id, names[fmt]) for fmt in params.formats}
        url = urls[params.formats[0]]
        await self.webhooks.emit(
            owner,
            "task_completed",
            {
                "task_id": task_id,
                "status": "completed",
                "url": url,
                "processing_time": elapsed,
            },
        )
        log.info(
            "predict done",
            extra={
                "task_id": task_id,
                "formats": list(params.formats),
                "cached": result.cached,
                "seconds": elapsed,
            },
        )
        return {
            "status": "success",
            "url": url,
            "urls": urls,
            "metadata_url": files_url(base_url, task_id, names["metadata"]),
            "image_size": image_size(result.metadata),
            "processing_time": elapsed,
            "task_id": task_id,
            "cached": result.cached,
        }
