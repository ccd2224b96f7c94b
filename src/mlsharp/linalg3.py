"""Closed-form, batched eigen-decomposition of symmetric 3x3 matrices, straight to quaternions.

Why: re-decomposing 1.2 M covariance matrices with ``torch.linalg.svd``/``eigh`` costs seconds on a
CPU (one LAPACK call per 3x3 matrix). Here every input and output is a *component tensor* (one
tensor per matrix entry, any shape, all alike), every step is one vectorised elementwise op, and
the op count is kept small (~190) because on a CPU that count, not the arithmetic, sets the time.
Plain torch: the same code runs on CPU and GPU.

Conventions: quaternions are (w, x, y, z) (Hamilton, R(q) v = q v q*); eigenvalues descending; the
eigenvector frame is returned as the unit quaternion of the rotation whose columns are the
eigenvectors (so det = +1 by construction), canonicalised to w >= 0.
"""

from __future__ import annotations

import torch
from torch import Tensor

Quat = tuple[Tensor, Tensor, Tensor, Tensor]
Triple = tuple[Tensor, Tensor, Tensor]
#: a symmetric 3x3 matrix as its (xx, yy, zz, xy, xz, yz) components
Sym3 = tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]

_TINY = 1e-300  # keeps 0/0 finite in float64; far below any p^3 that is not exactly zero
# Added to a vector that may be exactly zero (isotropic input) before normalising, so that it
# becomes e_x there. 1e-150 squared is still a normal float64, and real components (products of
# two eigenvalue gaps, i.e. ~scale^4) are far larger for any gaussian above ~1e-30 m.
_NUDGE = 1e-150


def rotation_from_quaternion(w: Tensor, x: Tensor, y: Tensor, z: Tensor) -> tuple[Triple, Triple, Triple]:
    """Rows of R(q / |q|) for any non-zero quaternion (w, x, y, z): ((r00, r01, r02), ...)."""
    inv = 1 / (w * w + x * x + y * y + z * z)
    ww, xx, yy, zz = w * w * inv, x * x * inv, y * y * inv, z * z * inv
    xy, xz, yz = 2 * x * y * inv, 2 * x * z * inv, 2 * y * z * inv
    wx, wy, wz = 2 * w * x * inv, 2 * w * y * inv, 2 * w * z * inv
    return (
        (ww + xx - yy - zz, xy - wz, xz + wy),
        (xy + wz, ww - xx + yy - zz, yz - wx),
        (xz - wy, yz + wx, ww - xx - yy + zz),
    )


def _isolated_eigenvalue(
    xx: Tensor, yy: Tensor, zz: Tensor, xy: Tensor, xz: Tensor, yz: Tensor
) -> tuple[Tensor, Tensor]:
    """The end eigenvalue farthest from the middle one, and a flag: True if it is the smallest.

    Trigonometric cubic: with mean m and p^2 = |M - m I|_F^2 / 6, det(M - m I) = 2 p^3 cos(3 phi).
    det >= 0 means the largest eigenvalue has the larger gap to the middle one; it is then
    m + 2 p cos(acos(r) / 3) with r = |det| / 2p^3 (mirrored for det < 0). The isolated end
    eigenvalue stays accurate even when the other two coincide (r -> 1), unlike the middle one.
    """
    mean = (xx + yy + zz) * (1.0 / 3.0)
    dx, dy, dz = xx - mean, yy - mean, zz - mean
    off_sq = torch.addcmul(torch.addcmul(xy * xy, xz, xz), yz, yz)
    p_sq = (torch.addcmul(torch.addcmul(dx * dx, dy, dy), dz, dz) + 2 * off_sq) * (1.0 / 6.0)
    p = torch.sqrt(p_sq)
    det = (
        dx * torch.addcmul(dy * dz, yz, yz, value=-1)
        - xy * torch.addcmul(xy * dz, yz, xz, value=-1)
        + xz * torch.addcmul(xy * yz, dy, xz, value=-1)
    )
    ratio = (det.abs() / (2 * p_sq * p + _TINY)).clamp_(max=1.0)
    offset = 2 * p * torch.cos(torch.acos(ratio) * (1.0 / 3.0))
    # signbit, not det < 0: copysign treats -0.0 as negative, so both agree on every input.
    return mean + torch.copysign(offset, det), torch.signbit(det)


def _null_vector(
    xx: Tensor, yy: Tensor, zz: Tensor, xy: Tensor, xz: Tensor, yz: Tensor, lam: Tensor
) -> Triple:
    """Unit eigenvector of a simple eigenvalue lam, with x >= 0 (e_x if M - lam I is exactly 0).

    The adjugate of the rank-2 matrix M - lam I is c v v^T; its column with the largest diagonal
    entry is the best-conditioned multiple of v (equivalent to the longest row cross product).
    """
    sx, sy, sz = xx - lam, yy - lam, zz - lam
    c00 = torch.addcmul(sy * sz, yz, yz, value=-1)
    c11 = torch.addcmul(sx * sz, xz, xz, value=-1)
    c22 = torch.addcmul(sx * sy, xy, xy, value=-1)
    c01 = torch.addcmul(xz * yz, xy, sz, value=-1)
    c02 = torch.addcmul(xy * yz, xz, sy, value=-1)
    c12 = torch.addcmul(xy * xz, sx, yz, value=-1)
    pick1 = c11 > c00
    pick2 = c22 > torch.maximum(c00, c11)
    vx = torch.where(pick2, c02, torch.where(pick1, c01, c00))
    vy = torch.where(pick2, c12, torch.where(pick1, c11, c01))
    vz = torch.where(pick2, c22, torch.where(pick1, c12, c02))
    vx = vx + _NUDGE
    norm_sq = torch.addcmul(torch.addcmul(vx * vx, vy, vy), vz, vz)
    inv = torch.copysign(torch.rsqrt(norm_sq), vx)  # also flips v to x >= 0 (v's sign is free)
    return vx * inv, vy * inv, vz * inv


def eigh3_quaternion(
    xx: Tensor, yy: Tensor, zz: Tensor, xy: Tensor, xz: Tensor, yz: Tensor
) -> tuple[Triple, Quat]:
    """Symmetric 3x3 eigen-decomposition: ((l0 >= l1 >= l2), quaternion of [v0 v1 v2]).

    Why this route (after Eberly, "A Robust Eigensolver for 3x3 Symmetric Matrices"): the isolated
    end eigenpair comes first (accurate even when the other two are equal); the remaining pair is
    the 2x2 problem in the plane orthogonal to it, well-posed even for exactly repeated eigenvalues,
    so isotropic and axis-symmetric matrices need no special path. The plane's basis is the image
    of (e_y, e_z) under the shortest-arc rotation e_x -> v, so the final frame is that rotation
    followed by a rotation about x: the quaternion is a product of two known ones, never extracted
    from a matrix. Errors are ~eps * largest eigenvalue (backward stable): use float64 when small
    eigenvalues matter.
    """
    m = (xx, yy, zz, xy, xz, yz)
    lam_iso, bottom = _isolated_eigenvalue(*m)
    v = _null_vector(*m, lam_iso)
    one_vx = 1 + v[0]
    k = torch.reciprocal(one_vx)
    lam_hi, lam_lo, ct, st = _plane_eigenpair(*_plane_matrix(m, v, k))
    quat = _frame_quaternion(v, one_vx, k, ct, st, bottom)
    # Descending order; the min/max only absorb rounding-level disorder of near-isotropic input.
    top_mid = torch.minimum(lam_hi, lam_iso)
    bottom_mid = torch.maximum(lam_lo, lam_iso)
    lam0 = torch.where(bottom, torch.maximum(lam_hi, bottom_mid), lam_iso)
    lam1 = torch.where(bottom, bottom_mid, top_mid)
    lam2 = torch.where(bottom, lam_iso, torch.minimum(lam_lo, top_mid))
    return (lam0, lam1, lam2), quat


# The helpers below are separate functions so that their temporaries die on return: a small
# working set stays in cache, which matters more on a CPU than the op count itself.


def _plane_matrix(m: Sym3, v: Triple, k: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The 2x2 matrix (a, b, c) = (u.Mu, u.Mw, w.Mw) of M on the plane orthogonal to v.

    Shortest arc e_x -> v (vx >= 0 keeps 1 + vx >= 1): q_a = (1 + vx, 0, -vz, vy) / sqrt(2 (1 + vx))
    maps (e_y, e_z) to (-vy, 1 - k vy^2, -k vy vz), (-vz, -k vy vz, 1 - k vz^2), k = 1 / (1 + vx).
    We use the negated pair u, w (no negations to compute): the 2x2 matrix is the same for both
    pairs, and an eigenvector's coordinates in one pair are those in the other with the (free)
    sign flipped, so the angle found below applies to q_a's pair as it is.
    """
    _, vy, vz = v
    kvy = k * vy
    kyz = kvy * vz
    u = (vy, kvy * vy - 1, kyz)
    w = (vz, kyz, k * vz * vz - 1)
    mw = _sym_matvec(*m, w)
    b, c = _dot(u, mw), _dot(w, mw)
    del mw
    return _dot(u, _sym_matvec(*m, u)), b, c


def _plane_eigenpair(a: Tensor, b: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Eigenvalues (hi, lo) of [[a, b], [b, c]] and the unit eigenvector (cos t, sin t) of hi.

    The eigenvector comes from the better-scaled row of the matrix minus hi; its sign is free, so
    cos t >= 0 (keeps the half angle well-conditioned). An isotropic block gives t = 0.
    """
    half = (a - c) * 0.5
    mid = (a + c) * 0.5
    radius = torch.hypot(half, b)
    pos = half >= 0
    ct = torch.where(pos, radius + half, b.abs()).add_(_NUDGE)
    st = torch.where(pos, b, torch.copysign(radius - half, b))
    inv = torch.rsqrt(torch.addcmul(ct * ct, st, st))
    return mid + radius, mid - radius, ct.mul_(inv), st.mul_(inv)


def _frame_quaternion(v: Triple, one_vx: Tensor, k: Tensor, ct: Tensor, st: Tensor, bottom: Tensor) -> Quat:
    """Quaternion of q_a (x) (cos(t/2), sin(t/2), 0, 0), columns permuted when bottom, w >= 0.

    The frame is (v, e_hi, e_lo) when the largest eigenvalue is isolated; otherwise
    (e_hi, e_lo, v): the same frame times the cyclic permutation x -> y -> z, whose quaternion is
    (1, 1, 1, 1) / 2. Half angles: cos(t/2) = sqrt((1 + cos t) / 2) >= 1/sqrt(2) and
    sin(t/2) = sin t / (2 cos(t/2)), both times q_a's 1 / sqrt(2 (1 + vx)) = sqrt(k / 2).
    """
    _, vy, vz = v
    cos_half = torch.sqrt((1 + ct).mul_(0.25 * k))  # sqrt((1 + cos t) / 2 * k / 2)
    sin_half = (st * (0.25 * k)).div_(cos_half)
    qw = one_vx * cos_half
    qx = one_vx * sin_half
    qy = torch.addcmul(vy * sin_half, vz, cos_half, value=-1)
    qz = torch.addcmul(vy * cos_half, vz, sin_half)
    p, n, r, t = qw + qx, qw - qx, qy + qz, qy - qz
    qw = torch.where(bottom, (n - r).mul_(0.5), qw)
    qx = torch.where(bottom, (p + t).mul_(0.5), qx)
    qy = torch.where(bottom, (n + r).mul_(0.5), qy)
    qz = torch.where(bottom, (p - t).mul_(0.5), qz)
    sign = torch.copysign(torch.ones_like(qw), qw)  # canonical w >= 0 (q, -q: same rotation)
    return qw.mul_(sign), qx.mul_(sign), qy.mul_(sign), qz.mul_(sign)


def _sym_matvec(xx: Tensor, yy: Tensor, zz: Tensor, xy: Tensor, xz: Tensor, yz: Tensor, v: Triple) -> Triple:
    return (
        torch.addcmul(torch.addcmul(xx * v[0], xy, v[1]), xz, v[2]),
        torch.addcmul(torch.addcmul(xy * v[0], yy, v[1]), yz, v[2]),
        torch.addcmul(torch.addcmul(xz * v[0], yz, v[1]), zz, v[2]),
    )


def _dot(u: Triple, v: Triple) -> Tensor:
    return torch.addcmul(torch.addcmul(u[0] * v[0], u[1], v[1]), u[2], v[2])
