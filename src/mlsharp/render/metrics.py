"""Image fidelity: PSNR and SSIM in torch.

SSIM follows Wang et al. 2004 ("Image quality assessment: from error visibility to structural
similarity"): an 11 x 11 gaussian window with sigma 1.5, C1 = (0.01 L)^2, C2 = (0.03 L)^2, L = 1
for images in [0, 1], population (not sample) statistics, the mean over every window that lies
fully inside the image ("valid"), averaged over the colour channels. The same constants as the
paper's reference code and scikit-image's ``structural_similarity(..., gaussian_weights=True,
use_sample_covariance=False, data_range=1)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


def _check_pair(a: Tensor, b: Tensor) -> None:
    if a.shape != b.shape or a.dim() != 3 or a.shape[-1] not in (1, 3):
        raise ValueError(f"need two (H, W, C) images of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")


def psnr(a: Tensor, b: Tensor) -> float:
    """Peak signal-to-noise ratio in dB of two (H, W, C) images in [0, 1]; inf when equal."""
    _check_pair(a, b)
    mse = float(((a.double() - b.double()) ** 2).mean())
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> Tensor:
    """(size,) float64 normalised 1D gaussian; the 2D window is its outer product."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    w = torch.exp(-(x**2) / (2 * sigma**2))
    return w / w.sum()


def ssim(a: Tensor, b: Tensor) -> float:
    """Mean SSIM of two (H, W, C) images in [0, 1] (H, W >= 11); 1.0 for identical images."""
    _check_pair(a, b)
    if min(a.shape[0], a.shape[1]) < SSIM_WINDOW:
        raise ValueError(
            f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {tuple(a.shape[:2])}"
        )
    x = a.double().permute(2, 0, 1)[:, None]  # (C, 1, H, W)
    y = b.double().permute(2, 0, 1)[:, None]
    w = gaussian_window().to(x.device)
    wx, wy = w.view(1, 1, 1, -1), w.view(1, 1, -1, 1)

    def blur(t: Tensor) -> Tensor:  # separable "valid" filtering
        return F.conv2d(F.conv2d(t, wx), wy)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    num = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    return float((num / den).mean())
