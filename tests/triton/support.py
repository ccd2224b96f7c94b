"""Helpers for the real-tritonserver tests: requests to the ``mlsharp`` ensemble, the eager
reference pipeline, and an ONNX Runtime stand-in for the network."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

#: raised gRPC limits: a full-size PLY is ~66 MB, over gRPC's 4 MB default
GRPC_CHANNEL_ARGS = [("grpc.max_receive_message_length", 1 << 30), ("grpc.max_send_message_length", 1 << 30)]


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
        "formats": ("BYTES", np.array([[fmt.encode()]] * batch, dtype=np.object_)),
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
    scenes = [bytes(x) for x in result.as_numpy("scenes").reshape(-1)]
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


class OpenVinoNetwork(torch.nn.Module):
    """An exported graph (ONNX, or the bf16 IR) in the served OpenVINO runner, compiled as the CPU
    ``sharp`` compiles it."""

    def __init__(self, graph_path: Path, precision: str) -> None:
        super().__init__()
        from mlsharp.triton.openvino_runner import OpenVinoRunner

        self.runner = OpenVinoRunner(graph_path, precision, 0)  # type: ignore[arg-type]

    def forward(self, image: torch.Tensor, disparity_factor: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.runner.forward(image.numpy(), disparity_factor.numpy())
        return tuple(torch.from_numpy(o) for o in outputs)


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


def assert_ply_matches_eager(served_ply: bytes, eager_ply: bytes) -> None:
    """A served PLY against eager PyTorch's for the same photo and weights. The only difference is
    ONNX Runtime's float32 order (export check: raw outputs within 1e-3 of their range).
    Unprojection is linear in the means and quadratic in the scales, so: xyz within 1e-3 of
    max|xyz|, covariances within 2e-3 of max|cov|, colours and opacities (bounded in [0, 1]) within
    1e-3; the header, camera elements and comments exactly equal."""
    header_end = b"end_header\n"
    assert served_ply[: served_ply.index(header_end)] == eager_ply[: eager_ply.index(header_end)]
    served, ref = read_ply(served_ply), read_ply(eager_ply)
    got_v, ref_v = served["vertex"].data, ref["vertex"].data
    assert got_v.dtype == ref_v.dtype and len(got_v) == len(ref_v)
    xyz = np.stack([got_v[c] for c in "xyz"], 1).astype(np.float64)
    xyz_ref = np.stack([ref_v[c] for c in "xyz"], 1).astype(np.float64)
    assert np.abs(xyz - xyz_ref).max() <= 1e-3 * np.abs(xyz_ref).max()
    cov, cov_ref = covariances(got_v), covariances(ref_v)
    assert np.abs(cov - cov_ref).max() <= 2e-3 * np.abs(cov_ref).max()
    for name in ("f_dc_0", "f_dc_1", "f_dc_2"):
        assert np.abs(got_v[name].astype(np.float64) - ref_v[name]).max() <= 1e-3
    alpha = 1.0 / (1.0 + np.exp(-got_v["opacity"].astype(np.float64)))
    alpha_ref = 1.0 / (1.0 + np.exp(-ref_v["opacity"].astype(np.float64)))
    assert np.abs(alpha - alpha_ref).max() <= 1e-3
    for element in ("extrinsic", "intrinsic", "image_size", "frame", "color_space", "version"):
        for prop in served[element].data.dtype.names:
            np.testing.assert_array_equal(served[element].data[prop], ref[element].data[prop])
    assert list(served.comments) == list(ref.comments)  # random-weights stamp included
