"""Forward pass of the `test` preset: shapes, base values with zero heads, random heads, batching."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mlsharp.network import RAW_OUTPUT_NAMES
from mlsharp.network.composer import SCALE_ACT_A, SCALE_ACT_B, inverse_softplus, srgb_to_linear

N = 131_072
H = W = 256  # Gaussian grid of the 512 px working size


def _srgb_to_linear_np(v: np.ndarray) -> np.ndarray:
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def test_output_names():
    assert RAW_OUTPUT_NAMES == ("mean_vectors", "singular_values", "quaternions", "colors", "opacities")


def test_scale_activation_constants_are_float32_derived():
    assert SCALE_ACT_A == 10.0 / 9.0
    t = torch.tensor(0.1, dtype=torch.float32)
    assert torch.log(t / (1 - t)).item() == SCALE_ACT_B
    assert math.log(0.1 / 0.9) != SCALE_ACT_B


def test_transfer_helpers():
    v = torch.tensor([0.0, 0.04045, 0.5, 1.0])
    expected = _srgb_to_linear_np(v.double().numpy())
    np.testing.assert_allclose(srgb_to_linear(v).numpy(), expected, rtol=1e-6)
    t = torch.tensor([0.01, 0.5, 1.0, 5.0])
    np.testing.assert_allclose(
        torch.nn.functional.softplus(inverse_softplus(t)).numpy(), t.numpy(), rtol=1e-5
    )


@torch.no_grad()
def test_zero_heads_give_base_gaussians(zero_head_model, test_image):
    phi = torch.tensor([0.9])
    (means, scales, quats, colors, opac), disparity = zero_head_model.forward_with_disparity(test_image, phi)
    assert means.shape == (1, N, 3) and scales.shape == (1, N, 3) and quats.shape == (1, N, 4)
    assert colors.shape == (1, N, 3) and opac.shape == (1, N)
    assert disparity.shape == (1, 2, 512, 512)

    assert torch.all(opac == 0.5)
    assert torch.equal(quats, torch.tensor([1.0, 0.0, 0.0, 0.0]).expand(1, N, 4))

    # colours: sRGB->linear of the 2x2 cell mean clamped to [0.01, 0.99], same for both layers
    cell = test_image.double().numpy()[0].reshape(3, H, 2, W, 2).mean(axis=(2, 4)).clip(0.01, 0.99)
    expected_colors = np.tile(_srgb_to_linear_np(cell).reshape(3, -1).T, (2, 1))  # (N, 3)
    np.testing.assert_allclose(colors[0].numpy(), expected_colors, atol=2e-6)

    # geometry, recomputed independently in float64 from the raw disparity
    d = disparity.double().numpy()[0]
    depth = 0.9 / np.clip(d, 1e-4, 1e4)
    g = depth.min() + 1e-6
    depth_n = np.minimum(depth / g, 100.0)
    surface = (1.0 / depth_n).reshape(2, H, 2, W, 2).max(axis=(2, 4))  # (L, h, w)
    z = 1.0 / (surface + 1e-3)
    centres = (2.0 * np.arange(1, 512, 2) / 512) - 1.0
    x = np.broadcast_to(centres[None, None, :], (2, H, W))
    y = np.broadcast_to(centres[None, :, None], (2, H, W))
    expected_means = g * np.stack([z * x, z * y, z], axis=-1).reshape(-1, 3)
    np.testing.assert_allclose(means[0].numpy(), expected_means, rtol=1e-4, atol=1e-6 * g)
    expected_scale = g * z / 128.0  # (1/D)·(4/512)·D·z
    np.testing.assert_allclose(
        scales[0].numpy(), np.repeat(expected_scale.reshape(-1, 1), 3, axis=1), rtol=1e-4
    )
    assert float(means[0, :, 2].min()) == pytest.approx(g / (1.0 + 1e-6 + 1e-3), rel=1e-4)


@torch.no_grad()
def test_random_heads_give_valid_varied_outputs(random_model, test_image):
    means, scales, quats, colors, opac = random_model(test_image, torch.tensor([1.2]))
    for t in (means, scales, quats, colors, opac):
        assert torch.isfinite(t).all()
    assert torch.all(means[..., 2] > 0)
    assert torch.all(scales > 0)
    assert torch.all((opac > 0) & (opac < 1))
    assert torch.all((colors >= 0) & (colors <= 1))
    # the deltas are live: opacities and quaternions move away from their base values
    assert opac.std() > 1e-3
    assert (quats[..., 0] - 1.0).abs().max() > 1e-3


@torch.no_grad()
def test_batch_equals_single_forwards(random_model, test_image):
    second = torch.flip(test_image, dims=(-1,)) * 0.9
    batch = torch.cat([test_image, second])
    phi = torch.tensor([0.7, 1.3])
    batched = random_model(batch, phi)
    singles = [random_model(batch[i : i + 1], phi[i : i + 1]) for i in range(2)]
    for name, out, a, b in zip(RAW_OUTPUT_NAMES, batched, *singles, strict=True):
        ref = torch.cat([a, b])
        assert out.shape == ref.shape, name
        # conv kernels may round differently per batch size (~1e-6 relative); depth normalisation
        # divides by small disparities, so compare relative to each tensor's magnitude
        scale = float(ref.abs().max())
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=5e-5 * scale, msg=name)
    # the items differ, so this is not trivially equal
    assert not torch.allclose(batched[0][0], batched[0][1])


@torch.no_grad()
def test_disparity_factor_scales_metric_depth(random_model, test_image):
    """Depth is phi / disparity and normalised per image, so phi scales means and scales linearly."""
    a = random_model(test_image, torch.tensor([1.0]))
    b = random_model(test_image, torch.tensor([2.0]))
    torch.testing.assert_close(b[0], 2.0 * a[0], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(b[1], 2.0 * a[1], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(b[3], a[3])
