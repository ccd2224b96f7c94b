"""The inference backend contract and the admission control every backend shares."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, NamedTuple, Protocol, runtime_checkable

from gateway.errors import Overloaded


class InferenceResult(NamedTuple):
    """What one inference returns: encoded scene, metadata document, seconds per stage."""

    scene: bytes
    metadata: dict[str, Any]
    timings: dict[str, float]


@runtime_checkable
class InferenceBackend(Protocol):
    """Turns one encoded image into one encoded scene. Must never block the event loop."""

    #: identifies the weights; part of every cache key
    model_id: str
    #: "local", "triton" or a test name; shown in /v1/health
    name: str

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def ready(self) -> bool: ...

    async def infer(
        self,
        image_bytes: bytes,
        focal_px: float | None,
        focal_mm: float | None,
        fmt: str,
        *,
        wait: bool = False,
    ) -> InferenceResult: ...

    def load(self) -> dict[str, int]:
        """Admission figures: {"in_flight", "waiting", "max_in_flight", "max_queue"}."""
        ...

    async def device_info(self) -> dict[str, Any]:
        """Accelerator facts for /v1/health and /v1/stats: available, vendor, name, count, memory_mb."""
        ...


class Admission:
    """Bounded in-flight work plus a bounded wait queue (TEI-style).

    A request that finds every slot busy and ``max_queue`` others already waiting is refused at
    once with :class:`Overloaded` (HTTP 429 + Retry-After) instead of piling up in memory.
    ``wait=True`` (async jobs, which are already queued in SQLite) skips the queue bound.
    """

    def __init__(self, max_in_flight: int, max_queue: int, retry_after_s: int) -> None:
        self.max_in_flight = max_in_flight
        self.max_queue = max_queue
        self.retry_after_s = retry_after_s
        self._slots = asyncio.Semaphore(max_in_flight)
        self.in_flight = 0
        self.waiting = 0

    @asynccontextmanager
    async def slot(self, *, wait: bool = False) -> AsyncIterator[None]:
        if not wait and self._slots.locked() and self.waiting >= self.max_queue:
            raise Overloaded(
                f"The server is busy: {self.in_flight} predictions running and {self.waiting} waiting. "
                "Retry later or submit an async job (POST /v1/jobs).",
                retry_after_s=self.retry_after_s,
            )
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1
            self._slots.release()

    def load(self) -> dict[str, int]:
        return {
            "in_flight": self.in_flight,
            "waiting": self.waiting,
            "max_in_flight": self.max_in_flight,
            "max_queue": self.max_queue,
        }


def no_gpu() -> dict[str, Any]:
    return {"available": False, "vendor": None, "name": None, "count": 0, "memory_mb": 0}
