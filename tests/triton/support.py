"""Helpers for the real-tritonserver tests: requests to the ``mlsharp`` ensemble, the eager
reference pipeline, and an ONNX Runtime stand-in for the network."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

#: raised gRPC limits: a full-size PLY is ~66 MB, over gRPC's 4 MB default
GRPC_CHANNEL_ARGS = [("grpc.max_receive_message_length", 1 << 30), ("grpc.max_send_message_length", 1 << 30)]


def require_triton() -> None:
    """Skip (with the reason) where the tritonserver wheel is not installed."""
    from mlsharp.triton import paths

    try:
        paths.find_triton()
    except paths.TritonNotInstalledError as error:
        pytest.skip(f"tritonserver is not installed (pip nvidia-pytriton): {error}")


def grpc_client(url: str) -> Any:
    import tritonclient.grpc as grpcclient

    return grpcclient.InferenceServerClient(url, channel_args=GRPC_CHANNEL_ARGS)


def ensemble_inputs(
    module: Any, images: Sequence[bytes], fmt: str, focal_px: float = 0.0, focal_mm: float = 0.0
) -> list[Any]:
    """The four contract inputs for a batch of ``len(images)`` (``module``: tritonclient.grpc/http)."""
    batch = len(images)
    arrays = {
        "image_bytes": ("BYTES", np.array([[b] for b in images], dtype=np.object_)),
        "focal_px": ("FP32", np.full((batch, 1), focal_px, np.float32)),
        "focal_mm": ("FP32", np.full((batch, 1), focal_mm, np.float32)),
        "format": ("BYTES", np.array([[fmt.encode()]] * batch, dtype=np.object_)),
    }
    inputs = []
    for name, (dtype, array) in arrays.items():
        tensor = module.InferInput(name, list(array.shape), dtype)
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs


def infer_grpc(
    client: Any, images: Sequence[bytes], fmt: str = "ply", **focal: float
) -> tuple[list[bytes], list[bytes]]:
    """Call ``mlsharp``; returns per-item scene bytes and metadata bytes."""
    import tritonclient.grpc as grpcclient

    result = client.infer("mlsharp", ensemble_inputs(grpcclient, images, fmt, **focal), client_timeout=600)
    scenes = [bytes(x) for x in result.as_numpy("scene").reshape(-1)]
    metadata = [bytes(x) for x in result.as_numpy("metadata").reshape(-1)]
    return scenes, metadata


class OrtNetwork(torch.nn.Module):
    """The exported ONNX graph behind the network's call signature (what the CPU ``sharp`` runs)."""

    def __init__(self, onnx_path: Path) -> None:
        super().__init__()
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])

    def forward(self, image: torch.Tensor, disparity_factor: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feed = {"image": image.numpy(), "disparity_factor": disparity_factor.numpy()}
        return tuple(torch.from_numpy(o) for o in self.session.run(None, feed))


def pipeline(preset: str, seed: int, network: torch.nn.Module | None = None) -> Any:
    """The eager ScenePipeline with the export's random weights (or another network in its place)."""
    from mlsharp.checkpoint import load_predictor
    from mlsharp.pipeline import ScenePipeline

    loaded = load_predictor(preset, random_weights=True, seed=seed)
    if network is not None:
        loaded.model = network
    return ScenePipeline(loaded)


def read_ply(data: bytes) -> Any:
    from plyfile import PlyData

    return PlyData.read(io.BytesIO(data))


def covariances(ply_vertex: Any) -> np.ndarray:
    """(N, 3, 3) float64 covariances from a PLY's log-scales and w-x-y-z quaternions.

    Why covariances: near-degenerate scales make the eigen-decomposition (order, signs) jump under
    float32 noise while the covariance it encodes does not move.
    """
    v = ply_vertex
    scales = np.exp(np.stack([v[f"scale_{i}"] for i in range(3)], axis=1).astype(np.float64))
    q = np.stack([v[f"rot_{i}"] for i in range(4)], axis=1).astype(np.float64)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    rot = np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], axis=1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], axis=1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], axis=1),
        ],
        axis=1,
    )
    return rot @ (scales[:, :, None] ** 2 * np.swapaxes(rot, 1, 2))
