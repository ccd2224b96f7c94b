"""GPU facts from Triton's Prometheus endpoints, summed over every Triton the gateway uses.

With one Triton (compose, a single host) ``triton_metrics_url`` names its endpoint. With several
(a headless Service), ``triton_metrics_port`` derives one URL per endpoint (same host as its gRPC
address), so /v1/health counts the GPUs of the whole fleet; an endpoint that does not answer
counts as none.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from typing import Any

import httpx

from gateway.backends.base import no_gpu
from gateway.backends.endpoints import join_address

_GPU_MEMORY = re.compile(r'^nv_gpu_memory_total_bytes\{[^}]*gpu_uuid="([^"]+)"[^}]*\}\s+(\S+)', re.M)


def metrics_urls(hosts: Sequence[str], metrics_port: int | None, single_url: str | None) -> list[str]:
    """Per-endpoint URLs when a metrics port is set, else the one configured URL (or none)."""
    if metrics_port is None:
        return [single_url] if single_url else []
    return [f"http://{join_address(host, metrics_port)}/metrics" for host in dict.fromkeys(hosts)]


def gpu_memory_bytes(text: str) -> dict[str, float]:
    """GPU uuid -> total memory in bytes from one Triton's metrics text."""
    return {match.group(1): float(match.group(2)) for match in _GPU_MEMORY.finditer(text)}


async def device_info(urls: Sequence[str], timeout_s: float) -> dict[str, Any]:
    """GPUs as Triton's metrics endpoints report them (count and memory; no names there)."""
    if not urls:
        return no_gpu()
    async with httpx.AsyncClient(timeout=timeout_s) as client:
        replies = await asyncio.gather(*(client.get(url) for url in urls), return_exceptions=True)
    memory: dict[str, float] = {}
    for reply in replies:
        if isinstance(reply, httpx.Response):
            memory.update(gpu_memory_bytes(reply.text))
    if not memory:
        return no_gpu()
    return {
        "available": True,
        "vendor": "NVIDIA",
        "name": None,
        "count": len(memory),
        "memory_mb": int(sum(memory.values()) // 2**20),
    }
