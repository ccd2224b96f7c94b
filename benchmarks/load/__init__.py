"""Gateway load run (``python -m benchmarks.load``); see benchmarks/README.md."""
