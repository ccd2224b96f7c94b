"""The Redis that holds limits shared by all gateway replicas, and what happens when it is down.

Shared limits need a Redis that never evicts a key behind our back (``maxmemory-policy
noeviction``, no persistence needed: a restarted Redis starts with full buckets and no leases),
so NOT the cache's LRU instance; the policy is per server, so another DB number on the cache's
server does not help.

Outage policy: **degrade to per-replica limits, never fail a request because the limits store is
down.** While Redis is unreachable every replica enforces the same limits in process (exactly
what it does without ``limits_redis_url``), so N replicas allow at most N times the limit for the
duration of the outage instead of refusing all traffic. Each failure is logged (at most every
10 s) and counted (``limits_redis_errors_total{what}``); ``limits_redis_up`` is 0 meanwhile. After
a failure Redis is not asked again for ``limits_redis_retry_s``, so an outage costs one timeout,
not one per request.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from gateway.settings import Settings

log = logging.getLogger("gateway.limits")

#: seconds between two warnings about the same outage
WARN_EVERY_S = 10.0


class LimitsRedis:
    """One redis.asyncio client for the limit scripts, with a breaker after failures."""

    def __init__(self, url: str, prefix: str, timeout_s: float, retry_s: float) -> None:
        import redis.asyncio as redis

        self.client = redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, health_check_interval=30
        )
        self.prefix = prefix
        self.retry_s = retry_s
        self.errors = 0
        self._down_until = 0.0
        self._last_warning = 0.0
        self._metrics: Any = None

    @classmethod
    def from_settings(cls, settings: Settings) -> LimitsRedis | None:
        if settings.limits_redis_url is None:
            return None
        return cls(
            settings.limits_redis_url.get_secret_value(),
            settings.limits_redis_prefix,
            settings.limits_redis_timeout_s,
            settings.limits_redis_retry_s,
        )

    def bind_metrics(self, metrics: Any) -> None:
        self._metrics = metrics
        metrics.limits_redis_up.set(0 if self.down else 1)

    @property
    def down(self) -> bool:
        """True while the breaker is open: use the in-process limits without asking Redis."""
        return time.monotonic() < self._down_until

    def register_script(self, source: str) -> Any:
        return self.client.register_script(source)

    def succeeded(self) -> None:
        if self._metrics is not None:
            self._metrics.limits_redis_up.set(1)

    def failed(self, what: str, error: Exception) -> None:
        """Open the breaker, count the failure, warn (rate-limited)."""
        self.errors += 1
        self._down_until = time.monotonic() + self.retry_s
        if self._metrics is not None:
            self._metrics.limits_redis_errors.labels(what).inc()
            self._metrics.limits_redis_up.set(0)
        if time.monotonic() - self._last_warning > WARN_EVERY_S:
            self._last_warning = time.monotonic()
            log.warning(
                "limits Redis failed (%s: %s); limits are per replica for %g s",
                what,
                error,
                self.retry_s,
            )

    async def close(self) -> None:
        await self.client.aclose()
