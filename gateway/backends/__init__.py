"""Inference backends behind one protocol: in-process (local) or Triton over gRPC."""

from __future__ import annotations

from gateway.backends.base import Admission, InferenceBackend, InferenceResult
from gateway.settings import Settings

__all__ = ["Admission", "InferenceBackend", "InferenceResult", "build_backend"]


def build_backend(settings: Settings) -> InferenceBackend:
    if settings.backend == "triton":
        from gateway.backends.triton import TritonBackend

        return TritonBackend(settings)
    from gateway.backends.local import LocalBackend

    return LocalBackend(settings)
