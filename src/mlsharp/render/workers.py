"""A small thread pool for CPU work split into chunks whose ops run single-threaded.

Why: on a shared, loaded 2-core machine every torch op that ATen parallelises costs a thread
barrier, and a barrier waits for a descheduled partner thread for up to a scheduler time slice.
Measured at load average ~11: one 512 x 512 frame took 30 s with ATen's two intra-op threads and
3.6 s single-threaded. Chunks whose tensors stay below ATen's intra-op grain (32,768 elements)
run each op inline on the calling thread, so two pool threads share the cores without barriers
(the same scheme as :mod:`mlsharp.gaussians`); torch releases the GIL inside each op.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

import torch

T = TypeVar("T")
#: ATen runs an elementwise op inline (no parallel region) below this many elements
ATEN_GRAIN = 32768

_POOL: ThreadPoolExecutor | None = None
_POOL_PID = 0
_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    """One worker per intra-op thread; re-created in a forked child (its copy has no threads)."""
    global _POOL, _POOL_PID
    with _LOCK:
        if _POOL is None or os.getpid() != _POOL_PID:
            workers = max(1, min(torch.get_num_threads(), os.cpu_count() or 1))
            _POOL = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mlsharp-render")
            _POOL_PID = os.getpid()
        return _POOL


def run_chunks(total: int, chunk: int, work: Callable[[int, int], T]) -> list[T]:
    """``work(start, stop)`` for consecutive chunks of range(total), on the pool; results in order.

    A single chunk runs on the calling thread. Workers enter inference mode themselves (it is
    thread-local, and the cheapest mode per op).
    """

    def run(start: int, stop: int) -> T:
        with torch.inference_mode():
            return work(start, stop)

    if total <= chunk:
        return [run(0, total)]
    futures = [_pool().submit(run, i, min(i + chunk, total)) for i in range(0, total, chunk)]
    return [f.result() for f in futures]


@contextmanager
def exclusive_cpu() -> Iterator[None]:
    """For a process that only renders (the CLI, benchmarks): ATen ops run single-threaded while
    inside, and the render pool does the parallel work, so chunks may exceed the grain.

    Why not always: ``torch.set_num_threads`` is process-wide, so a server that renders beside
    other torch work must not call this; there the renderer keeps its chunks below the grain.
    """
    _pool()  # sized from the intra-op thread count before it drops to 1
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
