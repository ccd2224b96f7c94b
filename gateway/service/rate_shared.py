"""Per-principal token buckets shared by every gateway replica (Redis), or in process.

Without ``limits_redis_url`` each replica keeps its buckets in memory (:class:`RateLimiter`), so
N replicas allow N times the rate. With it, one bucket per principal lives in Redis: a Lua script
refills and takes a token atomically, with Redis' own clock (replicas' clocks may disagree), and
the key expires once the bucket would be full again (an expired bucket and a full one are the
same, so expiry forgets nothing). Key: ``<prefix>rate:<sha256 of the bucket name>`` (names hold
client addresses and JWT subjects; hashed, they are fixed-length and say nothing).

Redis down: the replica's in-process bucket decides (see gateway/service/limits_redis.py).
"""

from __future__ import annotations

import hashlib
from typing import Any, Protocol

from gateway.errors import RateLimited
from gateway.service.auth import RateLimiter
from gateway.service.limits_redis import LimitsRedis
from gateway.settings import Settings

# KEYS[1] bucket; ARGV: rate (tokens per ms), burst. Returns {allowed 0/1, tokens as a string}
# (Lua numbers come back as integers, so the fractional token count travels as text).
TOKEN_BUCKET_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
if now > ts then
  tokens = math.min(burst, tokens + (now - ts) * rate)
  ts = now
end
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens), 'ts', ts)
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate) + 1000)
return {allowed, string.format('%.6f', tokens)}
"""


class Limiter(Protocol):
    async def take(self, key: str, per_minute: float | None = None) -> None:
        """Take one token from ``key``'s bucket or raise :class:`RateLimited`."""
        ...

    async def close(self) -> None: ...


class LocalRateLimiter(RateLimiter):
    """The in-process buckets behind the async interface the gate uses."""

    async def take(self, key: str, per_minute: float | None = None) -> None:
        self.check(key, per_minute)

    async def close(self) -> None:
        return None


class SharedRateLimiter:
    """Token buckets in the limits Redis; the in-process buckets while it is unreachable."""

    def __init__(self, redis: LimitsRedis, per_minute: float, burst: int) -> None:
        self.redis = redis
        self.per_minute = per_minute
        self.burst = burst
        self.local = LocalRateLimiter(per_minute, burst)
        self._script = redis.register_script(TOKEN_BUCKET_LUA)

    def bind_metrics(self, metrics: Any) -> None:
        self.redis.bind_metrics(metrics)

    def _key(self, name: str) -> str:
        return f"{self.redis.prefix}rate:{hashlib.sha256(name.encode()).hexdigest()[:32]}"

    async def take(self, key: str, per_minute: float | None = None) -> None:
        rate = self.per_minute if per_minute is None else per_minute
        if rate <= 0:
            return
        if self.redis.down:
            self.local.check(key, rate)
            return
        try:
            allowed, tokens = await self._script(
                keys=[self._key(key)], args=[repr(rate / 60_000.0), self.burst]
            )
        except Exception as error:
            self.redis.failed("rate_limit", error)
            self.local.check(key, rate)
            return
        self.redis.succeeded()
        if int(allowed) != 1:
            missing = 1.0 - float(tokens)
            raise RateLimited(
                f"Rate limit of {rate:g} requests per minute exceeded.",
                retry_after_s=missing * 60.0 / rate,
            )

    async def close(self) -> None:
        await self.redis.close()


def build_rate_limiter(settings: Settings) -> LocalRateLimiter | SharedRateLimiter:
    redis = LimitsRedis.from_settings(settings)
    if redis is None:
        return LocalRateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst)
    return SharedRateLimiter(redis, settings.rate_limit_per_minute, settings.rate_limit_burst)
