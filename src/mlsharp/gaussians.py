"""Gaussian scenes and the unprojection from SHARP's NDC-like space to metric camera space.

Why its own module: the network's raw outputs live in a scaled-NDC frame of the square working
grid; every output format needs metric, OpenCV-frame gaussians (x right, y down, z forward).
The reference does this with a float64 ``torch.linalg.svd`` per gaussian (11 s for 1.2 M on a
2-core CPU). Here the covariance is rebuilt and re-decomposed with the closed-form solver of
:mod:`mlsharp.linalg3` in float64, in cache-sized chunks on a small thread pool (CPU) or in one
pass (GPU): the same gaussians to float32 precision (even the thin axis of a 1e4:1 gaussian) in
about 0.2 s for 1.2 M on two CPU cores, or ~2.5 ms on an H200.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from mlsharp import linalg3
from mlsharp.chunks import run_chunks

#: gaussians per CPU work item. Just below ATen's intra-op grain (32768), so each op runs on its
#: pool thread alone; large enough that the Python/dispatch part of each op (which holds the GIL)
#: is small next to its kernel, so two pool threads scale. The CPU time per gaussian is flat from
#: 8K to 32K here (the working set of a chunk, ~8 MB, stays in L3); smaller chunks scaled worse.
CPU_CHUNK = 32000


@dataclass(frozen=True)
class CameraInfo:
    """Pinhole camera of the *original* photo (principal point at W/2, H/2, as the reference)."""

    focal_px: float
    width_px: int
    height_px: int


@dataclass
class Gaussians3D:
    """One metric 3DGS scene in the OpenCV camera frame (all float32 torch tensors, one device)."""

    means: Tensor  # (N, 3) metres
    scales: Tensor  # (N, 3) standard deviations, descending per gaussian
    quaternions: Tensor  # (N, 4) unit, w x y z
    colors_linear: Tensor  # (N, 3) linear RGB
    opacities: Tensor  # (N,) alpha in [0, 1]

    @property
    def num_gaussians(self) -> int:
        """Number of gaussians N."""
        return int(self.means.shape[0])


def unprojection_matrix(camera: CameraInfo, working_size_px: int) -> Tensor:
    """The reference's ``inverse(Nd @ K' @ E)`` (4, 4) float32, replicated op by op on the CPU.

    Why op by op: the float32 rounding of K' and of ``torch.linalg.inv`` leaves ~1e-8 off-diagonal
    terms (z-proportional shears) for non-square photos; reproducing the same ops gives the
    reference's exact matrix instead of the ideal diag(W/2f, H/2f, 1, 1).
    """
    f, w, h = float(camera.focal_px), int(camera.width_px), int(camera.height_px)
    size = int(working_size_px)
    intrinsics = torch.tensor(
        [[f, 0, w / 2, 0], [0, f, h / 2, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=torch.float32
    )
    intrinsics[0] *= size / w
    intrinsics[1] *= size / h
    ndc = torch.tensor(
        [
            [2.0 / size, 0.0, -1.0, 0.0],
            [0.0, 2.0 / size, -1.0, 0.0],
            [0.0, 0.0, 1.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ],
        dtype=torch.float32,
    )
    extrinsics = torch.eye(4, dtype=torch.float32)
    inverse: Tensor = torch.linalg.inv(ndc @ intrinsics @ extrinsics)
    return inverse


def _check_camera(camera: CameraInfo, working_size_px: int) -> None:
    if not (camera.focal_px > 0 and camera.width_px > 0 and camera.height_px > 0 and working_size_px > 0):
        raise ValueError(f"camera and working size must be positive, got {camera} and {working_size_px}")


def _covariance_entries(quaternions: Tensor, scales: Tensor, linear: list[list[float]]) -> linalg3.Sym3:
    """Sigma' = A R(q/|q|) diag(s^2) R^T A^T as float64 (xx, yy, zz, xy, xz, yz), each (n,).

    Sigma' = G G^T with G = A R diag(s). The quaternion products give |q|^2 R, so dividing the
    column scales by |q|^2 is the reference's q/|q| normalisation. A separate function so that its
    ~40 temporaries are freed before the eigen-solve (a smaller, cache-resident working set).
    """
    q = torch.empty((4, quaternions.shape[0]), dtype=torch.float64, device=quaternions.device)
    q.copy_(quaternions.T)  # (4, n): contiguous component rows
    sc = torch.empty((3, scales.shape[0]), dtype=torch.float64, device=scales.device)
    sc.copy_(scales.T)  # (3, n)
    w, x, y, z = q.unbind(0)
    ww, xx, yy, zz = w * w, x * x, y * y, z * z
    w2, x2, y2 = w + w, x + x, y + y
    wx, wy, wz, xy, xz, yz = w2 * x, w2 * y, w2 * z, x2 * y, x2 * z, y2 * z
    # A zero quaternion (never predicted in practice) gives a zero covariance instead of NaN.
    inv = torch.reciprocal(((ww + xx) + (yy + zz)).clamp_(min=1e-300))
    f = (sc[0] * inv, sc[1] * inv, sc[2] * inv)  # column scales s_k / |q|^2
    a, b, c, d = ww - yy, xx - zz, ww - xx, yy - zz
    rot = (  # |q|^2 R, rows
        (a + b, xy - wz, xz + wy),
        (xy + wz, c + d, yz - wx),
        (xz - wy, yz + wx, c - d),
    )
    h = [[rot[i][k] * f[k] for k in range(3)] for i in range(3)]  # R diag(s), rows
    # Apply A row-wise. For the reference's matrix only the diagonal and the z column are non-zero;
    # A's diagonal is applied to Sigma' below (a_ii a_jj), the z-column shear here.
    g = []
    for i in range(3):
        row = h[i]
        for j in range(3):
            if j != i and linear[i][j] != 0.0:
                if linear[i][i] == 0.0:
                    raise ValueError("unprojection matrix must have a non-zero diagonal")
                row = [torch.add(row[k], h[j][k], alpha=linear[i][j] / linear[i][i]) for k in range(3)]
        g.append(row)
    cov = []
    for i, j in ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2)):
        entry = torch.addcmul(torch.addcmul(g[i][0] * g[j][0], g[i][1], g[j][1]), g[i][2], g[j][2])
        factor = linear[i][i] * linear[j][j]
        cov.append(entry if factor == 1.0 else entry.mul_(factor))
    return tuple(cov)  # type: ignore[return-value]


def _covariance_chunk(
    quaternions: Tensor,
    scales: Tensor,
    linear: list[list[float]],
    out_quaternions: Tensor,
    out_scales: Tensor,
) -> None:
    """Re-decompose one chunk: (n, 4), (n, 3) inputs -> written into (n, 4), (n, 3) outputs."""
    lam, quat = linalg3.eigh3_quaternion(*_covariance_entries(quaternions, scales, linear))
    for k in range(4):
        out_quaternions[:, k] = quat[k]
    for k in range(3):
        out_scales[:, k] = lam[k]
    out_scales.clamp_(min=0.0).sqrt_()  # eigenvalues -> standard deviations


_MALLOC_TUNED = False


def _tune_glibc_malloc() -> None:
    """Pin glibc malloc at the steady state its own dynamic heuristics reach for large buffers.

    Why: each CPU chunk allocates and frees ~10 MB of 256 KB temporaries. With glibc's defaults
    the freed top of the heap is returned to the OS (trim threshold 128 KB) and faulted back in by
    the next chunk, which more than doubled the unprojection time. glibc raises these thresholds by
    itself once large blocks are freed (up to 32 MB / 64 MB); we set those values up front. The
    only effect elsewhere is that up to 64 MB of freed heap per arena is kept for reuse.
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED or not sys.platform.startswith("linux"):
        return
    _MALLOC_TUNED = True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, 32 * 1024 * 1024)
    mallopt(m_trim_threshold, 64 * 1024 * 1024)


def transform_covariances(quaternions: Tensor, scales: Tensor, linear: Tensor) -> tuple[Tensor, Tensor]:
    """Re-decompose A Sigma(q, s) A^T into (unit quaternion wxyz (N, 4), descending scales (N, 3)).

    Inputs (N, 4) unnormalised quaternions and (N, 3) scales; A (3, 3). Outputs keep the input
    dtype and device. On CPU the work is split into cache-sized chunks run on a thread pool
    (torch ops release the GIL); on other devices it is one vectorised pass.
    """
    n = quaternions.shape[0]
    a_rows = linear.detach().to("cpu", torch.float64).tolist()
    out_q = torch.empty((n, 4), dtype=quaternions.dtype, device=quaternions.device)
    out_s = torch.empty((n, 3), dtype=scales.dtype, device=scales.device)
    if n == 0:
        return out_q, out_s

    def work(start: int, stop: int) -> None:
        # run_chunks enters inference mode (thread-local) in each worker: only the temporaries
        # are inference tensors, the outputs keep the caller's mode (in-place writes are allowed).
        _covariance_chunk(
            quaternions[start:stop], scales[start:stop], a_rows, out_q[start:stop], out_s[start:stop]
        )

    if quaternions.device.type != "cpu":
        run_chunks(n, n, work)  # one vectorised pass
    else:
        if n > CPU_CHUNK:
            _tune_glibc_malloc()
        run_chunks(n, CPU_CHUNK, work)
    return out_q, out_s


def unproject(
    means: Tensor,
    singular_values: Tensor,
    quaternions: Tensor,
    colors: Tensor,
    opacities: Tensor,
    camera: CameraInfo,
    working_size_px: int,
) -> Gaussians3D:
    """Raw network outputs of ONE batch item (N, ...) -> metric gaussians in the OpenCV frame.

    means' = A mu + t with (A | t) the top of :func:`unprojection_matrix` (float32, the reference's
    op); covariances Sigma' = A R(q/|q|) diag(s^2) R^T A^T re-decomposed into descending scales and a
    det +1 rotation. Colours and opacities pass through unchanged.
    """
    n = means.shape[0]
    for name, t, shape in (
        ("means", means, (n, 3)),
        ("singular_values", singular_values, (n, 3)),
        ("quaternions", quaternions, (n, 4)),
        ("colors", colors, (n, 3)),
        ("opacities", opacities, (n,)),
    ):
        if tuple(t.shape) != shape:
            raise ValueError(f"{name} must have shape {shape}, got {tuple(t.shape)}")
    _check_camera(camera, working_size_px)
    matrix = unprojection_matrix(camera, working_size_px).to(means.device)
    linear, offset = matrix[:3, :3], matrix[:3, 3]  # (3, 3), (3,)
    with torch.no_grad():
        metric_means = means.float() @ linear.T + offset  # (N, 3)
        quats, scales = transform_covariances(quaternions.float(), singular_values.float(), linear)
    return Gaussians3D(
        means=metric_means,
        scales=scales,
        quaternions=quats,
        colors_linear=colors.float(),
        opacities=opacities.float(),
    )


def unproject_batch(
    means: Tensor,
    singular_values: Tensor,
    quaternions: Tensor,
    colors: Tensor,
    opacities: Tensor,
    cameras: Sequence[CameraInfo],
    working_size_px: int,
) -> list[Gaussians3D]:
    """Batched :func:`unproject`: (B, N, ...) tensors and B cameras -> B scenes (one per item)."""
    batch = means.shape[0]
    if len(cameras) != batch:
        raise ValueError(f"got {len(cameras)} cameras for a batch of {batch}")
    return [
        unproject(
            means[b], singular_values[b], quaternions[b], colors[b], opacities[b], cameras[b], working_size_px
        )
        for b in range(batch)
    ]
