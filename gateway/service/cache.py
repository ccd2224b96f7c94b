"""Result cache: an index of stored scenes (their metadata JSON), never pickles or tensors.

Key = sha256 over (sha256 of the image bytes, focal override, model id): one entry per SCENE,
whatever formats were asked for, so a new checkpoint never returns a stale scene and another
format of the same photo is an encoding, not an inference. The scene bytes themselves live once,
in the content-addressed :class:`gateway.service.scenes.SceneStore`; an entry whose stored PLY is
gone counts as a miss. In-process LRU by default; Redis (``redis.asyncio``) when configured,
shared by replicas. A Redis failure is a cache miss plus a warning and a metric, never a failed
request.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import OrderedDict
from typing import Any, NamedTuple, Protocol

from gateway.service.metrics import Metrics
from mlsharp.formats.metadata import SceneMetadata, parse_metadata

log = logging.getLogger("gateway.cache")


class CachedScene(NamedTuple):
    """What the index keeps per scene: its metadata (the bytes are in the scene store)."""

    metadata: SceneMetadata


def _entry(raw: str | bytes) -> CachedScene | None:
    """An index entry read back; one that is not a JSON object is a miss. Its keys are not
    checked: entries are written only from a ``SceneMetadata`` (as before this type existed)."""
    try:
        return CachedScene(parse_metadata(raw, check_keys=False))
    except ValueError as error:
        log.warning("unreadable cache entry ignored: %s", error)
        return None


def scene_key(image_sha256: str, focal_px: float | None, focal_mm: float | None, model_id: str) -> str:
    """The scene's identity: the image, the focal override and the weights, never the format."""
    if not model_id:
        raise ValueError("no model id: the backend has not read its served config yet")
    focal = f"px={focal_px!r};mm={focal_mm!r}"
    material = "\n".join(("v2", image_sha256, focal, model_id))
    return hashlib.sha256(material.encode()).hexdigest()


class CacheStore(Protocol):
    kind: str

    async def get(self, key: str) -> CachedScene | None: ...

    async def set(self, key: str, value: CachedScene) -> None: ...

    async def clear(self) -> int: ...

    async def size(self) -> int: ...

    async def close(self) -> None: ...


class MemoryCache:
    """LRU bounded by total bytes and by entry count; one event loop, so no lock is needed."""

    kind = "memory"

    def __init__(self, max_bytes: int, max_entries: int) -> None:
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self.bytes = 0
        self._items: OrderedDict[str, bytes] = OrderedDict()

    async def get(self, key: str) -> CachedScene | None:
        item = self._items.get(key)
        if item is None:
            return None
        self._items.move_to_end(key)
        return _entry(item)

    async def set(self, key: str, value: CachedScene) -> None:
        meta = json.dumps(value.metadata).encode()
        if len(meta) > self.max_bytes:
            return  # larger than the whole cache: not worth evicting everything for
        old = self._items.pop(key, None)
        if old is not None:
            self.bytes -= len(old)
        self._items[key] = meta
        self.bytes += len(meta)
        while self.bytes > self.max_bytes or len(self._items) > self.max_entries:
            _, meta_old = self._items.popitem(last=False)
            self.bytes -= len(meta_old)

    async def clear(self) -> int:
        count = len(self._items)
        self._items.clear()
        self.bytes = 0
        return count

    async def size(self) -> int:
        return len(self._items)

    async def close(self) -> None:
        await self.clear()


class RedisCache:
    """Hashes ``{meta}`` with a TTL; a sorted-set index replaces ``KEYS`` scans."""

    kind = "redis"

    def __init__(self, url: str, prefix: str, ttl_s: float, timeout_s: float, max_entry_bytes: int) -> None:
        import redis.asyncio as redis

        self._redis = redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, health_check_interval=30
        )
        self.prefix = prefix
        self.ttl_s = ttl_s
        self.max_entry_bytes = max_entry_bytes
        self._index = prefix + "index"

    async def get(self, key: str) -> CachedScene | None:
        meta = await self._redis.hget(self.prefix + key, "meta")
        if meta is None:
            return None
        return _entry(meta)

    async def set(self, key: str, value: CachedScene) -> None:
        meta = json.dumps(value.metadata)
        if len(meta) > self.max_entry_bytes:
            return
        now = time.time()
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.prefix + key, mapping={"meta": meta})
            pipe.expire(self.prefix + key, int(self.ttl_s))
            pipe.zadd(self._index, {key: now})
            pipe.zremrangebyscore(self._index, "-inf", now - self.ttl_s)
            await pipe.execute()

    async def clear(self) -> int:
        count = 0
        while True:
            keys = await self._redis.zrange(self._index, 0, 499)
            if not keys:
                return count
            names = [self.prefix + (k.decode() if isinstance(k, bytes) else str(k)) for k in keys]
            await self._redis.delete(*names)
            await self._redis.zrem(self._index, *keys)
            count += len(keys)

    async def size(self) -> int:
        await self._redis.zremrangebyscore(self._index, "-inf", time.time() - self.ttl_s)
        return int(await self._redis.zcard(self._index))

    async def close(self) -> None:
        await self._redis.aclose()


class ResultCache:
    """Counts hits and misses and turns store failures into misses (with a metric)."""

    def __init__(self, store: CacheStore | None, metrics: Metrics, max_size: int) -> None:
        self.store = store
        self.metrics = metrics
        self.max_size = max_size
        self.hits = 0
        self.misses = 0
        self.errors = 0
        self._last_warning = 0.0

    @property
    def enabled(self) -> bool:
        return self.store is not None

    def _failed(self, action: str, error: Exception) -> None:
        self.errors += 1
        self.metrics.redis_errors.inc()
        if time.monotonic() - self._last_warning > 10:  # do not flood logs while Redis is down
            self._last_warning = time.monotonic()
            log.warning("cache %s failed, serving without cache: %s", action, error)

    async def get(self, key: str) -> CachedScene | None:
        if self.store is None:
            return None
        try:
            found = await self.store.get(key)
        except Exception as error:
            self._failed("read", error)
            found = None
        if found is None:
            self.misses += 1
            self.metrics.cache_misses.inc()
        else:
            self.hits += 1
            self.metrics.cache_hits.inc()
        return found

    async def set(self, key: str, value: CachedScene) -> None:
        if self.store is None:
            return
        try:
            await self.store.set(key, value)
        except Exception as error:
            self._failed("write", error)

    async def clear(self) -> int:
        if self.store is None:
            return 0
        try:
            return await self.store.clear()
        except Exception as error:
            self._failed("clear", error)
            return 0

    async def stats(self) -> dict[str, Any]:
        size: int | None = 0
        if self.store is not None:
            try:
                size = await self.store.size()
            except Exception as error:
                self._failed("size", error)
                size = None
        lookups = self.hits + self.misses
        return {
            "enabled": self.enabled,
            "size": size,
            "max_size": self.max_size,
            "hits": self.hits,
            "misses": self.misses,
            "hit_rate": round(self.hits / lookups, 4) if lookups else 0.0,
            "backend": self.store.kind if self.store is not None else None,
            "bytes": getattr(self.store, "bytes", None),
            "errors": self.errors,
        }

    async def close(self) -> None:
        if self.store is not None:
            await self.store.close()
