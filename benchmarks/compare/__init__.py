"""Triton vs eager PyTorch on the same image and weights (``python -m benchmarks.compare``)."""
