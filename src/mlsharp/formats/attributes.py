"""Per-gaussian attribute encodings shared by every output format (float32 torch, any device).

Why one place: the PLY, SPZ and .splat writers and the metadata all derive the same quantities
(SH DC colour, opacity logit, log scale, disparity quantiles); computing them once, with the
reference's formulas, keeps the formats consistent with each other and with ml-sharp.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from mlsharp.formats.colorspace import linear_to_srgb

#: degree-0 real spherical harmonic, sqrt(1 / (4 pi))
SH_C0 = 0.28209479177387814

#: Opacities are clamped to [smallest normal float32, 1 - 2^-24] before the logit, so the PLY
#: never holds +-inf (the reference writes inf for alpha that rounds to 1, -inf for 0). Every
#: alpha the reference encodes finitely, except subnormal ones, keeps its exact logit; the
#: clamped values (about -87.34 and +16.64) still decode to alpha 0 and 1 in float32 viewers.
ALPHA_MIN = float(np.finfo(np.float32).tiny)
ALPHA_MAX = 1.0 - 2.0**-24
#: Scales are clamped to at least the smallest normal float32 before the log (same reason: a
#: zero scale would be written as -inf); ln gives about -87.34 there.
SCALE_MIN = float(np.finfo(np.float32).tiny)


def sh_dc_from_linear(colors_linear: Tensor) -> Tensor:
    """(N, 3) linear RGB -> (N, 3) SH DC coefficients of the sRGB colour: (sRGB - 0.5) / C0."""
    return linear_to_srgb(colors_linear.float()).sub_(0.5).div_(SH_C0)


def opacity_logits(opacities: Tensor) -> Tensor:
    """(N,) alpha -> (N,) ln(alpha / (1 - alpha)), float32, finite (see ALPHA_MIN/ALPHA_MAX)."""
    alpha = opacities.float().clamp(ALPHA_MIN, ALPHA_MAX)
    return (alpha / (1.0 - alpha)).log_()


def log_scales(scales: Tensor) -> Tensor:
    """(N, 3) standard deviations -> (N, 3) natural logs, finite (see SCALE_MIN)."""
    return scales.float().clamp(min=SCALE_MIN).log_()


def to_u8(values: Tensor) -> Tensor:
    """Round half to even (numpy's ``rint``), clamp to [0, 255], uint8: the byte columns of the
    .splat and SPZ rows built on a device."""
    return values.round().clamp_(0, 255).to(torch.uint8)


def unit_rows(q: Tensor) -> Tensor:
    """(N, 4) rows / their norm, the squares summed left to right in float32 as numpy's
    ``np.linalg.norm(q, axis=1)`` does for four columns (torch's sum may pair them differently), so
    the device rows match the numpy writers' bytes."""
    sq = q * q
    return q / (((sq[:, 0] + sq[:, 1]) + sq[:, 2]) + sq[:, 3]).sqrt()[:, None]


def f32(value: float) -> float:
    """A constant rounded to float32 first, as the numpy writers' ``np.float32(...)`` operands."""
    return float(np.float32(value))


def disparity_quantiles(means: Tensor) -> tuple[float, float]:
    """10 % and 90 % quantiles of 1/z over the gaussians, exactly as ``torch.quantile`` gives them.

    Why not call torch.quantile: it sorts all N values (and refuses inputs over 16 M); two
    partial selections give the same order statistics in O(N). The interpolation replicates
    torch's: float32 ranks q * (N - 1), floor/ceil indices, ``torch.lerp`` with the float32 weight.
    """
    disparity = (1.0 / means[:, 2].float()).cpu().numpy()  # (N,)
    n = disparity.shape[0]
    if n == 0:
        return float("nan"), float("nan")
    if np.isnan(disparity).any():
        return float("nan"), float("nan")
    ranks, below, above = _quantile_ranks(n)
    kth = sorted({int(i) for i in torch.cat([below, above])})
    part = np.partition(disparity, kth)
    return _lerp(torch.from_numpy(part[below.numpy()]), torch.from_numpy(part[above.numpy()]), ranks, below)


def disparity_quantiles_on_device(means: Tensor) -> tuple[float, float]:
    """:func:`disparity_quantiles` with the selection on ``means``' device (same values).

    Why: on a GPU only four order statistics and a NaN flag come back (one tiny copy) instead of
    the N disparities; the float32 interpolation then runs on the CPU exactly as above.
    """
    n = int(means.shape[0])
    if n == 0:
        return float("nan"), float("nan")
    disparity = 1.0 / means[:, 2].float()  # (N,) on means' device
    ranks, below, above = _quantile_ranks(n)
    picks = [torch.kthvalue(disparity, int(i) + 1).values for i in torch.cat([below, above])]
    stats = torch.stack([disparity.isnan().any().float(), *picks]).cpu()  # (5,) float32
    if bool(stats[0]):
        return float("nan"), float("nan")
    return _lerp(stats[1:3], stats[3:5], ranks, below)


def _quantile_ranks(n: int) -> tuple[Tensor, Tensor, Tensor]:
    """torch.quantile's float32 ranks q * (N - 1) for q = 0.1, 0.9 and their floor/ceil indices."""
    ranks = torch.tensor([0.1, 0.9], dtype=torch.float32) * (n - 1)  # float32, like torch
    return ranks, ranks.long(), torch.ceil(ranks).long()


def _lerp(lo: Tensor, hi: Tensor, ranks: Tensor, below: Tensor) -> tuple[float, float]:
    """torch.quantile's linear interpolation between the order statistics (float32, CPU)."""
    values = torch.lerp(lo, hi, ranks - below.float())
    return float(values[0]), float(values[1])
