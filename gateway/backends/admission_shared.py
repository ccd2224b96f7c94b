"""Admission shared by every gateway replica: in-flight slots and the wait queue in Redis.

Without ``limits_redis_url`` each replica admits alone (:class:`Admission`), so N replicas send N
times ``max_in_flight`` to Triton and queue N times ``max_queue``. With it, the counts are global:

- ``<prefix>adm:leases``: sorted set, one member per running inference (``<replica>:<n>``),
  scored by its expiry (Redis clock, ms). A running request's replica pushes the expiry forward
  every heartbeat (``limits_lease_s`` / 3, at most 1 s); a replica that dies stops doing so and
  its slots come back after ``limits_lease_s``.
- ``<prefix>adm:queue``: sorted set of waiting requests by arrival (global FIFO: a slot goes to
  the longest waiter, whichever replica holds it), with ``<prefix>adm:queue-exp`` holding their
  expiries the same way.
- ``<prefix>adm:replicas`` / ``adm:hits``: each replica's heartbeat and how many cache hits it is
  serving (hits count against the same capacity, see gateway/service/hit_admission.py); global
  to within one heartbeat.

One Lua script takes a slot or a place in the queue atomically; waiters poll it (20-250 ms, and at
once when a slot of their own replica is released). Every key expires (4 leases) once no replica
touches it. Redis down: this replica's in-process :class:`Admission` with the same limits (see
gateway/service/limits_redis.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from gateway.backends.base import Admission
from gateway.errors import Overloaded
from gateway.service.limits_redis import LimitsRedis
from gateway.settings import Settings

_NOW = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local gone = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)
for i = 1, #gone do redis.call('ZREM', KEYS[2], gone[i]) end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
"""

# KEYS: leases, queue, queue-exp. ARGV: id, lease_ms, max_in_flight, max_queue, unbounded (0/1).
# Returns {1 admitted | 0 queued | -1 refused, running, queued}.
ACQUIRE_LUA = (
    _NOW
    + """
local id = ARGV[1]
local lease_ms = tonumber(ARGV[2])
local running = redis.call('ZCARD', KEYS[1])
local queued = redis.call('ZCARD', KEYS[2])
local free = tonumber(ARGV[3]) - running
local rank = redis.call('ZRANK', KEYS[2], id)
local result
if (rank and rank < free) or ((not rank) and free > queued) then
  redis.call('ZREM', KEYS[2], id)
  redis.call('ZREM', KEYS[3], id)
  redis.call('ZADD', KEYS[1], now + lease_ms, id)
  if rank then queued = queued - 1 end
  result = {1, running + 1, queued}
elseif (not rank) and ARGV[5] == '0' and queued >= tonumber(ARGV[4]) then
  result = {-1, running, queued}
else
  if not rank then
    redis.call('ZADD', KEYS[2], now, id)
    queued = queued + 1
  end
  redis.call('ZADD', KEYS[3], now + lease_ms, id)
  result = {0, running, queued}
end
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], lease_ms * 4) end
return result
"""
)

# KEYS: leases, queue, queue-exp, replicas, hits. ARGV: lease_ms, replica, hits, n held, held ids...,
# waiting ids... Returns {running, queued, hits of the other replicas}.
HEARTBEAT_LUA = (
    _NOW
    + """
local lease_ms = tonumber(ARGV[1])
local held = tonumber(ARGV[4])
for i = 5, 4 + held do redis.call('ZADD', KEYS[1], now + lease_ms, ARGV[i]) end
for i = 5 + held, #ARGV do
  if redis.call('ZSCORE', KEYS[2], ARGV[i]) then redis.call('ZADD', KEYS[3], now + lease_ms, ARGV[i]) end
end
local dead = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now)
for i = 1, #dead do redis.call('HDEL', KEYS[5], dead[i]) end
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
redis.call('ZADD', KEYS[4], now + lease_ms, ARGV[2])
redis.call('HSET', KEYS[5], ARGV[2], ARGV[3])
local others = 0
local all = redis.call('HGETALL', KEYS[5])
for i = 1, #all, 2 do
  if all[i] ~= ARGV[2] then others = others + tonumber(all[i + 1]) end
end
for i = 1, 5 do redis.call('PEXPIRE', KEYS[i], lease_ms * 4) end
return {redis.call('ZCARD', KEYS[1]), redis.call('ZCARD', KEYS[2]), others}
"""
)

#: seconds between polls of a waiter (doubling from the first to the last)
POLL_FIRST_S, POLL_MAX_S = 0.02, 0.25


class SharedAdmission:
    """:class:`Admission`'s interface over Redis; ``local`` is the fallback and holds the limits."""

    def __init__(self, redis: LimitsRedis, max_in_flight: int, max_queue: int, retry_after_s: int,
                 lease_s: float) -> None:  # fmt: skip
        self.redis = redis
        self.local = Admission(max_in_flight, max_queue, retry_after_s)
        self.lease_ms = int(lease_s * 1000)
        self.heartbeat_s = min(1.0, lease_s / 3)
        self.replica = uuid.uuid4().hex[:12]
        names = ("leases", "queue", "queue-exp", "replicas", "hits")
        self.keys = [f"{redis.prefix}adm:{name}" for name in names]
        self._acquire = redis.register_script(ACQUIRE_LUA)
        self._heartbeat = redis.register_script(HEARTBEAT_LUA)
        self._ids = itertools.count()
        self._held: set[str] = set()
        self._waiting: set[str] = set()
        self._hits = 0
        self._snapshot = {"in_flight": 0, "waiting": 0, "hits_elsewhere": 0}
        self._released = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()

    # -- the Admission interface --------------------------------------------------------------
    @property
    def max_in_flight(self) -> int:
        return self.local.max_in_flight

    @property
    def max_queue(self) -> int:
        return self.local.max_queue

    def resize(self, max_in_flight: int) -> None:
        self.local.resize(max_in_flight)

    def retry_after(self) -> float:
        if self.redis.down or self.local.service_s is None:
            return self.local.retry_after()
        ahead = self._snapshot["in_flight"] + self._snapshot["waiting"] + 1
        return max(1.0, min(3600.0, self.local.service_s * ahead / self.max_in_flight))

    def load(self) -> dict[str, int]:
        """Global figures as of the last script call (at most one heartbeat old)."""
        if self.redis.down:
            return self.local.load()
        return {**self._snapshot, "max_in_flight": self.max_in_flight, "max_queue": self.max_queue}

    def report_hits(self, active: int) -> None:
        """This replica's cache hits in progress; published with the next heartbeat."""
        self._hits = active

    def bind_metrics(self, metrics: Any) -> None:
        self.redis.bind_metrics(metrics)

    @asynccontextmanager
    async def slot(self, *, wait: bool = False) -> AsyncIterator[None]:
        lease = None
        if not self.redis.down:
            lease = await self._take(wait)
        if lease is None:  # Redis is down: this replica's own limits
            async with self.local.slot(wait=wait):
                yield
            return
        start = time.monotonic()
        try:
            yield
        finally:
            busy = time.monotonic() - start
            service = self.local.service_s
            self.local.service_s = busy if service is None else 0.8 * service + 0.2 * busy
            self._held.discard(lease)
            self._later(self._release(lease))

    # -- Redis ------------------------------------------------------------------------------------
    async def _take(self, wait: bool) -> str | None:
        """A lease id once admitted; None when Redis failed; raises Overloaded when refused."""
        lease = f"{self.replica}:{next(self._ids)}"
        delay = POLL_FIRST_S
        try:
            while True:
                released = self._released
                args = [lease, self.lease_ms, self.max_in_flight, self.max_queue, int(wait)]
                code, running, queued = await self._acquire(keys=self.keys[:3], args=args)
                self.redis.succeeded()
                self._snapshot.update(in_flight=int(running), waiting=int(queued))
                if int(code) == 1:
                    self._waiting.discard(lease)
                    self._held.add(lease)
                    return lease
                if int(code) == -1:
                    raise Overloaded(
                        f"The server is busy: {running} predictions running and {queued} waiting "
                        "across all gateways. Retry later or submit an async job (POST /v1/jobs).",
                        retry_after_s=self.retry_after(),
                    )
                self._waiting.add(lease)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(released.wait(), delay)
                delay = min(POLL_MAX_S, delay * 2)
        except (Overloaded, asyncio.CancelledError):
            self._forget(lease)
            raise
        except Exception as error:
            self.redis.failed("admission", error)
            self._forget(lease)
            return None

    def _forget(self, lease: str) -> None:
        if lease in self._waiting:
            self._waiting.discard(lease)
            self._later(self._release(lease))

    async def _release(self, lease: str) -> None:
        """Give the slot (or the place in the queue) back; wake this replica's waiters."""
        self._released.set()
        self._released = asyncio.Event()
        try:
            async with self.redis.client.pipeline(transaction=True) as pipe:
                for key in self.keys[:3]:
                    pipe.zrem(key, lease)
                await pipe.execute()
        except Exception as error:  # the lease expires on its own
            self.redis.failed("admission", error)

    def _later(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def beat(self) -> None:
        """Extend this replica's leases and queue places, publish its hits, refresh the figures."""
        held, waiting = sorted(self._held), sorted(self._waiting)
        args = [self.lease_ms, self.replica, self._hits, len(held), *held, *waiting]
        running, queued, others = await self._heartbeat(keys=self.keys, args=args)
        self._snapshot = {"in_flight": int(running), "waiting": int(queued), "hits_elsewhere": int(others)}

    async def _beat_forever(self) -> None:
        while True:
            if not self.redis.down:
                try:
                    await self.beat()
                    self.redis.succeeded()
                except Exception as error:
                    self.redis.failed("heartbeat", error)
            await asyncio.sleep(self.heartbeat_s)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._beat_forever(), name="admission-heartbeat")

    async def close(self) -> None:
        """Stop the heartbeat and hand back what this replica holds (a crash would let it expire)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for lease in sorted(self._held | self._waiting):
            await self._release(lease)
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        await self.redis.close()


def build_admission(settings: Settings) -> Admission | SharedAdmission:
    """In-process admission, or the shared one when a limits Redis is configured."""
    redis = LimitsRedis.from_settings(settings)
    if redis is None:
        return Admission(settings.max_in_flight or 1, settings.max_queue, settings.retry_after_s)
    limits = (settings.max_in_flight or 1, settings.max_queue, settings.retry_after_s)
    return SharedAdmission(redis, *limits, lease_s=settings.limits_lease_s)
