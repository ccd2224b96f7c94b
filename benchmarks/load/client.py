"""Bounded asyncio load on ``POST /v1/predict``: N requests at most, T seconds at most, C in flight,
spread round robin over one or more gateways.

Why bounded both ways: a slow CPU model can turn "1000 requests" into hours, and a fast error path
can turn "60 s" into a flood; the run stops at whichever bound comes first and says which.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx
import numpy as np


def unique_jpeg(photo: bytes, serial: int) -> bytes:
    """The same JPEG with a COM segment carrying ``serial``, so no two requests share a cache key.

    Why: the gateway caches scenes by the image's sha256; a load run that repeats a photo would
    measure the cache, not the model. A comment segment leaves the pixels untouched.
    """
    if photo[:2] != b"\xff\xd8":
        raise ValueError("cache-busting needs JPEG input (use --allow-cache for other formats)")
    payload = f"mlsharp-load {serial}".encode()
    return photo[:2] + b"\xff\xfe" + (len(payload) + 2).to_bytes(2, "big") + payload + photo[2:]


def retry_after_s(value: str | None, default_s: float = 1.0) -> float:
    """``Retry-After`` in seconds (the delta form the gateway sends), bounded to 0..600 s."""
    try:
        return min(600.0, max(0.0, float(value))) if value is not None else default_s
    except ValueError:
        return default_s


class NotLoopbackError(ValueError):
    """The target URL does not resolve to a loopback address only."""


def require_loopback(url: str) -> None:
    """Refuse any URL whose host resolves to a non-loopback address (this tool never loads others)."""
    host = urlsplit(url).hostname
    if not host:
        raise NotLoopbackError(f"no host in {url!r}")
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except socket.gaierror as error:
        raise NotLoopbackError(f"cannot resolve {host!r}: {error}") from error
    bad = sorted(a for a in addresses if not ipaddress.ip_address(a.split("%")[0]).is_loopback)
    if bad:
        raise NotLoopbackError(f"{url} resolves to non-loopback {bad}; load runs are loopback only")


@dataclass
class LoadResult:
    """Latencies of completed requests (any final status), final counts by status, and the 429s
    (admission said "come back later"), which are not errors: they are retried after the
    server's ``Retry-After`` and counted on their own."""

    latencies_s: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    wall_s: float = 0.0
    stopped_by: str = "requests"
    #: 429 answers received, retried or not
    throttled: int = 0
    #: seconds spent waiting as Retry-After asked
    retry_wait_s: float = 0.0
    #: final statuses per gateway URL (several gateways: is the load really shared?)
    by_gateway: dict[str, Counter[str]] = field(default_factory=dict)

    @property
    def ok(self) -> int:
        return self.statuses.get("200", 0)

    @property
    def rejected(self) -> int:
        """Requests still refused with 429 after every retry."""
        return self.statuses.get("429", 0)

    @property
    def errors(self) -> int:
        """Final outcomes that are neither a success nor a 429."""
        return sum(self.statuses.values()) - self.ok - self.rejected

    def percentile_ms(self, q: float) -> float:
        """Latency percentile over successful and failed requests alike."""
        return float(np.percentile(self.latencies_s, q)) * 1e3 if self.latencies_s else float("nan")

    @property
    def throughput(self) -> float:
        """Successful requests per second of wall time."""
        return self.ok / self.wall_s if self.wall_s else 0.0


async def run_load(
    url: str | list[str],
    photos: list[bytes],
    *,
    requests: int,
    concurrency: int,
    duration_s: float,
    fmt: str = "ply",
    api_key: str | None = None,
    timeout_s: float = 600.0,
    warmup: int = 0,
    allow_cache: bool = False,
    max_retries: int = 5,
) -> LoadResult:
    """Send up to ``requests`` predictions with ``concurrency`` workers, stopping at ``duration_s``.

    ``warmup`` requests go first, one at a time, and are not counted (first-run model set-up).
    Every image is made unique (see :func:`unique_jpeg`) unless ``allow_cache``. A 429 is retried
    up to ``max_retries`` times after the ``Retry-After`` it carries, as a polite client would;
    the latency of such a request includes the wait. With several ``url``s request ``n`` goes to
    ``url[n % len(url)]`` (retries to the same gateway).
    """
    urls = [each.rstrip("/") for each in ([url] if isinstance(url, str) else url)]

    def image(serial: int) -> bytes:
        photo = photos[serial % len(photos)]
        return photo if allow_cache else unique_jpeg(photo, serial)

    for each in urls:
        require_loopback(each)
    result = LoadResult(by_gateway={each: Counter() for each in urls})
    issued = 0
    deadline = time.perf_counter() + duration_s
    headers = {"X-API-Key": api_key} if api_key else {}

    async def worker(clients: list[httpx.AsyncClient]) -> None:
        nonlocal issued
        while issued < requests:
            if time.perf_counter() >= deadline:
                result.stopped_by = "duration"
                return
            files = {"file": ("photo.jpg", image(warmup + issued), "image/jpeg")}
            client = clients[issued % len(clients)]
            issued += 1
            start = time.perf_counter()
            for attempt in range(max_retries + 1):
                try:
                    response = await client.post(
                        "/v1/predict", files=files, data={"format": fmt}, headers=headers
                    )
                    await response.aread()
                    status = str(response.status_code)
                except httpx.HTTPError as error:
                    status = type(error).__name__
                    break
                if status != "429":
                    break
                result.throttled += 1
                if attempt < max_retries:
                    wait_s = retry_after_s(response.headers.get("retry-after"))
                    result.retry_wait_s += wait_s
                    await asyncio.sleep(wait_s)
            result.latencies_s.append(time.perf_counter() - start)
            result.statuses[status] += 1
            result.by_gateway[str(client.base_url).rstrip("/")][status] += 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(base_url=each, timeout=timeout_s, limits=limits, trust_env=False)
            )
            for each in urls
        ]
        for i in range(warmup):
            files = {"file": ("photo.jpg", image(i), "image/jpeg")}
            client = clients[i % len(clients)]
            await client.post("/v1/predict", files=files, data={"format": fmt}, headers=headers)
        deadline = time.perf_counter() + duration_s
        start = time.perf_counter()
        await asyncio.gather(*(worker(clients) for _ in range(concurrency)))
        result.wall_s = time.perf_counter() - start
    return result
