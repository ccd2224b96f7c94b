"""Random raw SHARP outputs and an independent float64 numpy reference of the unprojection."""

from __future__ import annotations

import numpy as np
import torch


def raw_gaussians(n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Plausible raw network outputs of one item: NDC-like means (z in [1, 100]), scales 1e-3..1e-1."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.empty(n).uniform_(1.0, 100.0, generator=gen)
    xy = torch.empty(n, 2).uniform_(-1.0, 1.0, generator=gen) * z[:, None]
    return {
        "means": torch.cat([xy, z[:, None]], dim=1),
        "singular_values": torch.exp(torch.empty(n, 3).uniform_(np.log(1e-3), np.log(1e-1), generator=gen)),
        "quaternions": torch.randn(n, 4, generator=gen) * torch.empty(n, 1).uniform_(0.2, 3.0, generator=gen),
        "colors": torch.rand(n, 3, generator=gen),
        "opacities": torch.rand(n, generator=gen),
    }


def rotation_np(q: np.ndarray) -> np.ndarray:
    """(N, 4) w x y z (any norm) -> (N, 3, 3) rotation matrices, float64."""
    q = q.astype(np.float64)
    w, x, y, z = (q / np.linalg.norm(q, axis=1, keepdims=True)).T
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], axis=-1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], axis=-1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], axis=-1),
        ],
        axis=1,
    )


def covariances_np(
    quaternions: np.ndarray, scales: np.ndarray, linear: np.ndarray | None = None
) -> np.ndarray:
    """(N, 3, 3) float64 A R diag(s^2) R^T A^T."""
    rot = rotation_np(quaternions)
    cov = rot @ (scales.astype(np.float64)[:, :, None] ** 2 * np.eye(3)) @ rot.transpose(0, 2, 1)
    if linear is not None:
        cov = linear @ cov @ linear.T
    return cov


def ideal_linear(focal_px: float, width_px: int, height_px: int) -> np.ndarray:
    """The exact-arithmetic unprojection matrix diag(W / 2f, H / 2f, 1)."""
    return np.diag([width_px / (2 * focal_px), height_px / (2 * focal_px), 1.0])
