"""What stays stored: expiry by TTL, idle scenes by last access, and a bound on total bytes.

Why: results used to grow until the volume filled and every request failed. Each sweep
(1) deletes tasks and jobs past ``results_ttl_s``, (2) deletes unreferenced scene files idle
past ``cache_ttl_s`` or beyond ``cache_max_bytes`` (least recently used first), and (3) while
everything stored exceeds ``results_max_bytes``: first unreferenced scene files (they are only
a cache), then ended tasks and jobs oldest-finished first, each followed by the scene files it
was the last to reference. Queued and running jobs, and anything used in the last
``IN_USE_S``, are never evicted. Sizes come from the database, never from listing the store.
"""

from __future__ import annotations

import logging
import time

from gateway.service.db import Database
from gateway.service.scenes import IN_USE_S, SceneStore
from gateway.service.storage import ResultStore

log = logging.getLogger("gateway.retention")


class Retention:
    def __init__(
        self,
        store: ResultStore,
        scenes: SceneStore,
        db: Database,
        *,
        cache_ttl_s: float,
        cache_max_bytes: int,
        results_max_bytes: int,
    ) -> None:
        self.store = store
        self.scenes = scenes
        self.db = db
        self.cache_ttl_s = cache_ttl_s
        self.cache_max_bytes = cache_max_bytes
        self.results_max_bytes = results_max_bytes
        #: tasks and jobs removed by the size bound since start (tests, logs)
        self.evicted = 0

    async def total_bytes(self) -> int:
        row = await self.db.fetch_one("SELECT COALESCE(SUM(size_bytes), 0) AS n FROM blobs")
        return int(row["n"]) if row else 0

    async def _scene_sweep(self, now: float) -> int:
        return await self.scenes.sweep(
            self.cache_ttl_s, self.cache_max_bytes, now, total_max_bytes=self.results_max_bytes
        )

    async def sweep(self, now: float | None = None) -> int:
        """One pass of all three rules; returns tasks/jobs and scenes removed."""
        now = time.time() if now is None else now
        removed = await self.store.sweep(now)
        removed += await self._scene_sweep(now)
        return removed + await self._evict(now)

    async def _evict(self, now: float) -> int:
        """Ended tasks and jobs, oldest-finished first, until the total fits the bound."""
        evicted = 0
        while (excess := await self.total_bytes() - self.results_max_bytes) > 0:
            candidates = await self.store.oldest_finished(now - IN_USE_S)
            if not candidates:
                log.warning(
                    "results exceed results_max_bytes but nothing may be evicted yet",
                    extra={"excess_bytes": excess},
                )
                break
            for candidate in candidates:
                await self.store.expire(candidate["id"], candidate["kind"])
                evicted += 1
                excess -= candidate["size_bytes"]
                if excess <= 0:
                    break
            await self._scene_sweep(now)
        if evicted:
            self.evicted += evicted
            log.info("results evicted by the size bound", extra={"items": evicted})
        return evicted
