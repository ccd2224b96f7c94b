"""antimatter15 ``.splat`` writer and reader (32 bytes per gaussian, no header).

Why: the oldest web-viewer format (gsplat.js, antimatter15, SuperSplat read it). Row layout,
little-endian: float32 x y z, float32 sx sy sz (= exp(log scale), i.e. standard deviations),
uint8 r g b a with rgb = sRGB * 255 and a = alpha * 255 (rounded, clamped), uint8 quaternion
w x y z as q * 128 + 128 (normalised, rounded, clamped). Rows are sorted by
-(sx * sy * sz * alpha), largest first, the convention progressive loaders expect. No
metadata, so the caller carries camera and random-weight marks elsewhere.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import torch

from mlsharp.formats import attributes
from mlsharp.formats.colorspace import linear_to_srgb
from mlsharp.gaussians import Gaussians3D

SPLAT_DTYPE = np.dtype(
    [("position", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4), ("rotation", "u1", 4)]
)


@dataclass
class SplatScene:
    """Decoded .splat rows as float32 arrays (in file order)."""

    means: np.ndarray  # (N, 3)
    scales: np.ndarray  # (N, 3) standard deviations
    colors_srgb: np.ndarray  # (N, 3) in [0, 1]
    opacities: np.ndarray  # (N,) alpha
    quaternions: np.ndarray  # (N, 4) w x y z, renormalised


def _exp_f32(values: torch.Tensor) -> torch.Tensor:
    """exp in float64 rounded once to float32: the same float32 on the CPU and a GPU."""
    return values.double().exp_().float()


def splat_rows(gaussians: Gaussians3D) -> np.ndarray:
    """(N,) structured array in file order (sorted by volume * alpha, descending)."""
    n = gaussians.num_gaussians
    means = gaussians.means.detach().cpu().float().numpy()
    # exp(log(s)) with the PLY's clamp, so .splat and PLY agree on degenerate scales; in float64,
    # rounded once to float32: numpy's float32 exp is a SIMD approximation that changes with the
    # CPU's instruction set (AVX-512 vs AVX2 vs libm), so its last bit was machine-dependent and no
    # GPU could reproduce it. The float64 route agrees on every device (only a value within a
    # float64 ulp of a float32 rounding boundary could differ).
    scales = _exp_f32(attributes.log_scales(gaussians.scales.detach().cpu())).numpy()
    alphas = gaussians.opacities.detach().cpu().float().numpy().clip(0.0, 1.0)
    srgb = linear_to_srgb(gaussians.colors_linear.detach().cpu().float()).numpy()
    quats = gaussians.quaternions.detach().cpu().float().numpy()
    quats = quats / np.linalg.norm(quats, axis=1, keepdims=True)
    order = np.argsort(-(scales.astype(np.float64).prod(axis=1) * alphas), kind="stable")
    rows = np.empty(n, dtype=SPLAT_DTYPE)
    rows["position"] = means[order]
    rows["scale"] = scales[order]
    rgba = np.concatenate([srgb, alphas[:, None]], axis=1)[order]
    rows["rgba"] = np.clip(np.rint(rgba * np.float32(255)), 0, 255).astype(np.uint8)
    rows["rotation"] = np.clip(np.rint(quats[order] * np.float32(128) + np.float32(128)), 0, 255).astype(
        np.uint8
    )
    return rows


def splat_row_bytes(gaussians: Gaussians3D) -> torch.Tensor:
    """(N, 32) uint8 file rows built on the gaussians' own device (a GPU: one copy back).

    The math of :func:`splat_rows` op for op: float32 columns viewed as little-endian bytes beside
    the uint8 columns, rows ordered by the same float64 keys with a stable sort.
    """
    means = gaussians.means.detach().float()  # (N, 3)
    scales = _exp_f32(attributes.log_scales(gaussians.scales.detach()))  # (N, 3)
    alphas = gaussians.opacities.detach().float().clamp(0.0, 1.0)  # (N,)
    srgb = linear_to_srgb(gaussians.colors_linear.detach().float())  # (N, 3)
    quats = attributes.unit_rows(gaussians.quaternions.detach().float())  # (N, 4)
    s64 = scales.double()
    weight = ((s64[:, 0] * s64[:, 1]) * s64[:, 2]) * alphas.double()  # (N,) float64, numpy's order
    # ascending on the negated keys, stable: numpy's argsort(-(...), kind="stable") exactly
    order = torch.sort(-weight, stable=True).indices
    rgba = attributes.to_u8(torch.cat([srgb, alphas[:, None]], dim=1) * attributes.f32(255))  # (N, 4)
    rotation = attributes.to_u8(quats * attributes.f32(128) + attributes.f32(128))  # (N, 4)
    if sys.byteorder != "little":
        raise RuntimeError(".splat rows are little-endian; this host is not")
    rows = torch.cat(
        [means.contiguous().view(torch.uint8), scales.contiguous().view(torch.uint8), rgba, rotation], dim=1
    )  # (N, 32) uint8
    return rows[order]


def encode_splat(gaussians: Gaussians3D) -> bytes:
    """The .splat file as bytes."""
    return splat_rows(gaussians).tobytes()


def write_splat(fileobj: BinaryIO, gaussians: Gaussians3D) -> None:
    """Stream the .splat file to a binary file object."""
    fileobj.write(splat_rows(gaussians).data.cast("B"))


def decode_splat(data: bytes) -> SplatScene:
    """Parse .splat bytes (length must be a multiple of 32)."""
    if len(data) % SPLAT_DTYPE.itemsize:
        raise ValueError(f".splat size {len(data)} is not a multiple of {SPLAT_DTYPE.itemsize}")
    rows = np.frombuffer(data, dtype=SPLAT_DTYPE)
    q = (rows["rotation"].astype(np.float32) - np.float32(128)) / np.float32(128)
    rgba = rows["rgba"].astype(np.float32) / np.float32(255)
    return SplatScene(
        means=rows["position"].astype(np.float32),
        scales=rows["scale"].astype(np.float32),
        colors_srgb=rgba[:, :3],
        opacities=rgba[:, 3],
        quaternions=q / np.linalg.norm(q, axis=1, keepdims=True),
    )
