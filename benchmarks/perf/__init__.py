"""perf_analyzer benchmark of the Triton models (``python -m benchmarks.perf``); see benchmarks/README.md."""
