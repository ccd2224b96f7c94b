"""The inference backend contract and the admission control every backend shares."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, NamedTuple, Protocol, runtime_checkable

from gateway.errors import Overloaded
from mlsharp.formats.metadata import SceneMetadata


class InferenceResult(NamedTuple):
    """What one inference returns: one encoded scene per requested format, metadata once,
    seconds per stage."""

    scenes: dict[str, bytes]
    metadata: SceneMetadata
    timings: dict[str, float]


@runtime_checkable
class InferenceBackend(Protocol):
    """Turns one encoded image into its scene in every requested format, with ONE network run.
    Must never block the event loop."""

    #: identifies the weights; part of every cache key ("" until read from the served model)
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
        formats: tuple[str, ...],
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
    once with :class:`Overloaded` (HTTP 429) instead of piling up in memory. ``wait=True`` (async
    jobs, which are already queued in SQLite) skips the queue bound. ``Retry-After`` is how long
    the work ahead takes at the measured service time (a moving average), not a constant.
    The limit can be raised once the backend has read its served config (:meth:`resize`).
    """

    def __init__(self, max_in_flight: int, max_queue: int, retry_after_s: int) -> None:
        self.max_in_flight = max_in_flight
        self.max_queue = max_queue
        self.retry_after_s = retry_after_s
        self.in_flight = 0
        self.waiting = 0
        #: moving average of one slot's busy time, seconds; None until a first measurement
        self.service_s: float | None = None
        self._waiters: deque[asyncio.Future[None]] = deque()

    def resize(self, max_in_flight: int) -> None:
        """Change the in-flight limit (a larger one wakes waiters at once)."""
        self.max_in_flight = max(1, max_in_flight)
        self._wake()

    def retry_after(self) -> float:
        """Seconds until a slot is likely free for a newcomer: the queue ahead at the measured pace."""
        if self.service_s is None:
            return float(self.retry_after_s)
        ahead = self.in_flight + self.waiting + 1
        return max(1.0, min(3600.0, self.service_s * ahead / self.max_in_flight))

    def _wake(self) -> None:
        while self._waiters and self.in_flight < self.max_in_flight:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.in_flight += 1  # the slot is handed over, so no newcomer can take it
                waiter.set_result(None)

    async def _acquire(self) -> None:
        if self.in_flight < self.max_in_flight and not self._waiters:
            self.in_flight += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self.waiting += 1
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release()  # the slot was handed over just as we were cancelled
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise
        finally:
            self.waiting -= 1

    def _release(self) -> None:
        self.in_flight -= 1
        self._wake()

    @asynccontextmanager
    async def slot(self, *, wait: bool = False) -> AsyncIterator[None]:
        full = self.in_flight >= self.max_in_flight
        if not wait and full and self.waiting >= self.max_queue:
            raise Overloaded(
                f"The server is busy: {self.in_flight} predictions running and {self.waiting} waiting. "
                "Retry later or submit an async job (POST /v1/jobs).",
                retry_after_s=self.retry_after(),
            )
        await self._acquire()
        start = time.monotonic()
        try:
            yield
        finally:
            busy = time.monotonic() - start
            self.service_s = busy if self.service_s is None else 0.8 * self.service_s + 0.2 * busy
            self._release()

    def load(self) -> dict[str, int]:
        return {
            "in_flight": self.in_flight,
            "waiting": self.waiting,
            "max_in_flight": self.max_in_flight,
            "max_queue": self.max_queue,
        }


def no_gpu() -> dict[str, Any]:
    return {"available": False, "vendor": None, "name": None, "count": 0, "memory_mb": 0}
