"""All data-plane services of one app instance, built from settings and started together.

Owned by the app (``app.state.services``), never module globals, so tests can run several
gateways in one process, and a restart is simply a new container on the same folders.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from gateway import __version__
from gateway.backends import InferenceBackend, build_backend
from gateway.service.auth import Authenticator
from gateway.service.blobs import BlobStore, LocalBlobStore, make_private_dir
from gateway.service.cache import CacheStore, MemoryCache, RedisCache, ResultCache
from gateway.service.db import Database, build_database
from gateway.service.jobs import JobService
from gateway.service.metrics import Metrics
from gateway.service.predict import PredictService
from gateway.service.rate_shared import Limiter, build_rate_limiter
from gateway.service.retention import Retention
from gateway.service.s3blobs import S3BlobStore, parse_object_store_url
from gateway.service.scenes import SceneStore
from gateway.service.storage import ResultStore
from gateway.service.webhooks import WebhookService
from gateway.settings import Settings

log = logging.getLogger("gateway")


def build_cache_store(settings: Settings) -> CacheStore | None:
    if not settings.cache_enabled:
        return None
    if settings.redis_url is not None:
        return RedisCache(
            settings.redis_url.get_secret_value(),
            settings.redis_prefix,
            settings.cache_ttl_s,
            settings.redis_timeout_s,
            max_entry_bytes=settings.cache_max_bytes,
        )
    return MemoryCache(settings.cache_max_bytes, settings.cache_max_entries)


def build_blob_store(settings: Settings) -> BlobStore:
    """Files under results_dir, or the S3 bucket of ``object_store_url`` shared by replicas."""
    if settings.object_store_url is None:
        return LocalBlobStore(settings.results_dir)
    bucket, prefix = parse_object_store_url(settings.object_store_url)
    secret = settings.s3_secret_access_key
    return S3BlobStore(
        bucket,
        prefix,
        endpoint_url=settings.s3_endpoint_url,
        region=settings.s3_region,
        access_key_id=settings.s3_access_key_id.get_secret_value() if settings.s3_access_key_id else None,
        secret_access_key=secret.get_secret_value() if secret else None,
        create_bucket=settings.s3_create_bucket,
        addressing_style=settings.s3_addressing_style,
    )


@dataclass
class Services:
    settings: Settings
    backend: InferenceBackend
    metrics: Metrics
    db: Database
    blobs: BlobStore
    store: ResultStore
    cache: ResultCache
    scenes: SceneStore
    retention: Retention
    webhooks: WebhookService
    predict: PredictService
    jobs: JobService
    auth: Authenticator
    limiter: Limiter
    _sweeper: asyncio.Task[None] | None = field(default=None, repr=False)

    @classmethod
    def build(cls, settings: Settings, backend: InferenceBackend | None = None) -> Services:
        backend = backend or build_backend(settings)
        metrics = Metrics(__version__, backend.name, backend.model_id)
        limiter = build_rate_limiter(settings)
        for part in (backend, limiter):  # per-endpoint counts, shared-limits Redis errors
            bind = getattr(part, "bind_metrics", None)
            if bind is not None:
                bind(metrics)
        db = build_database(settings)
        blobs = build_blob_store(settings)
        store = ResultStore(blobs, db, settings.results_ttl_s)
        cache = ResultCache(build_cache_store(settings), metrics, settings.cache_max_entries)
        webhooks = WebhookService(db, settings, metrics)
        scenes = SceneStore(blobs, db)
        retention = Retention(
            store,
            scenes,
            db,
            cache_ttl_s=settings.cache_ttl_s,
            cache_max_bytes=settings.cache_max_bytes,
            results_max_bytes=settings.results_max_bytes,
        )
        predict = PredictService(
            backend,
            cache,
            store,
            scenes,
            webhooks,
            metrics,
            retry_after_s=settings.retry_after_s,
            cache_per_owner=settings.auth_enabled and settings.cache_per_owner,
        )
        return cls(
            settings=settings,
            backend=backend,
            metrics=metrics,
            db=db,
            blobs=blobs,
            store=store,
            cache=cache,
            scenes=scenes,
            retention=retention,
            webhooks=webhooks,
            predict=predict,
            jobs=JobService(db, store, predict, webhooks, settings),
            auth=Authenticator(settings),
            limiter=limiter,
        )

    async def start(self) -> None:
        make_private_dir(self.settings.results_dir)
        await self.db.open()
        await self.blobs.start()
        await self.backend.start()
        await self.webhooks.start()
        await self.jobs.start()
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="results-sweeper")
        log.info(
            "gateway started",
            extra={
                "backend": self.backend.name,
                "results_dir": str(self.settings.results_dir),
                "object_store": self.blobs.kind,
            },
        )

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await self.jobs.close()
        await self.webhooks.close()
        await self.backend.close()
        await self.limiter.close()
        await self.cache.close()
        await self.blobs.close()
        await self.db.close()
        log.info("gateway stopped")

    async def storage_problem(self, timeout_s: float = 2.0) -> str | None:
        """Why jobs and results cannot be stored now (database or object store), else None.
        For readiness: a gateway that cannot reach them should get no traffic."""
        checks: tuple[tuple[str, Callable[[], Awaitable[object]]], ...] = (
            ("database", lambda: self.db.fetch_one("SELECT 1 AS ok")),
            ("object store", self.blobs.check),
        )
        for name, check in checks:
            try:
                async with asyncio.timeout(timeout_s):
                    await check()
            except Exception as error:
                log.warning("readiness: %s unreachable", name, extra={"error": str(error)[:200]})
                return f"the {name} is unreachable"
        return None

    async def refresh_gauges(self) -> int:
        """Point-in-time gauges (jobs waiting, model id once loaded) before a scrape or /stats."""
        active = await self.jobs.active_count()
        self.metrics.queued_jobs.set(active)
        self.metrics.app_info.info(
            {"version": __version__, "backend": self.backend.name, "model_id": self.backend.model_id}
        )
        return active

    async def _sweep_forever(self) -> None:
        while True:
            try:
                await self.retention.sweep()
            except Exception:
                log.exception("sweeping expired results failed")
            await asyncio.sleep(self.settings.sweep_interval_s)
