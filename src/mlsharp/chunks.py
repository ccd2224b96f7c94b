"""CPU work split into chunks on one process-wide thread pool (torch ops release the GIL).

Why one pool: the gaussian re-decomposition (:mod:`mlsharp.gaussians`) and the renderer
(:mod:`mlsharp.render`) both cut their work into chunks whose ops stay small enough to run
single-threaded; sharing one pool sized to the intra-op thread count keeps a process that does
both at one thread per core instead of two pools competing for the same cores.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

T = TypeVar("T")

_POOL: ThreadPoolExecutor | None = None
_POOL_PID = 0
_LOCK = threading.Lock()


def cpu_pool() -> ThreadPoolExecutor:
    """One worker per intra-op thread; re-created in a forked child (its copy has no threads and
    would never run a task)."""
    global _POOL, _POOL_PID
    with _LOCK:
        if _POOL is None or os.getpid() != _POOL_PID:
            workers = max(1, min(torch.get_num_threads(), os.cpu_count() or 1))
            _POOL = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mlsharp-cpu")
            _POOL_PID = os.getpid()
        return _POOL


def run_chunks(total: int, chunk: int, work: Callable[[int, int], T]) -> list[T]:
    """``work(start, stop)`` for consecutive chunks of range(total), on the pool; results in order.

    A single chunk runs on the calling thread. Workers enter inference mode themselves (it is
    thread-local, and the cheapest mode per op). Never call it from inside ``work``: a chunk
    waiting on chunks of the same bounded pool could wait forever.
    """

    def run(start: int, stop: int) -> T:
        with torch.inference_mode():
            return work(start, stop)

    if total <= chunk:
        return [run(0, total)]
    futures = [cpu_pool().submit(run, i, min(i + chunk, total)) for i in range(0, total, chunk)]
    return [f.result() for f in futures]
