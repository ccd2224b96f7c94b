"""Fixtures for the network tests: the shared reference folder and small models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from mlsharp.checkpoint import load_predictor
from mlsharp.network import SharpPredictor
from mlsharp.presets import get_preset

REPO_ROOT = Path(__file__).resolve().parents[2]


def shared_dir() -> Path:
    """Where the official checkpoint's key list is read from: $MLSHARP_SHARED_DIR, else a ``shared``
    folder beside the checkout (where CI mounts it)."""
    env = os.environ.get("MLSHARP_SHARED_DIR")
    return Path(env) if env else REPO_ROOT.parent / "shared"


@pytest.fixture(scope="session")
def reference_state_dict() -> list[tuple[str, tuple[int, ...]]]:
    """(key, shape) pairs of the official checkpoint, in file order."""
    path = shared_dir() / "sharp" / "state-dict.txt"
    if not path.is_file():
        pytest.skip(f"reference key list not found at {path} (set MLSHARP_SHARED_DIR)")
    entries = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        key, shape = line.split(" ", 1)
        dims = shape.strip().strip("()").split(",")
        entries.append((key, tuple(int(d) for d in dims if d.strip())))
    return entries


@pytest.fixture(scope="module")
def zero_head_model() -> SharpPredictor:
    """`test` preset with the reference init (zero prediction heads): outputs are the base Gaussians."""
    torch.manual_seed(0)
    return SharpPredictor(get_preset("test")).eval()


@pytest.fixture(scope="module")
def random_model() -> SharpPredictor:
    """`test` preset with random weights everywhere, heads included."""
    return load_predictor("test", random_weights=True, seed=1).model


@pytest.fixture(scope="module")
def test_image() -> torch.Tensor:
    """A smooth-ish random image (1, 3, 512, 512) in [0, 1] spanning both sRGB branches."""
    g = torch.Generator().manual_seed(123)
    coarse = torch.rand(1, 3, 16, 16, generator=g)
    smooth = torch.nn.functional.interpolate(coarse, size=(512, 512), mode="bilinear", align_corners=True)
    return (0.8 * smooth + 0.2 * torch.rand(1, 3, 512, 512, generator=g)).clamp(0.0, 1.0)
