"""A small thread pool for CPU work split into chunks whose ops run single-threaded.

Why: on a shared, loaded 2-core machine every torch op that ATen parallelises costs a thread
barrier, and a barrier waits for a descheduled partner thread for up to a scheduler time slice.
Measured at load average ~11: one 512 x 512 frame took 30 s with ATen's two intra-op threads and
3.6 s single-threaded. Chunks whose tensors stay below ATen's intra-op grain (32,768 elements)
run each op inline on the calling thread, so two pool threads share the cores without barriers
(the pool of :mod:`mlsharp.chunks`, shared with :mod:`mlsharp.gaussians`); torch releases the GIL
inside each op.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from mlsharp.chunks import cpu_pool, run_chunks

__all__ = ["ATEN_GRAIN", "exclusive_cpu", "run_chunks"]
#: ATen runs an elementwise op inline (no parallel region) below this many elements
ATEN_GRAIN = 32768


@contextmanager
def exclusive_cpu() -> Iterator[None]:
    """For a process that only renders (the CLI, benchmarks): ATen ops run single-threaded while
    inside, and the render pool does the parallel work, so chunks may exceed the grain.

    Why not always: ``torch.set_num_threads`` is process-wide, so a server that renders beside
    other torch work must not call this; there the renderer keeps its chunks below the grain.
    """
    cpu_pool()  # sized from the intra-op thread count before it drops to 1
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
