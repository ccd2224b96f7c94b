"""The closed-form symmetric 3x3 eigensolver against numpy.linalg.eigh (float64)."""

from __future__ import annotations

import numpy as np
import torch

from mlsharp.linalg3 import eigh3_quaternion, rotation_from_quaternion


def _decompose(mats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = torch.from_numpy(mats)
    comps = (t[:, 0, 0], t[:, 1, 1], t[:, 2, 2], t[:, 0, 1], t[:, 0, 2], t[:, 1, 2])
    lam, quat = eigh3_quaternion(*comps)
    rows = rotation_from_quaternion(*quat)
    rot = torch.stack([torch.stack(r, dim=-1) for r in rows], dim=1).numpy()  # (N, 3, 3)
    return torch.stack(lam, dim=1).numpy(), rot


def _check(mats: np.ndarray, tol: float = 1e-13) -> None:
    lam, rot = _decompose(mats)
    scale = np.abs(lam).max(axis=1) + 1e-300
    expected = np.linalg.eigvalsh(mats)[:, ::-1]
    assert (np.abs(lam - expected).max(axis=1) / scale).max() < tol
    assert np.all(lam[:, 0] >= lam[:, 1]) and np.all(lam[:, 1] >= lam[:, 2])
    rebuilt = rot @ (lam[:, :, None] * np.eye(3)) @ rot.transpose(0, 2, 1)
    assert (np.abs(rebuilt - mats).max(axis=(1, 2)) / scale).max() < tol
    np.testing.assert_allclose(
        rot @ rot.transpose(0, 2, 1), np.broadcast_to(np.eye(3), rot.shape), atol=1e-14
    )
    np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=1e-14)


def test_random_symmetric_matrices_including_indefinite() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5000, 3, 3))
    _check(a + a.transpose(0, 2, 1))


def test_structured_and_degenerate_matrices() -> None:
    rng = np.random.default_rng(1)
    q = rng.normal(size=(3000, 4))
    rows = rotation_from_quaternion(*torch.from_numpy(q).T)
    rot = torch.stack([torch.stack(r, dim=-1) for r in rows], dim=1).numpy()
    eig = np.exp(rng.uniform(-12, 0, size=(3000, 3)))
    eig[:500] = eig[:500, :1]  # isotropic
    eig[500:1000, 1] = eig[500:1000, 2]  # two equal small
    eig[1000:1500, 0] = eig[1000:1500, 1]  # two equal large
    eig[1500:1600] = 0.0  # zero matrix
    eig[1600:1700, 2] = 0.0  # singular
    eig[1700:1800, 1] = eig[1700:1800, 2] * (1 + 1e-9)  # nearly repeated
    mats = rot @ (eig[:, :, None] * np.eye(3)) @ rot.transpose(0, 2, 1)
    _check(mats)
    diag = np.zeros((4, 3, 3))
    diag[:, [0, 1, 2], [0, 1, 2]] = [[1, 2, 3], [3, 2, 1], [2, 2, 1], [5, 5, 5]]
    lam, rot = _decompose(diag)
    np.testing.assert_allclose(lam, [[3, 2, 1], [3, 2, 1], [2, 2, 1], [5, 5, 5]], rtol=1e-15)
    np.testing.assert_allclose(np.abs(rot[1]), np.eye(3), atol=1e-15)  # already sorted: identity frame
    np.testing.assert_allclose(rot[3], np.eye(3), atol=1e-15)  # isotropic: identity frame


def test_small_eigenvalues_keep_relative_accuracy() -> None:
    rng = np.random.default_rng(2)
    q = rng.normal(size=(2000, 4))
    rows = rotation_from_quaternion(*torch.from_numpy(q).T)
    rot = torch.stack([torch.stack(r, dim=-1) for r in rows], dim=1).numpy()
    eig = np.stack([np.ones(2000), np.full(2000, 1e-3), np.full(2000, 1e-6)], axis=1)
    mats = rot @ (eig[:, :, None] * np.eye(3)) @ rot.transpose(0, 2, 1)
    lam, _ = _decompose(mats)
    np.testing.assert_allclose(lam, eig, rtol=1e-8)
