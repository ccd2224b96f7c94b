"""Prediction data plane: cache lookup, backend call, result files, metrics and webhook events.

Shared by the synchronous ``/v1/predict`` route and the async job workers, so both paths cache,
measure and store results the same way.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from typing import Any, NamedTuple

from gateway.backends import InferenceBackend
from gateway.errors import GatewayError, RateLimited
from gateway.formats import output_name
from gateway.ids import new_id
from gateway.service.cache import CachedScene, ResultCache, cache_key
from gateway.service.hit_admission import HitAdmission
from gateway.service.inputs import PredictParams
from gateway.service.metrics import Metrics
from gateway.service.storage import ResultStore
from gateway.service.webhooks import WebhookService
from mlsharp.errors import MLSharpError

log = logging.getLogger("gateway.predict")

METADATA_NAME = "metadata.json"


class SceneResult(NamedTuple):
    scene: bytes
    metadata: dict[str, Any]
    timings: dict[str, float]
    cached: bool


def files_url(base_url: str, task_id: str, name: str) -> str:
    return f"{base_url.rstrip('/')}/files/{task_id}/{name}"


class PredictService:
    def __init__(
        self,
        backend: InferenceBackend,
        cache: ResultCache,
        store: ResultStore,
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
        self.webhooks = webhooks
        self.metrics = metrics

    async def infer(
        self, image: bytes, params: PredictParams, *, wait: bool = False, owner: str | None = None
    ) -> SceneResult:
        """One scene for one image, from the cache when possible (a hit still needs admission)."""
        start = time.perf_counter()
        self.metrics.input_size.labels("bytes").set(len(image))
        digest = await asyncio.to_thread(lambda: hashlib.sha256(image).hexdigest())  # ~0.1 s at 50 MB
        if self.cache_per_owner and owner is not None:
            digest = hashlib.sha256(f"owner\n{owner}\n{digest}".encode()).hexdigest()
        key = cache_key(
            digest,
            params.focal_px,
            params.focal_mm,
            self.backend.model_id,
            params.fmt,
        )
        hit = await self.cache.get(key)
        self.metrics.stage_duration.labels("cache_lookup").observe(time.perf_counter() - start)
        if hit is not None:
            try:
                self.hits.check(wait=wait)
            except RateLimited:
                self.metrics.rejected.labels("overloaded").inc()
                raise
            self.metrics.predict_requests.labels("cache_hit", params.fmt).inc()
            return SceneResult(hit.scene, hit.metadata, {"cache": time.perf_counter() - start}, True)
        self.metrics.active_tasks.inc()
        try:
            result = await self.backend.infer(image, params.focal_px, params.focal_mm, params.fmt, wait=wait)
        except RateLimited:
            self.metrics.rejected.labels("overloaded").inc()
            raise
        except (MLSharpError, GatewayError):
            self.metrics.predict_requests.labels("error", params.fmt).inc()
            raise
        finally:
            self.metrics.active_tasks.dec()
        for stage, seconds in result.timings.items():
            self.metrics.stage_duration.labels(stage).observe(seconds)
        for dim in ("width_px", "height_px"):
            value = result.metadata.get(dim) or result.metadata.get("camera", {}).get(dim)
            if isinstance(value, int | float):
                self.metrics.input_size.labels(dim.removesuffix("_px")).set(value)
        await self.cache.set(key, CachedScene(result.scene, result.metadata))
        self.metrics.predict_requests.labels("success", params.fmt).inc()
        self.metrics.predict_duration.observe(time.perf_counter() - start)
        return SceneResult(result.scene, result.metadata, result.timings, False)

    async def predict_task(
        self, image: bytes, params: PredictParams, *, owner: str, base_url: str
    ) -> dict[str, Any]:
        """The synchronous ``/v1/predict`` flow: infer, store under a fresh task id, notify."""
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
                {"task_id": task_id, "status": "failed", "error": str(error)},
            )
            raise
        name = output_name(params.fmt, random_weights=bool(result.metadata.get("random_weights")))
        store_start = time.perf_counter()
        with self.hits.hold(result.cached):
            await self.store.register_task(task_id, owner)
            await self.store.write(
                task_id, {name: result.scene, METADATA_NAME: json.dumps(result.metadata, indent=2).encode()}
            )
        self.metrics.stage_duration.labels("store").observe(time.perf_counter() - store_start)
        elapsed = round(time.perf_counter() - start, 3)
        url = files_url(base_url, task_id, name)
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
            extra={"task_id": task_id, "format": params.fmt, "cached": result.cached, "seconds": elapsed},
        )
        return {"status": "success", "url": url, "processing_time": elapsed, "task_id": task_id}
